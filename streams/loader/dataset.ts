/**
 * Reading a dataset folder in the H&M Kaggle layout (`articles`, `customers`, `transactions_train`,
 * each as `.csv` or `.parquet`) into typed, validated records: purchases in event-time order
 * (streamed, see purchases.ts), articles and customers in file order with one record per id.
 */
import { basename } from 'node:path';
import { articleSchema, type Article, type Customer, type Purchase } from '../../schemas/events.ts';
import {
  scanPurchases,
  streamPurchases,
  type PurchaseScan,
  type StreamOptions,
} from './purchases.ts';
import { articleConverter, customerConverter, type MetadataConverter } from './convert.ts';
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

/** Receives records in batches; a returned promise is awaited before more is read. */
export type Sink<T> = (batch: T[]) => Promise<void> | undefined;

/**
 * A dataset folder validated (every file read once) with its records still in the files: each
 * table is streamed on demand in batches, so memory does not grow with the rows. What stays in
 * memory is one entry per article and customer id (to keep one record per id) and, for ids that
 * occur more than once, their last record.
 */
export interface DatasetStream {
  files: Dataset['files'];
  stats: Dataset['stats'];
  /** What the first pass over the transactions learnt (rows, order, time range). */
  scan: PurchaseScan;
  /** One record per article id, in the order of each id's first row, with its last row's values. */
  articles: (sink: Sink<Article>, batchSize?: number) => Promise<number>;
  /** One record per customer id, as for the articles. */
  customers: (sink: Sink<Customer>, batchSize?: number) => Promise<number>;
  /** The purchases in event-time order with their ids (purchases.ts). May be called again. */
  purchases: (sink: Sink<Purchase>, opts?: StreamOptions) => Promise<number>;
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
 * Read the dataset folder `dir` into memory: {@link openDataset} with every table collected into
 * an array (for tests and small folders; `npm run load` streams them instead).
 */
export async function readDataset(dir: string, opts: ReadOptions = {}): Promise<Dataset> {
  const opened = await openDataset(dir, opts);
  const collect = <T>(into: T[]): Sink<T> => {
    return (batch) => {
      for (const x of batch) into.push(x);
      return undefined;
    };
  };
  const articles: Article[] = [];
  const customers: Customer[] = [];
  const purchases: Purchase[] = [];
  await opened.articles(collect(articles));
  await opened.customers(collect(customers));
  await opened.purchases(collect(purchases));
  return { articles, customers, purchases, files: opened.files, stats: opened.stats };
}

/**
 * Open the dataset folder `dir`: read and validate every file once (the purchases' order and time
 * range, the article and customer ids), to stream each table later (see {@link DatasetStream}).
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
 *   convert.ts). Sorted by event time, stably (ties keep file order): a file already in that
 *   order streams as it is, another one goes through an external sort.
 * - Articles and customers: file order; when an id occurs again, the last row's values win at the
 *   position of the id's first row, and the repeats are counted in `stats`.
 * - Errors: a value that cannot be read, or a record its zod schema refuses, throws a
 *   {@link DatasetError} naming the file, line (CSV) or row (Parquet), and column, before
 *   `openDataset` returns: the second reads (the streams) meet the same rows.
 */
export async function openDataset(dir: string, opts: ReadOptions = {}): Promise<DatasetStream> {
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

  const scan = await scanPurchases(files.purchases, {
    ...(opts.onProgress === undefined ? {} : { onProgress: opts.onProgress }),
  });

  let metadataTime = opts.metadataTime;
  if (metadataTime === undefined) {
    if (scan.firstEventTime === null) {
      throw new Error(
        `${files.purchases.path} has no rows, so there is no default time for the articles and customers: pass metadataTime`,
      );
    }
    metadataTime = scan.firstEventTime;
  }

  const time = metadataTime;
  const articleConverterAt = (info: TableInfo) => articleConverter(info, time);
  const customerConverterAt = (info: TableInfo) => customerConverter(info, time);
  const articleId = (a: Article) => a.article_id;
  const customerId = (c: Customer) => c.customer_id;
  const articles = await scanMetadata(files.articles, opts, articleConverterAt, articleId);
  const customers = await scanMetadata(files.customers, opts, customerConverterAt, customerId);

  return {
    scan,
    articles: metadataStream(files.articles, articles, articleConverterAt, articleId),
    customers: metadataStream(files.customers, customers, customerConverterAt, customerId),
    purchases: purchaseStream(files.purchases, scan),
    files: {
      articles: basename(files.articles.path),
      customers: basename(files.customers.path),
      purchases: basename(files.purchases.path),
    },
    stats: {
      articleRows: articles.rows,
      customerRows: customers.rows,
      purchaseRows: scan.rows,
      duplicateArticles: articles.rows - articles.first.size,
      duplicateCustomers: customers.rows - customers.first.size,
    },
  };
}

// The streams are made by separate functions so that each closure holds only its own table's
// state: once the articles and customers are published, their id maps can be collected.
function purchaseStream(file: TableFile, scan: PurchaseScan): DatasetStream['purchases'] {
  return (sink, opts) => streamPurchases(file, scan, sink, opts);
}

function metadataStream<T>(
  file: TableFile,
  scan: MetadataScan<T>,
  converter: (info: TableInfo) => MetadataConverter<T>,
  key: (record: T) => string,
): (sink: Sink<T>, batchSize?: number) => Promise<number> {
  return (sink, batchSize) => streamMetadata(file, scan, converter, key, sink, batchSize);
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
        const pending = consumer.visit(cells, line);
        rows++;
        if (rows % PROGRESS_EVERY === 0) onProgress(name, rows);
        return pending;
      },
    };
  });
  onProgress?.(name, total);
  return total;
}

/** What the first pass over a metadata table keeps: one entry per id, and repeated ids' last record. */
interface MetadataScan<T> {
  rows: number;
  /** Each id's first row (0-based data row). */
  first: Map<string, number>;
  /** The last record of every id that occurs more than once. */
  repeated: Map<string, T>;
}

/** First pass over a metadata table keyed by id: every row converted (validated), ids noted. */
async function scanMetadata<T>(
  file: TableFile,
  opts: ReadOptions,
  converter: (info: TableInfo) => MetadataConverter<T>,
  key: (record: T) => string,
): Promise<MetadataScan<T>> {
  const first = new Map<string, number>();
  const repeated = new Map<string, T>();
  let row = 0;
  const rows = await readRows(file, opts, (info) => {
    const c = converter(info);
    return {
      columns: c.columns,
      visit: (cells, line) => {
        const record = c.convert(cells, line);
        const id = key(record);
        if (first.has(id)) repeated.set(id, record);
        else first.set(id, row);
        row++;
        return undefined;
      },
    };
  });
  return { rows, first, repeated };
}

/**
 * Second pass: one record per id, at the position of the id's first row, with the values of its
 * last row (the last row wins), in batches of `batchSize` (default 10,000).
 */
async function streamMetadata<T>(
  file: TableFile,
  scan: MetadataScan<T>,
  converter: (info: TableInfo) => MetadataConverter<T>,
  key: (record: T) => string,
  sink: Sink<T>,
  batchSize = 10_000,
): Promise<number> {
  let batch: T[] = [];
  let total = 0;
  let row = 0;
  const flush = async (): Promise<void> => {
    const full = batch;
    batch = [];
    total += full.length;
    if (full.length > 0) await sink(full);
  };
  await readTable(file, (info) => {
    const c = converter(info);
    return {
      columns: c.columns,
      visit: (cells, line) => {
        const record = c.convert(cells, line);
        const id = key(record);
        if (scan.first.get(id) !== row++) return undefined; // a later row of an id
        batch.push(scan.repeated.get(id) ?? record);
        return batch.length >= Math.max(1, batchSize) ? flush() : undefined;
      },
    };
  });
  await flush();
  return total;
}
