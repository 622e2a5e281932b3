import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tensor } from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { featureNames } from '../../features/definitions.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { loadModel, ModelError, type LoadedModel } from '../../models/model-meta.ts';
import { createSession } from '../../models/onnx.ts';
import { ScorerError, ScorerPool, type ScorerEvent } from './pool.ts';

/** The features this build computes with embeddings off (the default). */
const FEATURE_NAMES = featureNames(false);

const F = FEATURE_NAMES.length;
let dir: string;
let modelA: LoadedModel;
let modelB: LoadedModel;
let pool: ScorerPool;

/** Deterministic rows (mulberry32), with plausible magnitudes and some missing values. */
function rows(n: number, seed: number, missing = 0): Float32Array {
  let s = seed >>> 0;
  const rand = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const x = new Float32Array(n * F);
  for (let i = 0; i < x.length; i++) {
    x[i] = rand() < missing ? NaN : Math.exp(rand() * 8 - 3);
  }
  return x;
}

/** Scores from a session in this thread, with the workers' session options. */
async function direct(model: LoadedModel, x: Float32Array, n: number): Promise<Float32Array> {
  const session = await createSession(model.bytes);
  try {
    const out = await session.run({ input: new Tensor('float32', x.slice(), [n, F]) });
    return out.variable!.data as Float32Array;
  } finally {
    await session.release();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rec-pool-'));
  const t0 = performance.now();
  const [a, b] = await Promise.all([
    buildFixtureModel(join(dir, 'a'), { features: FEATURE_NAMES, seed: 1, version: 'fixture-a' }),
    buildFixtureModel(join(dir, 'b'), { features: FEATURE_NAMES, seed: 2, version: 'fixture-b' }),
  ]);
  console.log(`two fixture models built in ${Math.round(performance.now() - t0)} ms`);
  modelA = await loadModel(a.onnxPath, a.metaPath, FEATURE_NAMES);
  modelB = await loadModel(b.onnxPath, b.metaPath, FEATURE_NAMES);
  const t1 = performance.now();
  pool = await ScorerPool.create({ model: modelA, size: 2 });
  console.log(`scorer pool (2 workers) ready in ${Math.round(performance.now() - t1)} ms`);
});

afterAll(async () => {
  await pool.close();
  await rm(dir, { recursive: true, force: true });
});

describe('ScorerPool', () => {
  it('scores 100 rows: finite, deterministic, the same in two pools', async () => {
    const x = rows(100, 1);
    const first = await pool.score(x.slice(), 100);
    const second = await pool.score(x.slice(), 100);
    expect(first.version).toBe('fixture-a');
    expect(first.scores).toHaveLength(100);
    expect(first.scores.every(Number.isFinite)).toBe(true);
    expect(new Set(first.scores).size).toBeGreaterThan(50);
    expect(second.scores).toEqual(first.scores);
    const other = await ScorerPool.create({ model: modelA, size: 1 });
    try {
      expect((await other.score(x.slice(), 100)).scores).toEqual(first.scores);
    } finally {
      await other.close();
    }
  });

  it('gives exactly the scores of an in-process InferenceSession.run', async () => {
    const x = rows(100, 2, 0.1);
    const expected = await direct(modelA, x, 100);
    const { scores } = await pool.score(x.slice(), 100);
    expect(Array.from(scores)).toEqual(Array.from(expected));
  });

  it('accepts missing (NaN) features and gives finite scores', async () => {
    const allMissing = new Float32Array(10 * F).fill(NaN);
    const some = rows(50, 3, 0.5);
    const [a, b] = await Promise.all([pool.score(allMissing, 10), pool.score(some, 50)]);
    expect(a.scores.every(Number.isFinite)).toBe(true);
    expect(new Set(a.scores).size).toBe(1);
    expect(b.scores.every(Number.isFinite)).toBe(true);
  });

  it('transfers a whole-buffer input and copies a view of a larger buffer', async () => {
    const owned = rows(5, 4);
    await pool.score(owned, 5);
    expect(owned.length).toBe(0); // detached: its buffer went to the worker
    const big = rows(10, 4);
    const view = big.subarray(0, 5 * F);
    const { scores } = await pool.score(view, 5);
    expect(big.length).toBe(10 * F);
    expect(scores).toEqual((await pool.score(rows(5, 4), 5)).scores);
  });

  it('refuses rows that do not match the model width, and rows built for other features', async () => {
    await expect(pool.score(new Float32Array(F + 1), 1)).rejects.toThrow(
      `${F + 1} values are not 1 rows of ${F} features`,
    );
    await expect(
      pool.score(new Float32Array(F), 1, { features: [...FEATURE_NAMES].reverse() }),
    ).rejects.toBeInstanceOf(ScorerError);
    const ok = await pool.score(new Float32Array(F), 1, { features: pool.features });
    expect(ok.scores).toHaveLength(1);
  });

  it('hot-swaps under concurrent load: no failures, versions consistent with scores', async () => {
    const n = 10;
    const x = rows(n, 5, 0.05);
    const expected = new Map([
      ['fixture-a', Array.from(await direct(modelA, x, n))],
      ['fixture-b', Array.from(await direct(modelB, x, n))],
    ]);
    expect(expected.get('fixture-a')).not.toEqual(expected.get('fixture-b'));
    // Swap back and forth while requests keep arriving (batches of 25, a timer tick apart):
    // requests dispatched before a switch finish on the old model, later ones get the new one.
    const seen = new Map<string, number>();
    const splits: string[] = [];
    let total = 0;
    let swaps = 0;
    const t0 = performance.now();
    while (total < 2_000 || swaps < 6) {
      const target = swaps % 2 === 0 ? modelB : modelA;
      const old = pool.version;
      const requests: Promise<{ scores: Float32Array; version: string }>[] = [];
      const swap = { done: false };
      const swapped = pool.swap(target).then(() => {
        swap.done = true;
      });
      for (let extra = 0; !swap.done || extra < 5;) {
        for (let i = 0; i < 25; i++) requests.push(pool.score(x.slice(), n));
        await new Promise((r) => setTimeout(r, 2));
        if (swap.done) extra++;
      }
      await swapped;
      swaps++;
      const results = await Promise.all(requests);
      const split = new Map<string, number>();
      for (const r of results) {
        expect(expected.has(r.version)).toBe(true);
        expect(Array.from(r.scores)).toEqual(expected.get(r.version));
        split.set(r.version, (split.get(r.version) ?? 0) + 1);
        seen.set(r.version, (seen.get(r.version) ?? 0) + 1);
      }
      total += results.length;
      splits.push(`${split.get(old) ?? 0} old/${split.get(target.meta.version) ?? 0} new`);
      expect(pool.version).toBe(target.meta.version);
      const after = await pool.score(x.slice(), n);
      expect(after.version).toBe(target.meta.version);
      expect(Array.from(after.scores)).toEqual(expected.get(target.meta.version));
    }
    console.log(
      `hot swap: ${total} requests of ${n} rows, ${swaps} swaps in ${Math.round(performance.now() - t0)} ms, per swap ${splits.join(', ')}`,
    );
    expect(seen.size).toBe(2);
    // At least one swap happened while requests were arriving on both sides of it.
    expect(splits.some((sp) => !sp.startsWith('0 old') && !sp.endsWith('/0 new'))).toBe(true);
    if (pool.version !== 'fixture-a') await pool.swap(modelA);
  });

  it('refuses a swap a worker cannot load; the old model keeps serving', async () => {
    const before = await pool.score(rows(3, 6), 3);
    const broken: LoadedModel = {
      meta: { ...modelB.meta, version: 'broken' },
      bytes: modelB.bytes.subarray(0, modelB.bytes.length >> 1),
    };
    const inflight = Array.from({ length: 50 }, () => pool.score(rows(3, 6), 3));
    const err: unknown = await pool.swap(broken).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect((err as ModelError).message).toMatch(
      /^swap to model broken refused, fixture-a stays active: worker 0: load model broken failed/,
    );
    for (const r of await Promise.all(inflight)) {
      expect(r.version).toBe('fixture-a');
      expect(r.scores).toEqual(before.scores);
    }
    expect(pool.version).toBe('fixture-a');
    expect((await pool.score(rows(3, 6), 3)).scores).toEqual(before.scores);
  });

  it('keeps serving the old model when loadModel refuses the new one', async () => {
    const p = join(dir, 'a');
    const err: unknown = await loadModel(
      join(p, 'model.onnx'),
      join(p, 'model.json'),
      FEATURE_NAMES.filter((f) => f !== 'a_pop_7d' && f !== 'p_aff_col'),
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe(
      'model fixture-a needs features serving cannot produce: a_pop_7d, p_aff_col',
    );
    expect(pool.version).toBe('fixture-a');
    expect((await pool.score(rows(2, 7), 2)).version).toBe('fixture-a');
  });

  it('benchRun times bare session.run inside a worker', async () => {
    const times = await pool.benchRun(100, 20);
    expect(times).toHaveLength(20);
    expect(times.every((t) => t > 0 && Number.isFinite(t))).toBe(true);
  });

  it('rejects the requests of a crashed worker (retriable) and replaces the worker', async () => {
    const x = rows(100, 8);
    const expected = (await pool.score(x.slice(), 100)).scores;
    // The crash message reaches worker 0 before the requests dispatched to it right after.
    pool.simulateCrash(0);
    const inflight = Array.from({ length: 40 }, () =>
      pool.score(x.slice(), 100).then(
        (r) => r,
        (e: unknown) => e,
      ),
    );
    const outcomes = await Promise.all(inflight);
    const failures = outcomes.filter((o) => o instanceof Error);
    // The 40 were spread over both workers: worker 0's half failed, worker 1's succeeded.
    expect(failures).toHaveLength(20);
    for (const f of failures) {
      if (!(f instanceof ScorerError)) throw f;
      expect(f.retriable).toBe(true);
      expect(f.message).toMatch(
        /^scorer worker 0 exited \(code 1\): scorer worker crash requested/,
      );
    }
    // The replacement loads the active model; afterwards both workers serve.
    expect(pool.readyWorkers).toBe(1);
    const t0 = performance.now();
    while (pool.readyWorkers < 2 && performance.now() - t0 < 20_000) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(pool.readyWorkers).toBe(2);
    const after = await Promise.all(Array.from({ length: 8 }, () => pool.score(x.slice(), 100)));
    for (const r of after) expect(r.scores).toEqual(expected);
    console.log(
      `crash: ${failures.length} of 40 in-flight requests rejected; replacement ready in ${Math.round(performance.now() - t0)} ms`,
    );
  });

  it('watchdog: a hung worker fails its requests at the timeout (retriable), is replaced, and the model keeps serving', async () => {
    const events: ScorerEvent[] = [];
    const watched = await ScorerPool.create({
      model: modelA,
      size: 2,
      timeoutMs: 300,
      onEvent: (e) => events.push(e),
    });
    try {
      const x = rows(20, 9);
      const expected = (await watched.score(x.slice(), 20)).scores;
      // Worker 0 blocks its thread for 30 s; of 4 requests sent right after, 2 go to it.
      watched.simulateHang(0, 30_000);
      const t0 = performance.now();
      const outcomes = await Promise.all(
        Array.from({ length: 4 }, () =>
          watched.score(x.slice(), 20).then(
            (r) => ({ r, ms: performance.now() - t0 }),
            (e: unknown) => ({ e, ms: performance.now() - t0 }),
          ),
        ),
      );
      const failures = outcomes.filter((o) => 'e' in o);
      expect(failures).toHaveLength(2);
      for (const f of failures) {
        if (!(f.e instanceof ScorerError)) throw f.e;
        expect(f.e.retriable).toBe(true);
        // Failed at the timeout, not when the 30 s hang ends.
        expect(f.ms).toBeGreaterThanOrEqual(290);
        expect(f.ms).toBeLessThan(1_500);
      }
      expect(failures.map((f) => (f.e as Error).message).sort()).toEqual([
        'score 20 rows: no answer from scorer worker 0 within 300 ms (SCORER_TIMEOUT_MS); the worker is replaced',
        'scorer worker 0 hung (a request took over 300 ms) and is replaced',
      ]);
      for (const o of outcomes) if ('r' in o) expect(o.r.scores).toEqual(expected);
      expect(watched.readyWorkers).toBe(1);
      const t1 = performance.now();
      while (watched.readyWorkers < 2 && performance.now() - t1 < 20_000) {
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(watched.readyWorkers).toBe(2);
      expect(events).toEqual([
        { kind: 'timeout', worker: 0, timeoutMs: 300 },
        { kind: 'recycled', worker: 0, reason: 'timeout' },
      ]);
      // Both workers (the replacement included) score with the same model.
      const after = await Promise.all(
        Array.from({ length: 8 }, () => watched.score(x.slice(), 20)),
      );
      for (const r of after) {
        expect(r.version).toBe('fixture-a');
        expect(r.scores).toEqual(expected);
      }
      console.log(
        `watchdog: hung worker's requests failed after ${Math.round(Math.max(...failures.map((f) => f.ms)))} ms; replacement ready in ${Math.round(performance.now() - t1)} ms`,
      );
    } finally {
      await watched.close();
    }
  });
});
