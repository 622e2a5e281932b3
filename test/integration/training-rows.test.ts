/**
 * Point-in-time training rows on the real stack: a generated H&M-layout folder is loaded into
 * Kafka, rows are built for two weekly cutoffs by replaying the topics into an isolated namespace,
 * and checked against the dataset itself: labels against the CSV's label weeks, features against a
 * separate namespace built from scratch with only the events before each cutoff, the Arrow file
 * read back (apache-arrow, and pyarrow when the venv exists), candidate recall recomputed from it.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC, type Table } from 'apache-arrow';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import type { DecodedRecord } from '../../streams/consumer.ts';
import { DAY_MS } from '../../features/decay.ts';
import { featureNames, featureVector } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace, readArticles, readCustomers } from '../../features/state.ts';
import { readDataset, type Dataset } from '../../streams/loader/dataset.ts';
import { runLoad } from '../../streams/loader/load.ts';
import { applyArticles, applyCustomers } from '../../processors/metadata.ts';
import { buildCoBuyers } from '../../processors/co-buyers.ts';
import { PurchaseProcessor } from '../../processors/purchases.ts';
import { defineScripts } from '../../processors/scripts.ts';
import {
  DEFAULT_CANDIDATE_CONFIG,
  activeSources,
  gatherCandidates,
} from '../../serving/candidates/index.ts';
import {
  buildTrainingRows,
  type QueryInfo,
  type RowsDeps,
  type RowsResult,
} from '../../training/rows.ts';
import { generateDataset } from '../fixtures/generate.ts';
import { labelSample } from '../../evaluation/label-sample.ts';
import { PurchaseLog } from '../../evaluation/purchase-log.ts';
import { labelWeek } from '../../training/judge.ts';
import { stackContext } from '../helpers.ts';

/** The sources of these rows: their deps leave embeddings off (embeddings-rows.test.ts: on). */
const SOURCES = activeSources(false);

/** The features this build computes with embeddings off (the default). */
const FEATURE_NAMES = featureNames(false);

const CUTOFFS = [Date.UTC(2020, 6, 13), Date.UTC(2020, 6, 20)];
const day = (t: number) => new Date(t).toISOString().slice(0, 10);
const ROOT = new URL('../../', import.meta.url).pathname;
const PYTHON = join(ROOT, '.venv/bin/python');

/** Label-week purchases straight from the CSV, by `t_dat`: customer -> articles. */
function csvLabels(csv: string, cutoff: number): Map<string, Set<string>> {
  const first = day(cutoff);
  const end = day(cutoff + 7 * DAY_MS);
  const out = new Map<string, Set<string>>();
  for (const line of csv.trim().split('\n').slice(1)) {
    const [tDat = '', customer = '', article = ''] = line.split(',');
    if (tDat < first || tDat >= end) continue;
    const s = out.get(customer);
    if (s) s.add(article);
    else out.set(customer, new Set([article]));
  }
  return out;
}

function record<T>(value: T, partition: number, offset: number, time: number): DecodedRecord<T> {
  return { value, key: null, topic: 'direct', partition, offset: String(offset), timestamp: time };
}

/** Same number, or both NaN, or within 1e-9 relative. */
function close(a: number, b: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number.isNaN(a) && Number.isNaN(b);
  return a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
}

describe('training rows on the real stack', () => {
  const ctx = stackContext('training-rows');
  const ns = `train-${randomUUID().slice(0, 8)}`;
  const refNs = `ref-${randomUUID().slice(0, 8)}`;
  const otherNs = `train-${randomUUID().slice(0, 8)}`;
  const dir = mkdtempSync(join(tmpdir(), 'rec-training-rows-'));
  const path = join(dir, 'rows.arrow');
  const redis = new Redis(ctx.config.redisUrl);
  const queries: QueryInfo[] = [];
  let codecs: Codecs;
  let deps: RowsDeps;
  let dataset: Dataset;
  let csv: string;
  let result: RowsResult;
  let table: Table;

  beforeAll(async () => {
    const info = generateDataset(join(dir, 'data'), {
      customers: 150,
      articles: 120,
      purchases: 3000,
      seed: 42,
      startDate: '2020-06-01',
      days: 60,
    });
    csv = readFileSync(info.files.transactions, 'utf8');
    await runLoad({
      config: { ...ctx.config, topicPrefix: ctx.prefix },
      logger: ctx.logger,
      dataDir: join(dir, 'data'),
      progress: false,
    });
    dataset = await readDataset(join(dir, 'data'));
    ({ codecs } = await bootstrap(ctx));
    deps = { kafka: ctx.kafka, redis, codecs, topics: ctx.topics, logger: ctx.logger };
    result = await buildTrainingRows(deps, {
      cutoffs: CUTOFFS,
      namespace: ns,
      customerSample: { others: 10, seed: 7 },
      path,
      onQuery: (q) => queries.push(q),
    });
    table = tableFromIPC(readFileSync(path));
  });

  afterAll(async () => {
    for (const n of [ns, refNs, otherNs]) await deleteNamespace(redis, keySpace(n));
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
    await ctx.cleanup();
  });

  it('scores every label-week customer plus the sample, and labels exactly the label-week purchases', () => {
    expect(result.perCutoff).toHaveLength(2);
    expect(result.lateEvents).toBe(0);
    let positives = 0;
    for (const [i, cutoff] of CUTOFFS.entries()) {
      const labels = csvLabels(csv, cutoff);
      const summary = result.perCutoff[i]!;
      expect(summary.cutoff).toBe(cutoff);
      expect(summary.labelCustomers).toBe(labels.size);
      expect(summary.labelPairs).toBe([...labels.values()].reduce((s, a) => s + a.size, 0));
      // Customers with history before the cutoff and no label-week purchase: the sample's pool.
      const pool = new Set(
        dataset.purchases
          .filter((p) => p.event_time < cutoff && !labels.has(p.customer_id))
          .map((p) => p.customer_id),
      );
      expect(pool.size).toBeGreaterThan(10);
      expect(summary.sampledCustomers).toBe(10);
      const mine = queries.filter((q) => q.cutoff === cutoff);
      expect(mine).toHaveLength(summary.customers);
      expect(summary.customers).toBe(labels.size + 10);
      // Every label-week customer is a query; the sampled ones bought nothing that week but had
      // bought before the cutoff.
      const byCustomer = new Map(mine.map((q) => [q.customerId, q]));
      for (const c of labels.keys()) expect(byCustomer.has(c)).toBe(true);
      const sampled = mine.filter((q) => !labels.has(q.customerId));
      expect(sampled).toHaveLength(10);
      for (const q of sampled) {
        expect(q.labels.size).toBe(0);
        expect(
          dataset.purchases.some((p) => p.customer_id === q.customerId && p.event_time < cutoff),
        ).toBe(true);
      }
      for (const q of mine) {
        const want = labels.get(q.customerId) ?? new Set<string>();
        expect([...q.labels].sort()).toEqual([...want].sort());
        expect(q.candidates.length).toBeGreaterThan(0);
        expect(new Set(q.candidates.map((c) => c.articleId)).size).toBe(q.candidates.length);
      }
      positives += summary.positives;
    }
    expect(result.positives).toBe(positives);
    expect(positives).toBeGreaterThan(0);
    expect(result.queries).toBe(queries.length);

    // Row by row, from the file: label 1 exactly when the CSV's label week has the pair.
    const qid = table.getChild('qid')!.toArray() as BigInt64Array;
    const customer = table.getChild('customer_id')!;
    const article = table.getChild('article_id')!;
    const cutoffCol = table.getChild('cutoff')!.toArray() as BigInt64Array;
    const label = table.getChild('label')!.toArray() as Int8Array;
    const labelsByCutoff = new Map(CUTOFFS.map((c) => [c, csvLabels(csv, c)]));
    let ones = 0;
    for (let r = 0; r < table.numRows; r++) {
      const week = labelsByCutoff.get(Number(cutoffCol[r]))!;
      const bought = week.get(customer.get(r) as string)?.has(article.get(r) as string) ?? false;
      expect(label[r]).toBe(bought ? 1 : 0);
      ones += label[r]!;
    }
    expect(ones).toBe(result.positives);
    // qids contiguous and increasing, one customer and one cutoff per qid
    const seen = new Map<bigint, string>();
    for (let r = 0; r < table.numRows; r++) {
      if (r > 0) expect(qid[r]! >= qid[r - 1]!).toBe(true);
      const key = `${customer.get(r) as string}|${cutoffCol[r]!}`;
      const prev = seen.get(qid[r]!);
      if (prev === undefined) seen.set(qid[r]!, key);
      else expect(prev).toBe(key);
    }
    expect(seen.size).toBe(result.queries);
  });

  it('computes each row as of its cutoff: the same candidates and features as a from-scratch build of the earlier events', async () => {
    const keys = keySpace(refNs);
    const scripts = defineScripts(redis);
    const features = FEATURE_NAMES.map((f) => table.getChild(f)!.toArray() as Float32Array);
    let rowBase = 0;
    const rowOf = new Map<number, number>();
    for (const q of queries) {
      rowOf.set(q.qid, rowBase);
      rowBase += q.candidates.length;
    }
    let compared = 0;
    for (const cutoff of CUTOFFS) {
      // A separate namespace holding ONLY the events before this cutoff, applied directly.
      await deleteNamespace(redis, keys);
      const articles = dataset.articles.filter((a) => a.updated_at <= cutoff);
      const customers = dataset.customers.filter((c) => c.updated_at <= cutoff);
      await applyArticles(
        redis,
        keys,
        scripts,
        articles.map((a, i) => record(a, 0, i, a.updated_at)),
      );
      await applyCustomers(
        redis,
        keys,
        scripts,
        customers.map((c, i) => record(c, 0, i, c.updated_at)),
      );
      const before = dataset.purchases.filter((p) => p.event_time < cutoff);
      expect(before.length).toBeGreaterThan(100);
      const processor = new PurchaseProcessor(redis, keys, scripts);
      for (let i = 0; i < before.length; i += 250) {
        await processor.apply(
          before.slice(i, i + 250).map((p, j) => record(p, 0, i + j, p.event_time)),
        );
      }
      // The co-buyer lists of that state, built at the cutoff as the rows build them.
      await buildCoBuyers(redis, keys, { now: cutoff });

      // Every query of this cutoff: candidate set; every 3rd query: every row's features.
      const mine = queries.filter((q) => q.cutoff === cutoff);
      for (const [n, q] of mine.entries()) {
        const set = await gatherCandidates(redis, keys, DEFAULT_CANDIDATE_CONFIG, {
          customerId: q.customerId,
          filters: {},
          allowRepurchase: true,
        });
        expect(set.candidates.map((c) => [c.articleId, c.sources.join(',')])).toEqual(
          q.candidates.map((c) => [c.articleId, c.sources.join(',')]),
        );
        if (n % 3 !== 0) continue;
        const [state] = await readCustomers(redis, keys, [q.customerId]);
        const states = await readArticles(
          redis,
          keys,
          q.candidates.map((c) => c.articleId),
        );
        states.forEach((article, k) => {
          const want = featureVector(FEATURE_NAMES, {
            customer: state!,
            article,
            now: cutoff,
            candidate: set.candidates[k]!,
          });
          const got = q.features[k]!;
          want.forEach((w, j) => {
            if (!close(got[j]!, w)) {
              throw new Error(
                `${FEATURE_NAMES[j]!} of (${q.customerId.slice(0, 8)}, ${article.articleId}, ${day(cutoff)}): rows ${got[j]!}, direct ${w}`,
              );
            }
            // The file holds the same value as float32.
            const stored = features[j]![rowOf.get(q.qid)! + k]!;
            expect(Object.is(stored, Math.fround(got[j]!))).toBe(true);
          });
          compared++;
        });
      }
    }
    expect(compared).toBeGreaterThan(100);
  }, 120_000);

  it('writes an Arrow IPC file that reads back with its columns, rows and metadata', () => {
    const names = table.schema.fields.map((f) => f.name);
    expect(names).toEqual([
      'qid',
      'customer_id',
      'article_id',
      'cutoff',
      'label',
      ...FEATURE_NAMES,
      'sources',
      'heuristic',
    ]);
    const types = Object.fromEntries(table.schema.fields.map((f) => [f.name, String(f.type)]));
    expect(types).toMatchObject({
      qid: 'Int64',
      customer_id: 'Utf8',
      article_id: 'Utf8',
      cutoff: 'Int64',
      label: 'Int8',
      sources: 'Utf8',
      heuristic: 'Float32',
    });
    // Serving's heuristic score of every row, in [0, 1].
    const heuristic = table.getChild('heuristic')!;
    for (let r = 0; r < table.numRows; r += 13) {
      expect(heuristic.get(r)).toBeGreaterThanOrEqual(0);
      expect(heuristic.get(r)).toBeLessThanOrEqual(1);
    }
    for (const f of FEATURE_NAMES) expect(types[f]).toBe('Float32');
    expect(table.numRows).toBe(result.rows);
    expect(JSON.parse(table.schema.metadata.get('features')!)).toEqual(FEATURE_NAMES);
    expect(JSON.parse(table.schema.metadata.get('cutoffs')!)).toEqual(CUTOFFS);
    const sources = table.getChild('sources')!;
    for (let r = 0; r < table.numRows; r += 17) {
      const s = (sources.get(r) as string).split(',');
      expect(s.length).toBeGreaterThan(0);
      for (const x of s) expect(SOURCES).toContain(x);
    }

    if (!existsSync(PYTHON)) {
      console.warn('pyarrow check skipped: no .venv (see docs/development.md)');
      return;
    }
    const script = [
      'import json, sys',
      'import pyarrow.feather as feather',
      't = feather.read_table(sys.argv[1])',
      'm = t.schema.metadata',
      'print(json.dumps({"rows": t.num_rows, "names": t.schema.names,',
      '  "types": [str(f.type) for f in t.schema],',
      '  "features": json.loads(m[b"features"]), "cutoffs": json.loads(m[b"cutoffs"]),',
      '  "positives": int(t.column("label").to_numpy().sum())}))',
    ].join('\n');
    const py = JSON.parse(execFileSync(PYTHON, ['-c', script, path], { encoding: 'utf8' })) as {
      rows: number;
      names: string[];
      types: string[];
      features: string[];
      cutoffs: number[];
      positives: number;
    };
    expect(py.rows).toBe(result.rows);
    expect(py.names).toEqual(names);
    expect(py.types.slice(0, 5)).toEqual(['int64', 'string', 'string', 'int64', 'int8']);
    // The features, then sources (string) and the heuristic score (float).
    expect(py.types.slice(5, 5 + FEATURE_NAMES.length).every((t) => t === 'float')).toBe(true);
    expect(py.types.slice(5 + FEATURE_NAMES.length)).toEqual(['string', 'float']);
    expect(py.features).toEqual(FEATURE_NAMES);
    expect(py.cutoffs).toEqual(CUTOFFS);
    expect(py.positives).toBe(result.positives);
  });

  it('reports candidate recall per source equal to a direct count over the rows', () => {
    const customer = table.getChild('customer_id')!;
    const cutoffCol = table.getChild('cutoff')!.toArray() as BigInt64Array;
    const label = table.getChild('label')!.toArray() as Int8Array;
    const sources = table.getChild('sources')!;
    let allPairs = 0;
    const allHits: Record<string, number> = { overall: 0 };
    for (const [i, cutoff] of CUTOFFS.entries()) {
      const labels = csvLabels(csv, cutoff);
      const pairs = [...labels.values()].reduce((s, a) => s + a.size, 0);
      const hits: Record<string, number> = { overall: 0 };
      for (let r = 0; r < table.numRows; r++) {
        if (Number(cutoffCol[r]) !== cutoff || label[r] !== 1) continue;
        expect(labels.has(customer.get(r) as string)).toBe(true);
        hits.overall = (hits.overall ?? 0) + 1;
        for (const s of (sources.get(r) as string).split(',')) hits[s] = (hits[s] ?? 0) + 1;
      }
      const recall = result.perCutoff[i]!.candidateRecall;
      for (const key of ['overall', ...SOURCES] as const) {
        expect(recall[key]).toBeGreaterThanOrEqual(0);
        expect(recall[key]).toBeLessThanOrEqual(1);
        expect(recall[key]).toBeCloseTo((hits[key] ?? 0) / pairs, 12);
        allHits[key] = (allHits[key] ?? 0) + (hits[key] ?? 0);
      }
      allPairs += pairs;
    }
    for (const key of ['overall', ...SOURCES] as const) {
      expect(result.candidateRecall[key]).toBeCloseTo((allHits[key] ?? 0) / allPairs, 12);
    }
    expect(result.candidateRecall.overall).toBeGreaterThan(0);
  });

  it('applies each event once when the dataset was published twice (a re-run load): the same rows', async () => {
    const twice = stackContext('training-rows-twice');
    const twiceNs = `train-${randomUUID().slice(0, 8)}`;
    try {
      for (let i = 0; i < 2; i++) {
        await runLoad({
          config: { ...twice.config, topicPrefix: twice.prefix },
          logger: twice.logger,
          dataDir: join(dir, 'data'),
          progress: false,
        });
      }
      const { codecs: twiceCodecs } = await bootstrap(twice);
      const again: QueryInfo[] = [];
      const res = await buildTrainingRows(
        {
          kafka: twice.kafka,
          redis,
          codecs: twiceCodecs,
          topics: twice.topics,
          logger: twice.logger,
        },
        {
          cutoffs: CUTOFFS,
          namespace: twiceNs,
          customerSample: { others: 10, seed: 7 },
          onQuery: (q) => again.push(q),
        },
      );
      const last = CUTOFFS.at(-1) as number;
      expect(res.duplicates).toBe(dataset.purchases.filter((p) => p.event_time < last).length);
      expect(res.lateEvents).toBe(0);
      expect(res.rows).toBe(result.rows);
      const key = (q: QueryInfo) => `${q.cutoff}|${q.customerId}`;
      const want = new Map(queries.map((q) => [key(q), q]));
      expect(again).toHaveLength(queries.length);
      // Equal up to float rounding: the batches (and so the order of log-adds) differ.
      const ids = (x: QueryInfo | undefined) =>
        x?.candidates.map((c) => [c.articleId, c.sources.join(',')]);
      for (const q of again) {
        const w = want.get(key(q));
        expect(ids(q)).toEqual(ids(w));
        q.features.forEach((row, k) => {
          row.forEach((v, j) => {
            const wv = w?.features[k]?.[j] as number;
            if (!close(v, wv)) throw new Error(`${FEATURE_NAMES[j]!}: ${v} vs ${wv}`);
          });
        });
      }
    } finally {
      await deleteNamespace(redis, keySpace(twiceNs));
      await twice.cleanup();
    }
  }, 120_000);

  it('builds the same rows at a cutoff whichever earlier cutoffs the build stops at, with sets trimmed to small caps', async () => {
    // Caps this small trim the trending and co-purchase sets many times a day, and a set is
    // trimmed at the end of a processor call: the state at a cutoff is the same only if the calls
    // are cut the same way whether or not the build stopped at earlier cutoffs.
    const processorOptions = { trendingCap: 4, copurchaseCap: 3 };
    const last = CUTOFFS.at(-1) as number;
    const build = async (cutoffs: number[]) => {
      const namespace = `train-${randomUUID().slice(0, 8)}`;
      const out: QueryInfo[] = [];
      try {
        await buildTrainingRows(deps, {
          cutoffs,
          namespace,
          processorOptions,
          onQuery: (q) => {
            if (q.cutoff === last) out.push(q);
          },
        });
      } finally {
        await deleteNamespace(redis, keySpace(namespace));
      }
      return out;
    };
    const view = (qs: QueryInfo[]) =>
      qs.map((q) => ({
        customer: q.customerId,
        candidates: q.candidates.map((c) => `${c.articleId}:${c.sources.join(',')}`),
        features: q.features,
      }));
    const straight = view(await build([last]));
    const stopping = view(
      await build([Date.UTC(2020, 5, 24), Date.UTC(2020, 6, 6), Date.UTC(2020, 6, 9), last]),
    );
    expect(straight.length).toBeGreaterThan(20);
    expect(stopping).toEqual(straight);
    // The caps do bite: the default caps give other candidates or features at the same cutoff.
    const defaults = view(queries.filter((q) => q.cutoff === last).slice(0, straight.length));
    expect(defaults.map((q) => q.customer)).toEqual(straight.map((q) => q.customer));
    expect(defaults).not.toEqual(straight);
  }, 120_000);

  it('scores a sample of a large label week, the customers the judge keeps, each with the rows of the full build', async () => {
    const last = CUTOFFS.at(-1) as number;
    const labels = csvLabels(csv, last);
    expect(labels.size).toBeGreaterThan(20);
    const namespace = `train-${randomUUID().slice(0, 8)}`;
    const got: QueryInfo[] = [];
    let res: RowsResult;
    try {
      res = await buildTrainingRows(deps, {
        cutoffs: [last],
        namespace,
        labelCustomers: 12,
        onQuery: (q) => got.push(q),
      });
    } finally {
      await deleteNamespace(redis, keySpace(namespace));
    }
    const summary = res.perCutoff[0]!;
    expect(summary.labelCustomers).toBe(12);
    expect(summary.labelCustomersLeftOut).toBe(labels.size - 12);
    expect(summary.sampledCustomers).toBe(0);
    const customers = got.map((q) => q.customerId);
    expect(customers).toEqual(labelSample(labels.keys(), last, 12));
    // The judge of the gate and the backtest keeps the same customers of the week.
    const log = new PurchaseLog(
      dataset.purchases.map((p) => ({
        customer: p.customer_id,
        article: p.article_id,
        time: p.event_time,
      })),
    );
    expect(labelWeek(log, last, 12, 12).customers).toEqual(customers);
    // A sampled customer's rows are those of the build that scored everyone.
    const full = new Map(queries.filter((q) => q.cutoff === last).map((q) => [q.customerId, q]));
    for (const q of got) {
      const w = full.get(q.customerId);
      expect(q.candidates.map((c) => c.articleId)).toEqual(w?.candidates.map((c) => c.articleId));
      expect([...q.labels].sort()).toEqual([...(w?.labels ?? [])].sort());
    }
    await expect(
      buildTrainingRows(deps, { cutoffs: [last], namespace: otherNs, labelCustomers: 0 }),
    ).rejects.toThrow('labelCustomers must be a positive integer');
  }, 120_000);

  it('refuses the live namespace and cutoffs without data, after cleaning its namespace', async () => {
    await expect(buildTrainingRows(deps, { cutoffs: CUTOFFS, namespace: 'rec' })).rejects.toThrow(
      /live feature store/,
    );
    await expect(
      buildTrainingRows(deps, { cutoffs: CUTOFFS, namespace: 'mine', liveNamespace: 'mine' }),
    ).rejects.toThrow(/live feature store/);
    await expect(
      buildTrainingRows(deps, { cutoffs: [CUTOFFS[1]!, CUTOFFS[0]!], namespace: otherNs }),
    ).rejects.toThrow(/strictly ascending/);
    await expect(
      buildTrainingRows(deps, { cutoffs: [Date.UTC(2020, 7, 10)], namespace: otherNs }),
    ).rejects.toThrow(/no purchases in \[2020-08-10.*choose an earlier cutoff/);

    // The first purchase is on 2020-06-01 after 08:00: a cutoff at midnight has no history.
    const stale = `${otherNs}:{u:stale}:stats`;
    await redis.hset(stale, 'n', '1');
    await expect(
      buildTrainingRows(deps, { cutoffs: [Date.UTC(2020, 5, 1)], namespace: otherNs }),
    ).rejects.toThrow(/no purchases before 2020-06-01.*choose a later cutoff/);
    expect(await redis.exists(stale)).toBe(0);
  });
});
