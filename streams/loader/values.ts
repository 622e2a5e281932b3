/**
 * Parsers of single cells into typed values. A cell is a CSV string or a value decoded by hyparquet
 * (string, number, bigint, boolean, Date, null). Empty or missing cells of optional columns are
 * null; a value that cannot be read throws a CellError that the caller turns into a DatasetError
 * with the file, line and column.
 */
import { ID_PATTERN } from '../../schemas/events.ts';
import { RecError } from '../../common/errors.ts';

/** The problem of one cell, without its position (added by the caller). */
export class CellError extends RecError {
  override readonly name: string = 'CellError';
  constructor(message: string) {
    super('REC_ERR_DATASET', message);
  }
}

const DAY_MS = 86_400_000;
const INT_TEXT = /^[+-]?\d+(?:\.0*)?$/;
const FLOAT_TEXT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME_TEXT =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/;
const INT32_MAX = 2 ** 31 - 1;

/** A cell as quoted in error messages (strings in double quotes, cut after 60 characters). */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}...` : v);
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString();
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v === null || v === undefined) return 'empty';
  return Object.prototype.toString.call(v);
}

/** Empty: a missing column, a null, an empty or blank string, a NaN (pandas' missing float). */
export function isEmpty(v: unknown): v is null | undefined | '' {
  return (
    v === null ||
    v === undefined ||
    (typeof v === 'string' && v.trim() === '') ||
    (typeof v === 'number' && Number.isNaN(v))
  );
}

/** Optional text. Numbers are written in decimal (a Parquet INT64 product_code reads as "108775"). */
export function text(v: unknown): string | null {
  if (isEmpty(v)) return null;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v instanceof Date) return v.toISOString();
  throw new CellError(`${show(v)} is not text`);
}

/**
 * A required id, kept exactly as written (never a number: `0108775015` keeps its leading zero).
 * A Parquet column of numbers is refused rather than guessed, since leading zeros are gone.
 */
export function id(v: unknown): string {
  if (isEmpty(v)) throw new CellError('the id is empty');
  if (typeof v !== 'string') {
    throw new CellError(
      `${show(v)} is stored as ${typeof v === 'object' ? 'a non-text value' : `a ${typeof v}`}; ids must be stored as text (a number loses leading zeros)`,
    );
  }
  if (!ID_PATTERN.test(v)) {
    throw new CellError(
      `${show(v)} is not a valid id (1-128 characters of A-Z a-z 0-9 _ . -, not starting with _ . -)`,
    );
  }
  return v;
}

/** Optional 32-bit integer; `21.0` (pandas writes integer columns with gaps as floats) reads as 21. */
export function int(v: unknown): number | null {
  if (isEmpty(v)) return null;
  let n: number;
  if (typeof v === 'string') {
    const s = v.trim();
    if (!INT_TEXT.test(s)) throw new CellError(`${show(v)} is not an integer`);
    n = Number.parseInt(s, 10);
  } else if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new CellError(`${show(v)} is not an integer`);
    n = v;
  } else if (typeof v === 'bigint') {
    n = Number(v);
  } else {
    throw new CellError(`${show(v)} is not an integer`);
  }
  if (Math.abs(n) > INT32_MAX)
    throw new CellError(`${show(v)} is out of range for a 32-bit integer`);
  return n === 0 ? 0 : n; // no -0
}

/** Optional finite float. */
export function float(v: unknown): number | null {
  if (isEmpty(v)) return null;
  let n: number;
  if (typeof v === 'string') {
    const s = v.trim();
    if (!FLOAT_TEXT.test(s)) throw new CellError(`${show(v)} is not a number`);
    n = Number(s);
  } else if (typeof v === 'number' || typeof v === 'bigint') {
    n = Number(v);
  } else {
    throw new CellError(`${show(v)} is not a number`);
  }
  if (!Number.isFinite(n)) throw new CellError(`${show(v)} is not a finite number`);
  return n === 0 ? 0 : n;
}

/** Optional flag: 1 / 1.0 / true are true, 0 / 0.0 / false are false (H&M's FN and Active). */
export function bool(v: unknown): boolean | null {
  if (isEmpty(v)) return null;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' || typeof v === 'bigint') {
    if (Number(v) === 1) return true;
    if (Number(v) === 0) return false;
  }
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    const n = s === 'true' ? 1 : s === 'false' ? 0 : INT_TEXT.test(s) ? Number(s) : NaN;
    if (n === 1) return true;
    if (n === 0) return false;
  }
  throw new CellError(`${show(v)} is not a flag (expected 1, 0, 1.0, 0.0, true or false)`);
}

function daysInMonth(y: number, mo: number): number {
  if (mo === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return mo === 4 || mo === 6 || mo === 9 || mo === 11 ? 30 : 31;
}

/** A valid calendar date-time (2020-02-30 and 24:00 are refused) as UTC ms, or null. */
function utc(y: number, mo: number, d: number, h = 0, mi = 0, s = 0, ms = 0): number | null {
  if (y < 1000 || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return null;
  if (h > 23 || mi > 59 || s > 59) return null;
  return Date.UTC(y, mo - 1, d, h, mi, s, ms);
}

/** A required date `YYYY-MM-DD` (or a Parquet DATE / TIMESTAMP) as the UTC midnight of that day. */
export function day(v: unknown): number {
  if (isEmpty(v)) throw new CellError('the date is empty');
  if (v instanceof Date) {
    const t = v.getTime();
    if (Number.isNaN(t)) throw new CellError('the date is invalid');
    return Math.floor(t / DAY_MS) * DAY_MS;
  }
  if (typeof v === 'string') {
    const m = DATE_TEXT.exec(v.trim());
    const t = m ? utc(Number(m[1]), Number(m[2]), Number(m[3])) : null;
    if (t !== null) return t;
  }
  throw new CellError(`${show(v)} is not a date (expected YYYY-MM-DD)`);
}

/**
 * Optional date-time, ISO 8601 (`2010-12-01T08:26:00`, seconds and fraction optional) as UTC ms.
 * Without an offset it is read as UTC; an explicit `Z` or `+01:00` is honoured.
 */
export function dateTime(v: unknown): number | null {
  if (isEmpty(v)) return null;
  if (v instanceof Date) {
    const t = v.getTime();
    if (Number.isNaN(t)) throw new CellError('the date-time is invalid');
    return t;
  }
  if (typeof v === 'string') {
    const m = DATETIME_TEXT.exec(v.trim());
    if (m) {
      const frac = m[7] === undefined ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000);
      const t = utc(
        Number(m[1]),
        Number(m[2]),
        Number(m[3]),
        Number(m[4]),
        Number(m[5]),
        Number(m[6] ?? 0),
        frac,
      );
      if (t !== null) return t - offsetMs(m[8]);
    }
  }
  throw new CellError(`${show(v)} is not a date-time (expected YYYY-MM-DDTHH:MM:SS)`);
}

function offsetMs(zone: string | undefined): number {
  if (zone === undefined || zone === 'Z') return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  const h = Number(digits.slice(0, 2));
  const m = digits.length > 2 ? Number(digits.slice(2, 4)) : 0;
  return sign * (h * 60 + m) * 60_000;
}
