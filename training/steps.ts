/**
 * Steps a training cycle and the backtest share: reading the purchase log, selecting rows by
 * cutoff, scoring rows with an ONNX model in this process, and running the Python trainer with its
 * log lines streamed.
 */
import { spawn } from 'node:child_process';
import * as ort from 'onnxruntime-node';
import { createSession } from '../models/onnx.ts';
import { replay } from '../streams/replay.ts';
import { PurchaseLogBuilder, type PurchaseLog } from '../evaluation/purchase-log.ts';
import { RowTable, type RowsDeps } from './rows.ts';

/** Every purchase of the topic (customer, article, event time), each event id once. */
export async function readPurchases(
  deps: RowsDeps,
  onProgress?: (read: number, total: number) => void,
): Promise<PurchaseLog> {
  // By event id, as the processors do: a folder published twice counts once here too.
  const log = new PurchaseLogBuilder();
  await replay({
    kafka: deps.kafka,
    topic: deps.topics.purchases,
    codec: deps.codecs.purchases,
    from: 0,
    to: Number.MAX_SAFE_INTEGER,
    logger: deps.logger,
    onRecords: (records) => {
      for (const r of records) {
        log.add(r.value.event_id, r.value.customer_id, r.value.article_id, r.timestamp);
      }
    },
    ...(onProgress ? { onProgress } : {}),
  });
  return log.build();
}

/** Rows of `table` whose cutoff satisfies `keep`, as a new table (qid order kept). */
export function filterTable(table: RowTable, keep: (cutoff: number) => boolean): RowTable {
  // Sized to the rows kept, not to the table: a backtest filters one week out of tens many times
  // per cycle, and columns of the whole table's length each time were hundreds of MB of garbage.
  const kept = new Uint8Array(table.length);
  let count = 0;
  for (let i = 0; i < table.length; i++) {
    if (keep(table.cutoff[i] ?? 0)) {
      kept[i] = 1;
      count++;
    }
  }
  const out = new RowTable(table.features, Math.max(1, count));
  const cols = table.features.map((f) => table.feature(f));
  const heuristic = table.heuristic;
  for (let i = 0; i < table.length; i++) {
    if (kept[i] === 0) continue;
    const cutoff = table.cutoff[i] ?? 0;
    out.push({
      qid: table.qid[i] ?? 0,
      customerId: table.customerId[i] ?? '',
      articleId: table.articleId[i] ?? '',
      cutoff,
      label: (table.label[i] ?? 0) === 1 ? 1 : 0,
      sources: table.sources[i] ?? '',
      values: cols.map((c) => c[i] ?? NaN),
      heuristic: heuristic[i] ?? NaN,
    });
  }
  return out;
}

/** Scores of every row of `table` (float32, row order) from an ONNX model, in this process. */
export async function scoreOnnx(table: RowTable, bytes: Buffer, features: readonly string[]) {
  const session = await createSession(bytes);
  try {
    const cols = features.map((f) => table.feature(f));
    const data = new Float32Array(table.length * features.length);
    for (let i = 0; i < table.length; i++) {
      for (let j = 0; j < features.length; j++) data[i * features.length + j] = cols[j]?.[i] ?? NaN;
    }
    const input = new ort.Tensor('float32', data, [table.length, features.length]);
    const out = await session.run({ [session.inputNames[0] ?? 'input']: input });
    const first = out[session.outputNames[0] ?? 'variable'];
    return Float32Array.from(first?.data as Float32Array);
  } finally {
    await session.release();
  }
}

/** Run the trainer; resolves with its stdout, streams its stderr lines to `onLine`. */
export function runPython(
  python: string,
  args: string[],
  onLine: (l: string) => void,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      for (const l of d.toString().split('\n')) if (l.trim() !== '') onLine(l);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(stdout);
      else
        reject(
          new Error(
            `trainer exited with code ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
          ),
        );
    });
  });
}

/** A query's articles, highest score first (ties keep row order), and its customer. */
export interface RankedQuery {
  readonly customerId: string;
  readonly articles: string[];
}

/** Each query of `table` ranked by `scores` (one per row), in first-row order. */
export function rankByQuery(table: RowTable, scores: ArrayLike<number>): Map<number, RankedQuery> {
  const byQid = new Map<number, { article: string; score: number; i: number }[]>();
  for (let i = 0; i < table.length; i++) {
    const q = table.qid[i] ?? 0;
    const list = byQid.get(q) ?? [];
    list.push({ article: table.articleId[i] ?? '', score: scores[i] ?? -Infinity, i });
    byQid.set(q, list);
  }
  const out = new Map<number, RankedQuery>();
  for (const [q, list] of byQid) {
    list.sort((a, b) => b.score - a.score || a.i - b.i);
    const first = list.reduce((m, x) => Math.min(m, x.i), Infinity);
    out.set(q, { customerId: table.customerId[first] ?? '', articles: list.map((x) => x.article) });
  }
  return out;
}
