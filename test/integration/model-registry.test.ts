/**
 * The trusted model registry on the real Redis, with a real serving instance over HTTP: models are
 * signed (MODEL_SIGNING_KEY) and verified at activation and by serving; `active` only moves to a
 * version that passed; instances act on the `active` pointer only (a spoofed PUBLISH naming
 * another version changes nothing, a missed announcement is caught by the periodic check); a
 * model tampered after signing, or unsigned, is refused and the old one keeps serving; pruning
 * keeps the active version, the last N and rejected versions' reasons.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../common/logger.ts';
import { loadConfig } from '../../common/config.ts';
import { featureNames } from '../../features/definitions.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { buildFixtureModel } from '../../models/fixture.ts';
import { loadModel, type LoadedModel } from '../../models/model-meta.ts';
import {
  activateModel,
  listModels,
  pointActiveAt,
  readModel,
  registerModel,
  rejectModel,
} from '../../models/registry.ts';
import { SigningKey, type ModelTrust } from '../../models/signing.ts';
import type { SwapOutcome } from '../../serving/live-model.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { waitFor } from '../helpers.ts';

const FEATURE_NAMES = featureNames(false);
const CHECK_MS = 300;

describe('the trusted model registry', () => {
  const config = loadConfig();
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent', 'test-model-registry');
  const ns = `mr${randomUUID().slice(0, 8)}`;
  const keys = keySpace(ns);
  const redis = new Redis(config.redisUrl);
  const dir = mkdtempSync(join(tmpdir(), 'rec-model-registry-'));
  const trust: ModelTrust = {
    key: new SigningKey(`test-signing-key-${randomUUID()}`),
    allowUnsigned: false,
  };
  const swaps: SwapOutcome[] = [];
  let base: LoadedModel;
  let other: LoadedModel;
  let serving: ServingHandle;

  /** `base`'s trees under another version name. */
  const as = (version: string, m: LoadedModel = base): LoadedModel => ({
    meta: { ...m.meta, version },
    bytes: m.bytes,
  });
  const activation = { available: FEATURE_NAMES, trust };
  /** The version the instance serves, asked over HTTP. */
  const served = async () => {
    const r = await fetch(`${serving.url}/readyz`);
    return ((await r.json()) as { checks: { ranker: { version: string } } }).checks.ranker.version;
  };
  const activated = () => swaps.filter((s) => s.outcome === 'activated').map((s) => s.version);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeAll(async () => {
    const build = async (seed: number) => {
      const b = await buildFixtureModel(join(dir, `m${seed}`), {
        trees: 10,
        depth: 4,
        seed,
        version: `fixture-mr-${seed}`,
      });
      return loadModel(b.onnxPath, b.metaPath, FEATURE_NAMES);
    };
    [base, other] = await Promise.all([build(7), build(8)]);
    await registerModel(redis, keys, as('A'), { trust });
    await activateModel(redis, keys, 'A', activation);
    serving = await startServing({
      redisUrl: config.redisUrl,
      keys,
      logger,
      port: 0,
      host: '127.0.0.1',
      allowFixtureModel: true,
      trust,
      activeCheckMs: CHECK_MS,
      workers: 1,
      onSwap: (o) => swaps.push(o),
    });
  });

  afterAll(async () => {
    await serving.close();
    await deleteNamespace(redis, keys);
    redis.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the signed, activated model', async () => {
    expect((await readModel(redis, keys, 'A'))?.signature).toMatch(/^[0-9a-f]{64}$/);
    expect(await served()).toBe('A');
    expect(activated()).toEqual(['A']);
  });

  it('ignores a spoofed PUBLISH naming a rejected or a merely registered version', async () => {
    await registerModel(redis, keys, as('O'), { trust }); // valid, signed, never activated
    await registerModel(redis, keys, as('R')); // unsigned: activation refuses it
    await expect(activateModel(redis, keys, 'R', activation)).rejects.toThrow(/not signed/);
    expect(await readModel(redis, keys, 'R')).toMatchObject({
      status: 'rejected',
      reason: expect.stringContaining('not signed') as string,
    });
    expect(await redis.get(keys.models.active)).toBe('A');
    await redis.publish(keys.models.channel, 'R');
    await redis.publish(keys.models.channel, 'O');
    await sleep(3 * CHECK_MS);
    expect(await served()).toBe('A');
    expect(swaps.map((s) => s.version)).not.toContain('O');
    expect(swaps.map((s) => s.version)).not.toContain('R');
  });

  it('catches a missed announcement: `active` moved without a PUBLISH is loaded by the periodic check', async () => {
    // What a subscriber that was disconnected during the announcement sees.
    await redis.set(keys.models.active, 'O');
    await waitFor('the periodic check', async () => (await served()) === 'O', 10 * CHECK_MS, 50);
    expect(activated()).toEqual(['A', 'O']);
  });

  it('refuses a model tampered with after signing, at activation and in serving; the old one keeps serving', async () => {
    await registerModel(redis, keys, as('T'), { trust });
    // Other (valid) trees, and metadata without the checksum: only the signature can tell.
    const meta: Record<string, unknown> = { ...base.meta, version: 'T' };
    delete meta.onnx_sha256;
    await redis.hset(keys.models.model('T'), {
      meta: JSON.stringify(meta),
      onnx: other.bytes,
    });
    await expect(activateModel(redis, keys, 'T', activation)).rejects.toThrow(
      /signature does not match.*the active model stays O/,
    );
    expect((await readModel(redis, keys, 'T'))?.status).toBe('rejected');
    expect(await redis.get(keys.models.active)).toBe('O');

    // Whoever can write to Redis can move `active` by hand: serving verifies too.
    await redis.set(keys.models.active, 'T');
    await redis.publish(keys.models.channel, 'T');
    await waitFor('the refusal', () => swaps.find((s) => s.version === 'T'), 10 * CHECK_MS, 50);
    expect(swaps.find((s) => s.version === 'T')).toMatchObject({
      outcome: 'rejected',
      reason: expect.stringContaining('signature does not match') as string,
    });
    expect(await served()).toBe('O');
    // Refused once: later checks do not load (or log) it again.
    await sleep(3 * CHECK_MS);
    expect(swaps.filter((s) => s.version === 'T')).toHaveLength(1);
  });

  it('refuses an unsigned model at activation and in serving; the old one keeps serving', async () => {
    await redis.set(keys.models.active, 'O');
    await registerModel(redis, keys, as('U')); // no key: unsigned
    expect((await readModel(redis, keys, 'U'))?.signature).toBeNull();
    await expect(activateModel(redis, keys, 'U', activation)).rejects.toThrow(/not signed/);
    expect(await redis.get(keys.models.active)).toBe('O');
    await redis.set(keys.models.active, 'U');
    await redis.publish(keys.models.channel, 'U');
    await waitFor('the refusal', () => swaps.find((s) => s.version === 'U'), 10 * CHECK_MS, 50);
    expect(swaps.find((s) => s.version === 'U')).toMatchObject({
      outcome: 'rejected',
      reason: expect.stringContaining('not signed') as string,
    });
    expect(await served()).toBe('O');
    expect(activated()).toEqual(['A', 'O']);
    // Each refusal counted once in /metrics, however often the periodic check ran since.
    const metrics = await (await fetch(`${serving.url}/metrics`)).text();
    expect(metrics).toMatch(/rec_serving_model_swaps_total\{outcome="rejected"\} 2\n/);
    expect(metrics).toMatch(/rec_serving_model_swaps_total\{outcome="activated"\} 2\n/);
  });

  it('moves `active` only to the entry that was verified: not when it was registered again or pruned meanwhile', async () => {
    const ck = keySpace(`${ns}c`);
    try {
      await registerModel(redis, ck, as('c1'), { trust });
      await activateModel(redis, ck, 'c1', activation);
      await registerModel(redis, ck, as('c2'), { trust });
      const verified = await readModel(redis, ck, 'c2');
      if (verified === null) throw new Error('c2 not registered');
      // Registered again with other trees after the check read it: that is not what passed.
      await registerModel(redis, ck, as('c2', other), { trust });
      await expect(pointActiveAt(redis, ck, verified)).rejects.toThrow(
        /changed in the registry while it was being checked/,
      );
      expect(await redis.get(ck.models.active)).toBe('c1');
      // Pruned (bytes stripped) after the check.
      const again = await readModel(redis, ck, 'c2');
      if (again === null) throw new Error('c2 not registered');
      await redis.hdel(ck.models.model('c2'), 'onnx');
      await expect(pointActiveAt(redis, ck, again)).rejects.toThrow(/changed in the registry/);
      expect(await redis.get(ck.models.active)).toBe('c1');
      // Unchanged: it moves, and the previous version is retired.
      await registerModel(redis, ck, as('c3'), { trust });
      const c3 = await readModel(redis, ck, 'c3');
      if (c3 === null) throw new Error('c3 not registered');
      await pointActiveAt(redis, ck, c3);
      expect(await redis.get(ck.models.active)).toBe('c3');
      expect((await readModel(redis, ck, 'c1'))?.status).toBe('retired');
      expect((await readModel(redis, ck, 'c3'))?.status).toBe('active');
    } finally {
      await deleteNamespace(redis, ck);
    }
  });

  it('prunes on registration to the active version, the last N and the rejected versions reasons', async () => {
    const pk = keySpace(`${ns}p`);
    try {
      let t = 1_000;
      const reg = (v: string) => registerModel(redis, pk, as(v), { trust, keep: 3, now: t++ });
      await reg('p1');
      await activateModel(redis, pk, 'p1', activation);
      await reg('p2');
      await reg('p3');
      await rejectModel(redis, pk, 'p3', 'the gate said no');
      for (const v of ['p4', 'p5', 'p6', 'p7']) await reg(v);
      expect(await redis.get(pk.models.active)).toBe('p1');
      const listed = await listModels(redis, pk);
      expect(listed.map((m) => `${m.version}:${m.status}`)).toEqual([
        'p1:active',
        'p3:rejected',
        'p5:registered',
        'p6:registered',
        'p7:registered',
      ]);
      expect(listed.find((m) => m.version === 'p3')?.reason).toBe('the gate said no');
      // The rejected version's bytes are gone, its reason stays; the others are gone entirely.
      expect(await redis.hexists(pk.models.model('p3'), 'onnx')).toBe(0);
      expect(await readModel(redis, pk, 'p3')).toBeNull();
      expect(await redis.exists(pk.models.model('p2'), pk.models.model('p4'))).toBe(0);
      expect((await readModel(redis, pk, 'p1'))?.bytes.length).toBe(base.bytes.length);
    } finally {
      await deleteNamespace(redis, pk);
    }
  });
});
