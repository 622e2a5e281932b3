/**
 * Faults: the Kafka broker and the schema registry killed (`kill -9`) and restarted mid-stream,
 * on a private stack (its own broker and Apicurio on free ports, under a temp STACK_DIR; the
 * shared Redis, a namespace per run) so the suites sharing the main stack are not disturbed.
 * Each fault: the stream keeps flowing into it, the processors, the producer and the lag probe
 * ride it out, nothing is dead-lettered, every purchase counts once, and every key ends equal to
 * a clean run's. The stall and the time to catch up are printed (`FAULT_TIMINGS` lines).
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import avro from 'avsc';
import { Redis } from 'ioredis';
import type { Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../common/config.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import { createProcessorMetrics, type ProcessorMetrics } from '../../processors/metrics.ts';
import type { RunningProcessors } from '../../processors/start.ts';
import { isAlive } from '../../common/lock.ts';
import { readLivePid, repoRoot, stackPaths } from '../../stack/process.ts';
import { ensureStack, stopStack } from '../../stack/stack.ts';
import { pidFileOf } from '../../stack/service.ts';
import { countRecords } from '../../streams/admin.ts';
import { registerSchema } from '../../streams/avro.ts';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { createRegistryClient } from '../../streams/kafka.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import type { AvroRecordSchema, Purchase } from '../../schemas/events.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import {
  freePort,
  stackContext,
  startSuiteProcessors,
  waitFor,
  type StackContext,
} from '../helpers.ts';
import { dumpNamespace, expectSameState } from '../redis-helpers.ts';

const T0 = Date.UTC(2020, 8, 7);

/**
 * Let the private stack use the shared stack's unpacked Apicurio and Kafka jars (read-only at
 * run time) instead of copying 170 MB again; where the shared stack has none (its services are
 * external), the launcher fetches them as usual.
 */
function linkDownloads(shared: Config, privateDir: string): void {
  const from = stackPaths(shared.stackDir).root;
  if (existsSync(join(from, 'apicurio', 'apicurio-registry-app-3.0.9', '.complete'))) {
    symlinkSync(join(from, 'apicurio'), join(privateDir, 'apicurio'));
  }
  // Only a copy made from this checkout's pom (the launcher would otherwise replace it: not ours).
  const pomHash = createHash('sha256')
    .update(readFileSync(join(repoRoot, 'stack', 'kafka', 'pom.xml')))
    .digest('hex');
  const libsMarker = join(from, 'kafka', 'libs', '.complete');
  if (existsSync(libsMarker) && readFileSync(libsMarker, 'utf8').trim() === pomHash) {
    mkdirSync(join(privateDir, 'kafka'), { recursive: true });
    symlinkSync(join(from, 'kafka', 'libs'), join(privateDir, 'kafka', 'libs'));
  }
}

/** When the processors last applied something: polls their event counter. */
function progressClock(metrics: ProcessorMetrics) {
  let total = -1;
  const changes: number[] = [];
  const timer = setInterval(() => {
    void metrics.events.get().then((m) => {
      const now = m.values.reduce((s, v) => s + v.value, 0);
      if (now !== total) changes.push(Date.now());
      total = now;
    });
  }, 50);
  return {
    /** The longest time without progress between `from` and `to`, and the first progress after `from`. */
    stall(from: number, to: number) {
      const inside = [from, ...changes.filter((t) => t > from && t <= to)];
      let longest = 0;
      for (let i = 1; i < inside.length; i++) {
        longest = Math.max(longest, (inside[i] as number) - (inside[i - 1] as number));
      }
      return { longestGapMs: longest, firstAfterMs: (inside[1] ?? to) - from };
    },
    stop() {
      clearInterval(timer);
    },
  };
}

/** SIGKILL the private stack's service and wait until it is gone. */
async function kill(config: Config, service: 'kafka' | 'registry'): Promise<void> {
  const pidFile = pidFileOf(stackPaths(config.stackDir), service);
  const pid = await readLivePid(pidFile, service === 'kafka' ? 'kafka.Kafka' : 'apicurio-registry');
  if (pid === undefined) throw new Error(`the private ${service} is not running`);
  process.kill(-pid, 'SIGKILL'); // its process group: the launcher starts services detached
  await waitFor(`${service} (pid ${pid}) to die`, () => !isAlive(pid), 10_000, 20);
  rmSync(pidFile, { force: true });
}

describe('Kafka broker and schema registry restarted mid-stream (a private stack)', () => {
  const shared = loadConfig();
  const dir = mkdtempSync(join(tmpdir(), 'rec-faults-'));
  const redis = new Redis(shared.redisUrl);
  let config: Config;
  const contexts: StackContext[] = [];
  const producers: Producer[] = [];
  const running: RunningProcessors[] = [];
  const clocks: ReturnType<typeof progressClock>[] = [];
  const namespaces: string[] = [];

  beforeAll(async () => {
    const [kafka, controller, registry] = [await freePort(), await freePort(), await freePort()];
    config = loadConfig({
      KAFKA_PORT: String(kafka),
      KAFKA_CONTROLLER_PORT: String(controller),
      SCHEMA_REGISTRY_PORT: String(registry),
      STACK_DIR: dir,
      // Redis stays the shared one (each run its own namespace): only Kafka and the registry fail.
      REDIS_URL: shared.redisUrl,
    });
    linkDownloads(shared, dir);
    await ensureStack(config);
  }, 240_000);

  afterAll(async () => {
    for (const c of clocks) c.stop();
    for (const r of running) await r.stop().catch(() => undefined);
    for (const p of producers) await p.disconnect().catch(() => undefined);
    for (const c of contexts) await c.cleanup().catch(() => undefined);
    for (const ns of namespaces) await deleteNamespace(redis, keySpace(ns)).catch(() => 0);
    redis.disconnect();
    await stopStack(config).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  /** Topics of their own on the private stack, metadata published, a connected producer. */
  async function setUp(name: string) {
    const ctx = stackContext(name, 3, config);
    contexts.push(ctx);
    const { codecs } = await bootstrap(ctx);
    const producer = createIdempotentProducer(ctx.kafka);
    producers.push(producer);
    await producer.connect();
    await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(
      makeArticles(30, T0),
    );
    await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(
      makeCustomers(50, T0),
    );
    const metrics = createProcessorMetrics(false);
    const start = async (ns: string, group: string, c: Codecs, m = metrics) => {
      namespaces.push(ns);
      const r = (
        await startSuiteProcessors(ctx, {
          redis,
          keys: keySpace(ns),
          codecs: c,
          producer,
          groupPrefix: group,
          sessionTimeoutMs: 10_000,
          metrics: m,
        })
      ).running;
      running.push(r);
      return r;
    };
    return { ctx, codecs, producer, metrics, start };
  }

  /** Purchases counted per customer (`n`) in namespace `ns`, summed. */
  async function counted(ns: string, purchases: readonly Purchase[]): Promise<number> {
    const keys = keySpace(ns);
    const ids = [...new Set(purchases.map((p) => p.customer_id))];
    const n = await Promise.all(
      ids.map(async (id) => Number((await redis.hget(keys.customer(id).state, 'n')) ?? 0)),
    );
    return n.reduce((s, x) => s + x, 0);
  }

  /** Nothing in any DLQ of the suite's topics, and nothing counted as dead-lettered. */
  async function expectNoDeadLetters(ctx: StackContext, metrics: ProcessorMetrics) {
    expect((await metrics.dlq.get()).values.reduce((s, v) => s + v.value, 0)).toBe(0);
    const admin = ctx.kafka.admin();
    await admin.connect();
    try {
      for (const t of [ctx.topics.purchases, ctx.topics.articles, ctx.topics.customers]) {
        expect(await countRecords(admin, t.dlq)).toBe(0);
      }
    } finally {
      await admin.disconnect();
    }
  }

  /** A clean run of the same topics into a fresh namespace equals `ns`, key for key. */
  async function expectSameAsCleanRun(
    start: (ns: string, group: string, c: Codecs) => Promise<RunningProcessors>,
    ctx: StackContext,
    ns: string,
  ) {
    const cleanNs = `clean${randomUUID().slice(0, 8)}`;
    const { codecs } = await bootstrap(ctx);
    const clean = await start(cleanNs, `clean-${randomUUID().slice(0, 8)}`, codecs);
    await clean.caughtUp(120_000);
    const want = await dumpNamespace(redis, cleanNs);
    expect(want.size).toBeGreaterThan(200);
    expectSameState(await dumpNamespace(redis, ns), want);
  }

  it('a broker kill -9 and restart: nothing lost, nothing twice, state equal to a clean run', async () => {
    const { ctx, codecs, producer, metrics, start } = await setUp('faults-kafka');
    const all = makePurchases({
      count: 4_000,
      customers: 50,
      articles: 30,
      start: T0,
      days: 30,
      seed: 31,
    });
    const purchases = new EventProducer(producer, ctx.topics.purchases, codecs.purchases);
    await purchases.send(all.slice(0, 1_500));
    const ns = `fkafka${randomUUID().slice(0, 8)}`;
    const live = await start(ns, `fkafka-${randomUUID().slice(0, 8)}`, codecs);
    const clock = progressClock(metrics);
    clocks.push(clock);
    await waitFor('the processors to be working', async () => (await counted(ns, all)) > 0, 60_000);

    // The rest of the stream flows (about 6 s at this rate) while the broker dies and comes back.
    const rest = purchases.send(all.slice(1_500), { rate: 400 });
    rest.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
    await new Promise((r) => setTimeout(r, 1_500));
    const killedAt = Date.now();
    await kill(config, 'kafka');
    // The lag probe is asked while the broker is down: it must wait, not fail.
    const probe = live.caughtUp(180_000);
    probe.catch(() => undefined);
    await new Promise((r) => setTimeout(r, 5_000));
    await ensureStack(config);
    const backAt = Date.now();
    await rest;
    await probe;
    await live.caughtUp(180_000);
    const caughtUpAt = Date.now();
    const stall = clock.stall(killedAt, caughtUpAt);
    console.log(
      `FAULT_TIMINGS kafka: down ${((backAt - killedAt) / 1000).toFixed(1)} s (kill to broker answering), ` +
        `no progress for ${(stall.longestGapMs / 1000).toFixed(1)} s, first progress ${(stall.firstAfterMs / 1000).toFixed(1)} s after the kill, ` +
        `caught up ${((caughtUpAt - backAt) / 1000).toFixed(1)} s after the broker was back`,
    );

    expect(await counted(ns, all)).toBe(all.length);
    await expectNoDeadLetters(ctx, metrics);
    await expectSameAsCleanRun(start, ctx, ns);
  }, 300_000);

  it('a registry kill -9 and restart: records of a new schema version and a processor starting meanwhile wait for it; nothing dead-lettered', async () => {
    const { ctx, codecs, producer, metrics, start } = await setUp('faults-registry');
    const all = makePurchases({
      count: 3_000,
      customers: 50,
      articles: 30,
      start: T0,
      days: 30,
      seed: 37,
      idPrefix: 'reg',
    });
    const v1 = new EventProducer(producer, ctx.topics.purchases, codecs.purchases);
    await v1.send(all.slice(0, 1_000));
    const ns = `freg${randomUUID().slice(0, 8)}`;
    const group = `freg-${randomUUID().slice(0, 8)}`;
    const live = await start(ns, group, codecs);
    await live.caughtUp(120_000);
    const clock = progressClock(metrics);
    clocks.push(clock);

    // A compatible second version of the purchase contract (one optional field more), registered
    // by a producer just before the registry dies: the id it was handed must survive the crash.
    const { subject } = ctx.topics.purchases;
    const v2Schema: AvroRecordSchema = {
      ...ctx.topics.purchases.contract.avro,
      fields: [
        ...ctx.topics.purchases.contract.avro.fields,
        { name: 'campaign', type: ['null', 'string'], default: null },
      ],
    };
    const v2Id = await createRegistryClient(config).register(subject, {
      schemaType: 'AVRO',
      schema: JSON.stringify(v2Schema),
    });
    await kill(config, 'registry');
    const killedAt = Date.now();

    // During the outage: the producer (its id cached) writes v2 records, whose writer schema the
    // running processors have never fetched; and a processor instance starts with empty caches.
    const v2Type = avro.Type.forSchema(v2Schema as avro.Schema);
    const v2Message = (p: Purchase) => {
      const body = v2Type.toBuffer({ ...p, campaign: 'autumn' });
      const value = Buffer.alloc(5 + body.length);
      value.writeInt32BE(v2Id, 1); // magic byte 0, then the schema id
      body.copy(value, 5);
      return { key: p.customer_id, value, timestamp: String(p.event_time) };
    };
    await producer.send({
      topic: ctx.topics.purchases.name,
      acks: -1,
      messages: all.slice(1_000, 2_000).map(v2Message),
    });
    const joining = (async () => {
      const fresh = await bootstrap({ ...ctx, registry: createRegistryClient(config) });
      return start(ns, group, fresh.codecs);
    })();
    joining.catch(() => undefined); // awaited below
    await waitFor(
      'the processors to retry the records they cannot decode yet',
      async () => (await metrics.retries.get()).values.reduce((s, v) => s + v.value, 0) > 0,
      30_000,
    );
    await new Promise((r) => setTimeout(r, Math.max(0, 8_000 - (Date.now() - killedAt))));
    expect(await counted(ns, all)).toBe(1_000);
    expect((await metrics.dlq.get()).values.reduce((s, v) => s + v.value, 0)).toBe(0);

    await ensureStack(config);
    const backAt = Date.now();
    await v1.send(all.slice(2_000));
    const second = await joining;
    await live.caughtUp(180_000);
    await second.caughtUp(180_000);
    const caughtUpAt = Date.now();
    const stall = clock.stall(killedAt, caughtUpAt);
    console.log(
      `FAULT_TIMINGS registry: down ${((backAt - killedAt) / 1000).toFixed(1)} s (kill to registry answering), ` +
        `no progress for ${(stall.longestGapMs / 1000).toFixed(1)} s, first progress ${(stall.firstAfterMs / 1000).toFixed(1)} s after the kill, ` +
        `caught up ${((caughtUpAt - backAt) / 1000).toFixed(1)} s after the registry was back`,
    );

    // The registry kept its schemas and ids across the crash.
    const after = createRegistryClient(config);
    expect(v2Id).toBeGreaterThan(codecs.purchases.schemaId);
    expect(JSON.parse((await after.getBySubjectAndId(subject, v2Id)).schema)).toEqual(v2Schema);
    expect(await registerSchema(after, subject, ctx.topics.purchases.contract.avro)).toBe(
      codecs.purchases.schemaId,
    );
    // No id handed out before the crash is handed out again for another schema.
    const v3Id = await registerSchema(after, subject, {
      ...v2Schema,
      fields: [...v2Schema.fields, { name: 'store', type: ['null', 'string'], default: null }],
    });
    expect(v3Id).toBeGreaterThan(v2Id);
    expect(await counted(ns, all)).toBe(all.length);
    await expectNoDeadLetters(ctx, metrics);
    await expectSameAsCleanRun(start, ctx, ns);
  }, 300_000);
});
