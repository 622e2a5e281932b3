/**
 * Streaming CSV reader (RFC 4180, via csv-parse): a header line, then data rows handed over as
 * arrays of strings with the line on which each row starts. Lines are counted here (from the line
 * breaks inside quoted fields) rather than taken from csv-parse, whose count is off after a quoted
 * field that contains a CRLF and whose `info` option costs about a fifth of the parsing time.
 *
 * - A record longer than {@link CSV_MAX_RECORD_SIZE} stops the read with a DatasetError naming the
 *   file, the line and the limit, rather than buffering it whole (an unclosed quote would otherwise
 *   pull the rest of a multi-gigabyte file into one field).
 * - Formula-escaped cells are read back: a cell that `npm run replay` wrote with a leading `'` (see
 *   {@link escapeFormula}) loses exactly that one quote, so a replay -> load round trip gives the
 *   values that were replayed.
 */
import { createReadStream } from 'node:fs';
import { CsvError, parse } from 'csv-parse';
import { DatasetError } from './dataset-error.ts';
import type { RowConsumer, TableInfo } from './table-types.ts';

const LINE_BREAK = /[\r\n]/;

/**
 * Longest CSV record read, in bytes of its fields (csv-parse's `max_record_size`): 1 MiB. The H&M
 * files' longest record (an article with its description) is under 2 KB.
 */
export const CSV_MAX_RECORD_SIZE = 1 << 20;

/** A finite number literal (`-1.5`, `+3`, `1e-5`): never formula-escaped. */
const NUMBER_LITERAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
/** Cells a spreadsheet may run as a formula (OWASP CSV injection): `=`, `+`, `-`, `@`, tab, CR first, after any `'`s. */
const FORMULA_LEADING = /^'*[=+\-@\t\r]/;
/** A cell written by {@link escapeFormula}: one or more `'` and then a formula-leading character. */
const FORMULA_ESCAPED = /^'+[=+\-@\t\r]/;

/**
 * A text cell as written to CSV for spreadsheets: prefixed with `'` when it begins with `=`, `+`,
 * `-`, `@`, tab or carriage return (OWASP's CSV-injection guidance), unless it is a plain number
 * literal (`-1.5` stays a number). A cell that already begins with `'`s before such a character
 * gets one more, so that {@link unescapeFormula} (applied by the CSV reader) gives back exactly
 * the original text.
 */
export function escapeFormula(s: string): string {
  return FORMULA_LEADING.test(s) && !NUMBER_LITERAL.test(s) ? `'${s}` : s;
}

/** The inverse of {@link escapeFormula}: drop one leading `'` before `'`s and a formula character. */
export function unescapeFormula(s: string): string {
  return s.charCodeAt(0) === 39 && FORMULA_ESCAPED.test(s) ? s.slice(1) : s;
}

/** Line breaks inside a field's value (CRLF, LF or CR each count once). */
function breaksIn(value: string): number {
  if (!LINE_BREAK.test(value)) return 0;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 10 || (c === 13 && value.charCodeAt(i + 1) !== 10)) n++;
  }
  return n;
}

function breaksBefore(cells: readonly unknown[], col: number): number {
  let n = 0;
  for (let i = 0; i < col && i < cells.length; i++) {
    const v = cells[i];
    if (typeof v === 'string' && v.length > 0) n += breaksIn(v);
  }
  return n;
}

export async function readCsv(
  path: string,
  start: (info: TableInfo) => RowConsumer,
): Promise<number> {
  const input = createReadStream(path, { highWaterMark: 1 << 20 });
  // Empty lines and ragged rows are handled below rather than by csv-parse (skip_empty_lines and
  // the column count check), so that lines are counted without csv-parse's slower `info` option.
  const parser = parse({
    bom: true,
    relax_column_count: true,
    record_delimiter: ['\r\n', '\n', '\r'],
    max_record_size: CSV_MAX_RECORD_SIZE,
  });
  input.on('error', (err) => parser.destroy(err));
  input.pipe(parser);

  let consumer: RowConsumer | undefined;
  let width = 0;
  let line = 0; // first line of the current record
  let next = 1; // first line after the previous record
  let rows = 0;
  try {
    for await (const item of parser) {
      const record = item as string[];
      line = next;
      if (record.length === 1 && record[0] === '') {
        next = line + 1; // an empty line
        continue;
      }
      next = line + 1 + breaksBefore(record, record.length);
      if (consumer === undefined) {
        width = record.length;
        consumer = start({
          path,
          format: 'csv',
          unit: 'line',
          header: record,
          fieldLine: (cells, at, col) => at + breaksBefore(cells, col),
        });
        continue;
      }
      if (record.length !== width) {
        throw new DatasetError({
          file: path,
          line,
          problem: `the row has ${record.length} fields but the header has ${width}`,
        });
      }
      for (let i = 0; i < record.length; i++) {
        const cell = record[i] as string;
        if (cell.charCodeAt(0) === 39) record[i] = unescapeFormula(cell);
      }
      const pending = consumer.visit(record, line);
      if (pending !== undefined) await pending;
      rows++;
    }
  } catch (err) {
    if (err instanceof CsvError) {
      // Quoting and size errors: csv-parse's own line count is the best available position.
      const reported = (err as CsvError & { lines?: unknown }).lines;
      const at = typeof reported === 'number' && reported >= next ? reported : next;
      if (err.code === 'CSV_MAX_RECORD_SIZE') {
        throw new DatasetError({
          file: path,
          line: at,
          problem: `a record is longer than the limit of ${CSV_MAX_RECORD_SIZE} bytes (1 MiB) per record: an unclosed quote, or not a CSV file?`,
          cause: err,
        });
      }
      throw new DatasetError({
        file: path,
        line: at,
        problem: `invalid CSV (${err.code}): ${err.message}`,
        cause: err,
      });
    }
    throw err;
  } finally {
    input.destroy();
  }
  if (consumer === undefined) {
    throw new DatasetError({ file: path, line: 1, problem: 'the file is empty: no header line' });
  }
  return rows;
}
