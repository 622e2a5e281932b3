/**
 * The purchases of a transactions table as a stream in event-time order, in memory bounded by a
 * batch, not by the file: a first pass converts and validates every row and checks whether the
 * file is already in event-time order (H&M's is, by `t_dat`); a second pass hands the purchases
 * over in batches, with their event ids, either straight from the file (in order) or through an
 * external merge sort (sorted runs in a temporary folder, merged).
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import type { Purchase } from '../../schemas/events.ts';
import { EventIdAssigner, PurchaseConverter } from './convert.ts';
import { readTable, type TableFile } from './table.ts';

/** What the first pass learnt about a transactions table. */
export interface PurchaseScan {
  /** Data rows, one purchase each. */
  rows: number;
  /** Every row's event time is at or after the previous row's: the file order is the load order. */
  inOrder: boolean;
  /** Earliest and latest event time (null without rows). */
  firstEventTime: number | null;
  lastEventTime: number | null;
}

export interface ScanOptions {
  /** Called with the file name and the rows read so far, every 10,000 rows and at the end. */
  onProgress?: (file: string, rows: number) => void;
}

export interface StreamOptions {
  /** Purchases per batch handed to the sink (default 10,000). */
  batchSize?: number;
  /**
   * Purchases per sorted run when the file is not in event-time order (default 500,000, about
   * 150 MB of records); fewer rows than this are sorted in memory without temporary files.
   */
  runSize?: number;
  /** Where the runs are written (default the OS temporary folder); removed afterwards. */
  tmpDir?: string;
}

const PROGRESS_EVERY = 10_000;

/**
 * First pass: convert every row (so a malformed value throws its DatasetError before anything is
 * published) and keep only counts, the time range and whether the file is in event-time order.
 */
export async function scanPurchases(
  file: TableFile,
  opts: ScanOptions = {},
): Promise<PurchaseScan> {
  const name = basename(file.path);
  let inOrder = true;
  let previous = Number.NEGATIVE_INFINITY;
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  let seen = 0;
  const rows = await readTable(file, (info) => {
    const converter = new PurchaseConverter(info);
    return {
      columns: converter.columns,
      visit: (cells, line) => {
        const t = converter.convert(cells, line).event_time;
        if (t < previous) inOrder = false;
        previous = t;
        if (t < first) first = t;
        if (t > last) last = t;
        seen++;
        if (seen % PROGRESS_EVERY === 0) opts.onProgress?.(name, seen);
        return undefined;
      },
    };
  });
  opts.onProgress?.(name, rows);
  return {
    rows,
    inOrder,
    firstEventTime: rows === 0 ? null : first,
    lastEventTime: rows === 0 ? null : last,
  };
}

/**
 * Second pass: hand every purchase to `sink` in event-time order, stably (equal times in file
 * order), with its event id, in batches; each batch is awaited before more is read. Uses the
 * scan's `inOrder` to skip sorting; otherwise sorts externally. Returns the purchases handed over.
 */
export async function streamPurchases(
  file: TableFile,
  scan: PurchaseScan,
  sink: (batch: Purchase[]) => Promise<void> | undefined,
  opts: StreamOptions = {},
): Promise<number> {
  const batchSize = Math.max(1, opts.batchSize ?? 10_000);
  const ids = new EventIdAssigner();
  let batch: Purchase[] = [];
  let total = 0;
  const emit = (p: Purchase): Promise<void> | undefined => {
    ids.assign(p);
    batch.push(p);
    if (batch.length < batchSize) return undefined;
    return flush();
  };
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const full = batch;
    batch = [];
    total += full.length;
    await sink(full);
  };

  if (scan.inOrder) {
    await readTable(file, (info) => {
      const converter = new PurchaseConverter(info);
      return {
        columns: converter.columns,
        visit: (cells, line) => emit(converter.convert(cells, line)),
      };
    });
  } else {
    await externalSort(file, opts, emit);
  }
  await flush();
  return total;
}

/** A purchase with its row number in the file (the tie-breaker that makes the sort stable). */
type Sequenced = [seq: number, purchase: Purchase];

const bySeqTime = (a: Sequenced, b: Sequenced): number =>
  a[1].event_time - b[1].event_time || a[0] - b[0];

/**
 * Sort the file's purchases by (event time, row number) in runs of `runSize` held in memory, each
 * written to a temporary file as JSON lines, then merge the runs (a binary heap of their heads).
 * A file of at most one run is sorted in memory.
 */
async function externalSort(
  file: TableFile,
  opts: StreamOptions,
  emit: (p: Purchase) => Promise<void> | undefined,
): Promise<void> {
  const runSize = Math.max(1, opts.runSize ?? 500_000);
  const tmp: { dir: string | null } = { dir: null };
  const runs: string[] = [];
  let run: Sequenced[] = [];
  let seq = 0;
  const writeRun = async (): Promise<void> => {
    run.sort(bySeqTime);
    tmp.dir ??= mkdtempSync(join(opts.tmpDir ?? tmpdir(), 'rec-load-sort-'));
    const path = join(tmp.dir, `run-${String(runs.length)}.jsonl`);
    await writeLines(path, run);
    runs.push(path);
    run = [];
  };
  try {
    await readTable(file, (info) => {
      const converter = new PurchaseConverter(info);
      return {
        columns: converter.columns,
        visit: (cells, line) => {
          run.push([seq++, converter.convert(cells, line)]);
          return run.length >= runSize ? writeRun() : undefined;
        },
      };
    });
    if (runs.length === 0) {
      run.sort(bySeqTime);
      for (const [, p] of run) {
        const pending = emit(p);
        if (pending !== undefined) await pending;
      }
      return;
    }
    if (run.length > 0) await writeRun();
    await mergeRuns(runs, emit);
  } finally {
    if (tmp.dir !== null) rmSync(tmp.dir, { recursive: true, force: true });
  }
}

/** One line per purchase: `[seq, customer, article, price, channel, quantity, time]`. */
async function writeLines(path: string, run: readonly Sequenced[]): Promise<void> {
  const out = createWriteStream(path);
  let chunk = '';
  for (const [seq, p] of run) {
    chunk +=
      JSON.stringify([
        seq,
        p.customer_id,
        p.article_id,
        p.price,
        p.sales_channel_id,
        p.quantity,
        p.event_time,
      ]) + '\n';
    if (chunk.length >= 1 << 20) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  out.end(chunk);
  await once(out, 'finish');
}

function parseLine(line: string): Sequenced {
  const [seq, customer_id, article_id, price, sales_channel_id, quantity, event_time] = JSON.parse(
    line,
  ) as [number, string, string, number, number, number, number];
  return [
    seq,
    { event_id: '', customer_id, article_id, price, sales_channel_id, quantity, event_time },
  ];
}

/** K-way merge of sorted runs, reading each line by line. */
async function mergeRuns(
  paths: readonly string[],
  emit: (p: Purchase) => Promise<void> | undefined,
): Promise<void> {
  const readers = paths.map((p) =>
    createInterface({ input: createReadStream(p), crlfDelay: Infinity })[Symbol.asyncIterator](),
  );
  // heap of [head, reader index], ordered by bySeqTime on the heads
  const heap: [Sequenced, number][] = [];
  const less = (i: number, j: number): boolean =>
    bySeqTime((heap[i] as [Sequenced, number])[0], (heap[j] as [Sequenced, number])[0]) < 0;
  const swap = (i: number, j: number): void => {
    [heap[i], heap[j]] = [heap[j] as [Sequenced, number], heap[i] as [Sequenced, number]];
  };
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(l, m)) m = l;
      if (r < heap.length && less(r, m)) m = r;
      if (m === i) return;
      swap(i, m);
      i = m;
    }
  };
  const up = (i: number): void => {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(i, parent)) return;
      swap(i, parent);
      i = parent;
    }
  };
  const next = async (r: number): Promise<Sequenced | null> => {
    const reader = readers[r];
    if (reader === undefined) return null;
    for (;;) {
      const item = await reader.next();
      if (item.done === true) return null;
      if (item.value !== '') return parseLine(item.value);
    }
  };
  try {
    for (let r = 0; r < readers.length; r++) {
      const head = await next(r);
      if (head !== null) {
        heap.push([head, r]);
        up(heap.length - 1);
      }
    }
    while (heap.length > 0) {
      const top = heap[0] as [Sequenced, number];
      const pending = emit(top[0][1]);
      if (pending !== undefined) await pending;
      const head = await next(top[1]);
      if (head === null) {
        const lastEntry = heap.pop() as [Sequenced, number];
        if (heap.length > 0) {
          heap[0] = lastEntry;
          down(0);
        }
      } else {
        heap[0] = [head, top[1]];
        down(0);
      }
    }
  } finally {
    for (const reader of readers) await reader.return?.();
  }
}
