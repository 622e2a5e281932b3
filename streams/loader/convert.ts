/**
 * Conversion of table rows into event records (`Article`, `Customer`, `Purchase`): columns looked
 * up by name, cells parsed by kind, every record checked against its zod schema, and any problem
 * reported as a DatasetError naming the file, line and column.
 */
import { createHash } from 'node:crypto';
import type { z } from 'zod';
import {
  articleSchema,
  customerSchema,
  purchaseSchema,
  type Article,
  type Customer,
  type Purchase,
} from '../../schemas/events.ts';
import { DatasetError } from './dataset-error.ts';
import { findColumn, type Column, type TableInfo } from './table.ts';
import { CellError, bool, dateTime, day, float, id, int, show, text } from './values.ts';

/** Reads typed cells of one table, turning cell problems into positioned DatasetErrors. */
class CellReader {
  constructor(readonly info: TableInfo) {}

  read<T>(cells: readonly unknown[], line: number, col: Column, parse: (v: unknown) => T): T {
    try {
      return parse(col.index < 0 ? undefined : cells[col.index]);
    } catch (err) {
      if (err instanceof CellError) throw this.error(cells, line, col, err.message);
      throw err;
    }
  }

  error(cells: readonly unknown[], line: number, col: Column, problem: string): DatasetError {
    return new DatasetError({
      file: this.info.path,
      line: col.index < 0 ? line : this.info.fieldLine(cells, line, col.index),
      unit: this.info.unit,
      column: col.name,
      problem,
    });
  }

  /** Check a record against its schema; the first issue is reported at the column it came from. */
  validate<T>(
    schema: z.ZodType<T>,
    record: T,
    cells: readonly unknown[],
    line: number,
    columnOf: (field: string) => Column,
  ): T {
    const result = schema.safeParse(record);
    if (result.success) return record; // as built: zod's copy would only cost an allocation
    const issue = result.error.issues[0];
    const field = String(issue?.path[0] ?? '');
    const value = field === '' ? undefined : (record as Record<string, unknown>)[field];
    throw this.error(
      cells,
      line,
      columnOf(field),
      `${show(value)} is invalid: ${issue?.message ?? 'does not match the schema'}`,
    );
  }
}

type Kind = 'id' | 'text' | 'int' | 'bool';
const PARSERS: Readonly<Record<Kind, (v: unknown) => unknown>> = { id, text, int, bool };

/** Source kind of every article field (the keys are checked against `Article` by the compiler). */
const ARTICLE_FIELDS: { readonly [K in Exclude<keyof Article, 'updated_at'>]: Kind } = {
  article_id: 'id',
  product_code: 'text',
  prod_name: 'text',
  product_type_no: 'int',
  product_type_name: 'text',
  product_group_name: 'text',
  graphical_appearance_no: 'int',
  graphical_appearance_name: 'text',
  colour_group_code: 'int',
  colour_group_name: 'text',
  perceived_colour_value_id: 'int',
  perceived_colour_value_name: 'text',
  perceived_colour_master_id: 'int',
  perceived_colour_master_name: 'text',
  department_no: 'int',
  department_name: 'text',
  index_code: 'text',
  index_name: 'text',
  index_group_no: 'int',
  index_group_name: 'text',
  section_no: 'int',
  section_name: 'text',
  garment_group_no: 'int',
  garment_group_name: 'text',
  detail_desc: 'text',
};

/** Customer fields; columns match case-insensitively, so H&M's `FN` and `Active` fill `fn` and `active`. */
const CUSTOMER_FIELDS: { readonly [K in Exclude<keyof Customer, 'updated_at'>]: Kind } = {
  customer_id: 'id',
  fn: 'bool',
  active: 'bool',
  club_member_status: 'text',
  fashion_news_frequency: 'text',
  age: 'int',
  postal_code: 'text',
};

/** Converts rows of a metadata table (articles, customers): one column per field, keyed by its id. */
export interface MetadataConverter<T> {
  readonly columns: readonly number[];
  convert(cells: readonly unknown[], line: number): T;
}

function metadataConverter<T>(
  info: TableInfo,
  fields: Readonly<Record<string, Kind>>,
  idField: string,
  schema: z.ZodType<T>,
  updatedAt: number,
): MetadataConverter<T> {
  const reader = new CellReader(info);
  const plan = Object.entries(fields).map(([field, kind]) => ({
    field,
    parse: PARSERS[kind],
    col: findColumn(info, field, field === idField),
  }));
  const byField = new Map(plan.map((p) => [p.field, p.col]));
  const columnOf = (field: string): Column => byField.get(field) ?? { name: field, index: -1 };
  return {
    columns: plan.filter((p) => p.col.index >= 0).map((p) => p.col.index),
    convert(cells, line) {
      const record: Record<string, unknown> = {};
      for (const p of plan) record[p.field] = reader.read(cells, line, p.col, p.parse);
      record.updated_at = updatedAt;
      return reader.validate(schema, record as T, cells, line, columnOf);
    },
  };
}

export function articleConverter(info: TableInfo, updatedAt: number): MetadataConverter<Article> {
  return metadataConverter(info, ARTICLE_FIELDS, 'article_id', articleSchema, updatedAt);
}

export function customerConverter(info: TableInfo, updatedAt: number): MetadataConverter<Customer> {
  return metadataConverter(info, CUSTOMER_FIELDS, 'customer_id', customerSchema, updatedAt);
}

/**
 * Deterministic id of a purchase: the first 32 hex digits of sha256 over
 * `customer_id|article_id|event_time|price|sales_channel_id|quantity|n`, where `n` numbers the
 * identical tuples in file order (0, 1, ...), so duplicate rows (several units) get distinct ids
 * and the ids do not depend on where the rows are in the file.
 */
export function purchaseEventId(p: Omit<Purchase, 'event_id'>, n: number): string {
  const key = `${p.customer_id}|${p.article_id}|${p.event_time}|${p.price}|${p.sales_channel_id}|${p.quantity}|${n}`;
  return createHash('sha256').update(key).digest('hex').slice(0, 32);
}

/** Placeholder id of a converted purchase until {@link assignEventIds} runs (valid for the schema). */
const PENDING_ID = '0'.repeat(32);

/**
 * Fill in the event ids of purchases sorted by event time, stably (equal times in file order).
 * Identical tuples share their event time, so their occurrence numbers are counted within each
 * run of equal times, which keeps the counting map small.
 */
export function assignEventIds(sorted: Purchase[]): void {
  const ids = new EventIdAssigner();
  for (const p of sorted) ids.assign(p);
}

/**
 * {@link assignEventIds} one purchase at a time, for a stream in event-time order (stable): it
 * holds only the tuples of the current run of equal event times.
 */
export class EventIdAssigner {
  private runTime = Number.NaN;
  private readonly seen = new Map<string, number>();

  assign(p: Purchase): void {
    if (p.event_time !== this.runTime) {
      this.runTime = p.event_time;
      this.seen.clear();
    }
    const key = `${p.customer_id}|${p.article_id}|${p.price}|${p.sales_channel_id}|${p.quantity}`;
    const n = this.seen.get(key) ?? 0;
    this.seen.set(key, n + 1);
    p.event_id = purchaseEventId(p, n);
  }
}

/**
 * Converts transaction rows into purchases, in file order (it counts the rows of each day). The
 * records are validated with a placeholder `event_id`: sort them by event time, stably, then call
 * {@link assignEventIds}.
 *
 * - `event_time`: the `ts` column when present and filled (ISO date-time read as UTC; it wins
 *   over `t_dat` if their dates differ). Otherwise the UTC midnight of `t_dat` plus the row's
 *   0-based position among that day's rows of the file, in ms: the order within a day is kept
 *   and times are distinct. Such event times, and hence the event ids, depend on the rows' order
 *   within a day; with `ts` they do not.
 * - `quantity`: the `quantity` column (a positive integer; empty = 1), else 1.
 * - `event_id`: see {@link purchaseEventId}, set by {@link assignEventIds}.
 */
export class PurchaseConverter {
  readonly columns: readonly number[];
  private readonly reader: CellReader;
  private readonly col: {
    t_dat: Column;
    customer_id: Column;
    article_id: Column;
    price: Column;
    sales_channel_id: Column;
    quantity: Column;
    ts: Column;
  };
  private readonly rowsPerDay = new Map<number, number>();

  constructor(info: TableInfo) {
    this.reader = new CellReader(info);
    this.col = {
      t_dat: findColumn(info, 't_dat', true),
      customer_id: findColumn(info, 'customer_id', true),
      article_id: findColumn(info, 'article_id', true),
      price: findColumn(info, 'price', true),
      sales_channel_id: findColumn(info, 'sales_channel_id', true),
      quantity: findColumn(info, 'quantity', false),
      ts: findColumn(info, 'ts', false),
    };
    this.columns = Object.values(this.col)
      .filter((c) => c.index >= 0)
      .map((c) => c.index);
  }

  convert(cells: readonly unknown[], line: number): Purchase {
    const { reader, col } = this;
    const dayStart = reader.read(cells, line, col.t_dat, day);
    const customer_id = reader.read(cells, line, col.customer_id, id);
    const article_id = reader.read(cells, line, col.article_id, id);
    const price = reader.read(cells, line, col.price, requiredFloat);
    const sales_channel_id = reader.read(cells, line, col.sales_channel_id, requiredInt);
    const quantity = reader.read(cells, line, col.quantity, positiveOrOne);
    const ts = reader.read(cells, line, col.ts, dateTime);

    const ordinal = this.rowsPerDay.get(dayStart) ?? 0;
    this.rowsPerDay.set(dayStart, ordinal + 1);
    const event_time = ts ?? dayStart + ordinal;

    const purchase: Purchase = {
      event_id: PENDING_ID,
      customer_id,
      article_id,
      price,
      sales_channel_id,
      quantity,
      event_time,
    };
    return reader.validate(purchaseSchema, purchase, cells, line, (field) => {
      if (field === 'event_time') return ts === null ? col.t_dat : col.ts;
      return field in col ? col[field as keyof typeof col] : { name: field, index: -1 };
    });
  }
}

function required<T>(parse: (v: unknown) => T | null): (v: unknown) => T {
  return (v) => {
    const value = parse(v);
    if (value === null) throw new CellError('the value is empty');
    return value;
  };
}

function positiveOrOne(v: unknown): number {
  const q = int(v);
  if (q === null) return 1;
  if (q <= 0) throw new CellError(`${show(v)} is not a positive quantity`);
  return q;
}

const requiredFloat = required(float);
const requiredInt = required(int);
