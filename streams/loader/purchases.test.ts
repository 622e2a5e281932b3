/**
 * The purchase stream: a file in event-time order streams as it is, a shuffled one goes through
 * the external sort (many runs on disk, merged) and gives exactly what the in-memory stable sort
 * gives, ids included; batches are bounded and the runs are removed afterwards.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Purchase } from '../../schemas/events.ts';
import { generateDataset, mulberry32, type GeneratedInfo } from '../../test/fixtures/generate.ts';
import { assignEventIds } from './convert.ts';
import { scanPurchases, streamPurchases, type StreamOptions } from './purchases.ts';
import { locateTable } from './table.ts';

let root: string;
let info: GeneratedInfo;
let shuffledDir: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'loader-purchases-'));
  info = generateDataset(join(root, 'sorted'), {
    customers: 200,
    articles: 300,
    purchases: 12_000,
    seed: 5,
    withTs: true,
  });
  const [header, ...rows] = readFileSync(info.files.transactions, 'utf8').trimEnd().split('\n');
  const rnd = mulberry32(17);
  for (let i = rows.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [rows[i], rows[j]] = [rows[j] ?? '', rows[i] ?? ''];
  }
  shuffledDir = join(root, 'shuffled');
  generateDataset(shuffledDir, { customers: 1, articles: 1, purchases: 0, seed: 1 });
  writeFileSync(join(shuffledDir, 'transactions_train.csv'), [header, ...rows].join('\n') + '\n');
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

async function collect(
  dir: string,
  opts: StreamOptions,
): Promise<{ purchases: Purchase[]; batches: number[]; inOrder: boolean }> {
  const file = locateTable(dir, 'transactions_train');
  const scan = await scanPurchases(file);
  const purchases: Purchase[] = [];
  const batches: number[] = [];
  const n = await streamPurchases(
    file,
    scan,
    async (batch) => {
      batches.push(batch.length);
      purchases.push(...batch);
      await new Promise((r) => setImmediate(r));
    },
    opts,
  );
  expect(n).toBe(scan.rows);
  expect(purchases.length).toBe(scan.rows);
  return { purchases, batches, inOrder: scan.inOrder };
}

describe('streamPurchases', () => {
  it('streams a file in event-time order without sorting, in batches of at most batchSize', async () => {
    const { purchases, batches, inOrder } = await collect(info.dir, { batchSize: 1_000 });
    expect(inOrder).toBe(true);
    expect(Math.max(...batches)).toBe(1_000);
    expect(batches.length).toBe(Math.ceil(info.purchases / 1_000));
    const times = purchases.map((p) => p.event_time);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(new Set(purchases.map((p) => p.event_id)).size).toBe(info.purchases);
  });

  it('sorts a shuffled file externally (runs on disk) exactly as a stable in-memory sort, ids included', async () => {
    const tmp = mkdtempSync(join(root, 'runs-'));
    const external = await collect(shuffledDir, { runSize: 1_000, batchSize: 700, tmpDir: tmp });
    expect(external.inOrder).toBe(false);
    expect(readdirSync(tmp)).toEqual([]); // runs removed

    const inMemory = await collect(shuffledDir, {});
    expect(external.purchases).toEqual(inMemory.purchases);

    const times = external.purchases.map((p) => p.event_time);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Same ids as the file in order (the ids do not depend on the file order).
    const sorted = await collect(info.dir, {});
    const ids = (ps: Purchase[]) => ps.map((p) => p.event_id).sort();
    expect(ids(external.purchases)).toEqual(ids(sorted.purchases));
    const copy = sorted.purchases.map((p) => ({ ...p, event_id: '' }));
    assignEventIds(copy);
    expect(copy).toEqual(sorted.purchases);
  });
});
