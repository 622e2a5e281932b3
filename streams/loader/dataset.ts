/**
 * Reading a dataset folder in the H&M Kaggle layout (`articles`, `customers`, `transactions_train`,
 * each as `.csv` or `.parquet`) into typed, validated records: purchases in event-time order,
 * articles and customers in file order with one record per id.
 */
import { basename } from 'node:path';
import { articleSchema, type Article, type Customer, type Purchase } from '../../schemas/events.ts';
import {
  PurchaseConverter,
  assignEventIds,
  articleConverter,
  customerConverter,
  type MetadataConverter,
} from './convert.ts';
import {
  locateTable,
  readTable,
  type RowConsumer,
  type TableFile,
  type TableInfo,
} from './table.ts';

export { DatasetError } from './dataset-error.ts';

export interface Dataset {
  articles: Article[];
  customers: Customer[];
  purchases: Purchase[];
  /** Names of the files read, relative to the folder (e.g. `articles.csv`). */
  files: { articles: string; customers: string; purchases: string };
  stats: {
    articleRows: number;
    customerRows: number;
    /** Data rows of the transactions file, one purchase event each (quantity does not multiply). */
    purchaseRows: number;
    /** Rows whose id an earlier row already had (the last row wins). */
    duplicateArticles: number;
    duplicateCustomers: number;
  };
}

export interface ReadOptions {
  /**
   * `updated_at` of every article and customer record (ms since the epoch). Default: the earliest
   * purchase event time, so the metadata is known from the start of the data, deterministically.
   */
  metadataTime?: number;
  /** Called with the file name and the rows read so far, every 10,000 rows and at the end. */
  onProgress?: (file: string, rows: number) => void;
}

const PROGRESS_EVERY = 10_000;

/**
 * Read the dataset folder `dir` into memory.
 *
 * - Files: each table exists exactly once as `<name>.csv` (RFC 4180, header line, UTF-8 with or
 *   without BOM) or `<name>.parquet`; a missing table or a table present in both formats is a
 *   plain `Error` naming the paths. The transactions are read first (they give the default
 *   `metadataTime`), then articles, then customers.
 * - Columns: matched by header name ignoring case; unknown columns are ignored; missing optional
 *   columns give null. Required: transactions `t_dat, customer_id, article_id, price,
 *   sales_channel_id`; articles `article_id`; customers `customer_id`.
 * - Values: ids are kept as written (never numbers); empty cells are null; integers may be
 *   written as floats (`21.0`); FN/Active accept 1, 0, 1.0, 0.0, true, false.
 * - Purchases: `event_time` is `ts` when that column is present and filled (read as UTC), else
 *   the UTC midnight of `t_dat` plus the row's 0-based position among that day's rows, in ms (so
 *   without `ts`, event times and ids depend on the order of rows within a day). `quantity` comes
 *   from a `quantity` column, else 1. `event_id` is a digest of the purchase's values and its
 *   occurrence number among identical rows, not of its position (see `purchaseEventId` in
 *   convert.ts). Sorted by event time, stably (ties keep file order).
 * - Articles and customers: file order; when an id occurs again, the last row's values win at the
 *   position of the id's first row, and the repeats are counted in `stats`.
 * - Errors: a value that cannot be read, or a record its zod schema refuses, throws a
 *   {@link DatasetError} naming the file, line (CSV) or row (Parquet), and column.
 */
export async function readDataset(dir: string, opts: ReadOptions = {}): Promise<Dataset> {
  // Locate all three first, so a missing file is reported before any long read.
  const files = {
    articles: locateTable(dir, 'articles'),
    customers: locateTable(dir, 'customers'),
    purchases: locateTable(dir, 'transactions_train'),
  };
  if (opts.metadataTime !== undefined) {
    const check = articleSchema.shape.updated_at.safeParse(opts.metadataTime);
    if (!check.success) {
      throw new Error(
        `metadataTime ${opts.metadataTime} is invalid: ${check.error.issues[0]?.message ?? 'not a time'}`,
      );
    }
  }

  const purchases: Purchase[] = [];
  const purchaseRows = await readRows(files.purchases, opts, (info) => {
    const converter = new PurchaseConverter(info);
    return {
      columns: converter.columns,
      visit: (cells, line) => purchases.push(converter.convert(cells, line)),
    };
  });
  purchases.sort((a, b) => a.event_time - b.event_time); // Array.prototype.sort is stable
  assignEventIds(purchases);

  let metadataTime = opts.metadataTime;
  if (metadataTime === undefined) {
    const first = purchases[0];
    if (first === undefined) {
      throw new Error(
        `${files.purchases.path} has no rows, so there is no default time for the articles and customers: pass metadataTime`,
      );
    }
    metadataTime = first.event_time;
  }

  const time = metadataTime;
  const articles = await readMetadata(
    files.articles,
    opts,
    (info) => articleConverter(info, time),
    (a) => a.article_id,
  );
  const customers = await readMetadata(
    files.customers,
    opts,
    (info) => customerConverter(info, time),
    (c) => c.customer_id,
  );

  return {
    articles: articles.records,
    customers: customers.records,
    purchases,
    files: {
      articles: basename(files.articles.path),
      customers: basename(files.customers.path),
      purchases: basename(files.purchases.path),
    },
    stats: {
      articleRows: articles.rows,
      customerRows: customers.rows,
      purchaseRows,
      duplicateArticles: articles.rows - articles.records.length,
      duplicateCustomers: customers.rows - customers.records.length,
    },
  };
}

/** Read a table, reporting progress every PROGRESS_EVERY rows and once at the end. */
async function readRows(
  file: TableFile,
  opts: ReadOptions,
  start: (info: TableInfo) => RowConsumer,
): Promise<number> {
  const name = basename(file.path);
  const onProgress = opts.onProgress;
  let rows = 0;
  const total = await readTable(file, (info) => {
    const consumer = start(info);
    if (onProgress === undefined) return consumer;
    return {
      columns: consumer.columns,
      visit: (cells, line) => {
        consumer.visit(cells, line);
        rows++;
        if (rows % PROGRESS_EVERY === 0) onProgress(name, rows);
      },
    };
  });
  onProgress?.(name, total);
  return total;
}

/** Read a metadata table keyed by id: the last row of an id wins, at its first row's position. */
async function readMetadata<T>(
  file: TableFile,
  opts: ReadOptions,
  converter: (info: TableInfo) => MetadataConverter<T>,
  key: (record: T) => string,
): Promise<{ records: T[]; rows: number }> {
  const byId = new Map<string, T>();
  const rows = await readRows(file, opts, (info) => {
    const c = converter(info);
    return {
      columns: c.columns,
      visit: (cells, line) => {
        const record = c.convert(cells, line);
        byId.set(key(record), record);
      },
    };
  });
  return { records: [...byId.values()], rows };
}
