/**
 * HTTP ingest and served-list logging through the real API on the real stack. Purchases posted to
 * `POST /v1/events/purchases` (valid and invalid in one batch) are produced to the suite's
 * purchases topic and applied by the real processors (customer state in Redis); the invalid ones
 * are named; a missing or wrong key is 401, no configured key 403, an oversized body 413 (by
 * Content-Length and by the bytes of a chunked body); a batch posted again without event ids is
 * recognised by the processors, not counted twice. Answers of `/v1/recommendations` are read back
 * from `recommendations.served`, decoded with the registry, equal to what the client got. With
 * Kafka unreachable, recommendations still answer 200 at once (drops counted) and ingest answers
 * 503.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NO_KAFKA_SECURITY } from '../../common/config.ts';
import { Secret } from '../../common/redact.ts';
import { DAY_MS } from '../../features/decay.ts';
import { horizonCut } from '../../features/horizon.ts';
import { keySpace } from '../../features/keys.ts';
import { deleteNamespace, readCustomers } from '../../features/state.ts';
import type { ProcessorMetrics } from '../../processors/metrics.ts';
import type { RunningProcessors } from '../../processors/start.ts';
import { DEFAULT_SERVING_CONFIG, createApp } from '../../serving/app.ts';
import { createServingMetrics } from '../../serving/metrics.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { createKafka } from '../../streams/kafka.ts';
import { readDeadLetters } from '../../streams/dlq.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { readServed, stackContext, startSuiteProcessors, waitFor } from '../helpers.ts';

const KEY = `test-key-${randomUUID()}`;
const T0 = Date.UTC(2020, 8, 1);
const MAX_BYTES = 8_192;

interface StatusJson {
  index: number;
  event_id: string | null;
  status: 'accepted' | 'invalid' | 'late';
  error?: { code: string; message: string; fields: { path: string; message: string }[] };
}
interface IngestJson {
  accepted: number;
  invalid: number;
  late: number;
  events: StatusJson[];
  request_id: string;
}
interface ErrorJson {
  error: { code: string; message: string; fields?: { path: string; message: string }[] };
}
interface RecJson {
  customer_id: string;
  items: { article_id: string; score: number; rank: number; sources: string[] }[];
  model_version: string;
  ranker: { kind: string };
  experiment: string | null;
  variant: string;
  degraded: boolean;
  cold_start: boolean;
  now: number;
}

const purchase = (customer: string, article: string, minute: number) => ({
  customer_id: customer,
  article_id: article,
  price: 0.05,
  sales_channel_id: 2,
  event_time: T0 + minute * 60_000,
});

/** Metric value of `name` (with labels matching `labels`) in a /metrics text, 0 when absent. */
function metric(text: string, name: string, labels = ''): number {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}}`}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('HTTP ingest and served-list logging on the real stack', () => {
  const ctx = stackContext('ingest');
  const ns = `i${randomUUID().slice(0, 8)}`;
  const keys = keySpace(ns);
  const redis = new Redis(ctx.config.redisUrl);
  const dlqProducer = createIdempotentProducer(ctx.kafka);
  let serving: ServingHandle;
  let running: RunningProcessors;
  let processorMetrics: ProcessorMetrics;
  let codecs: Codecs;
  const customer = `web-${randomUUID().slice(0, 8)}`;

  const post = async (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${serving.url}/v1/events/purchases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}`, ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  beforeAll(async () => {
    ({ codecs } = await bootstrap(ctx));
    await dlqProducer.connect();
    ({ running, metrics: processorMetrics } = await startSuiteProcessors(ctx, {
      redis,
      keys,
      codecs,
      producer: dlqProducer,
      groupPrefix: `ingest-${ns}`,
    }));
    serving = await startServing({
      redisUrl: ctx.config.redisUrl,
      keys,
      logger: ctx.logger,
      port: 0,
      host: '127.0.0.1',
      streams: { kafka: ctx.kafka, registry: ctx.registry, topics: ctx.topics },
      apiKeys: [new Secret(KEY), new Secret(`other-key-${randomUUID()}`)],
      servedLog: { enabled: true, bufferSize: 1_000, batchSize: 20, flushMs: 50 },
      config: { ingest: { maxEvents: 20, maxBytes: MAX_BYTES, timeoutMs: 10_000 } },
    });
  }, 60_000);

  afterAll(async () => {
    await serving.close();
    await running.stop();
    await dlqProducer.disconnect();
    await deleteNamespace(redis, keys);
    redis.disconnect();
    await ctx.cleanup();
  });

  it('refuses a write without a valid key (401), and any write while no key is set (403)', async () => {
    const batch = [purchase(customer, '0700000001', 0)];
    const missing = await fetch(`${serving.url}/v1/events/purchases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(batch),
    });
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="fashion-recsys"');
    expect(((await missing.json()) as ErrorJson).error).toMatchObject({
      code: 'REC_ERR_UNAUTHORIZED',
      message: expect.stringContaining('Authorization: Bearer') as string,
    });

    const wrong = await post(batch, { authorization: `Bearer ${KEY}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(((await wrong.json()) as ErrorJson).error.code).toBe('REC_ERR_UNAUTHORIZED');
    const basic = await post(batch, { authorization: `Basic ${KEY}` });
    expect(basic.status).toBe(401);

    // An app with no keys at all: the write route is closed, reads stay open.
    const app = createApp({
      redis,
      keys,
      ranker: () => null,
      logger: ctx.logger,
      metrics: createServingMetrics(),
      config: DEFAULT_SERVING_CONFIG,
    });
    const closed = await app.request('/v1/events/purchases', {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify(batch),
    });
    expect(closed.status).toBe(403);
    expect(((await closed.json()) as ErrorJson).error).toMatchObject({
      code: 'REC_ERR_FORBIDDEN',
      message: expect.stringContaining('API_KEYS is not set') as string,
    });
    expect((await app.request('/v1/trending')).status).toBe(200);

    const text = await (await fetch(`${serving.url}/metrics`)).text();
    // The Basic scheme carries no bearer key: missing.
    expect(metric(text, 'rec_serving_auth_refused_total', 'reason="missing"')).toBe(2);
    expect(metric(text, 'rec_serving_auth_refused_total', 'reason="invalid"')).toBe(1);
    expect(text).not.toContain(KEY);
  });

  it('refuses a body over INGEST_MAX_BYTES with 413, by Content-Length and by the bytes read', async () => {
    const big = JSON.stringify(
      Array.from({ length: 20 }, (_, i) => ({
        ...purchase(customer, '0700000001', i),
        pad: 'x'.repeat(500),
      })),
    );
    expect(big.length).toBeGreaterThan(MAX_BYTES);
    const declared = await post(big);
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as ErrorJson).error).toMatchObject({
      code: 'REC_ERR_PAYLOAD_TOO_LARGE',
      message: expect.stringContaining('INGEST_MAX_BYTES') as string,
    });

    // Chunked: no Content-Length, the limit is found while reading.
    const bytes = new TextEncoder().encode(big);
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 1_000) controller.enqueue(bytes.slice(i, i + 1_000));
        controller.close();
      },
    });
    const chunked = await fetch(`${serving.url}/v1/events/purchases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: stream,
      duplex: 'half',
    });
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as ErrorJson).error.message).toContain('while being read');
  });

  it('answers 400 naming why for a body that is not a JSON array of purchase objects', async () => {
    for (const [body, why] of [
      ['{"customer_id": "a"}', /JSON array/],
      ['[{"customer_id": ', /Malformed JSON/i],
      ['[]', /1 to 20/],
      [JSON.stringify(Array.from({ length: 21 }, () => ({}))), /1 to 20/],
      ['[1, 2]', /purchase object/],
    ] as const) {
      const res = await post(body);
      expect(res.status, body).toBe(400);
      const json = (await res.json()) as ErrorJson;
      expect(json.error.code).toBe('REC_ERR_BAD_REQUEST');
      expect(JSON.stringify(json.error), body).toMatch(why);
    }
    const text = await post('[]', { 'content-type': 'text/plain' });
    expect(text.status).toBe(415);
  });

  it('produces the valid events of a batch, names the invalid ones, and a retried batch counts once', async () => {
    const batch = [
      purchase(customer, '0700000001', 1),
      { ...purchase(customer, '0700000002', 2), price: -1 },
      // Two identical lines: two units, two purchases (two derived ids).
      purchase(customer, '0700000003', 3),
      purchase(customer, '0700000003', 3),
      { ...purchase(customer, '0700000004', 4), customerId: 'typo' },
      { ...purchase(customer, '0700000005', 5), event_id: `given-${customer}`, quantity: 2 },
      { article_id: '0700000006', price: 1, sales_channel_id: 1, event_time: T0 },
    ];
    const res = await post(batch);
    expect(res.status).toBe(202);
    const body = (await res.json()) as IngestJson;
    expect(body).toMatchObject({ accepted: 4, invalid: 3 });
    expect(body.events.map((e) => [e.index, e.status])).toEqual([
      [0, 'accepted'],
      [1, 'invalid'],
      [2, 'accepted'],
      [3, 'accepted'],
      [4, 'invalid'],
      [5, 'accepted'],
      [6, 'invalid'],
    ]);
    expect(body.events[1]?.error?.fields.map((f) => f.path)).toEqual(['price']);
    expect(body.events[4]?.error?.fields).toEqual([
      { path: 'customerId', message: 'unknown field' },
    ]);
    expect(body.events[6]?.error?.fields.map((f) => f.path)).toEqual(['customer_id']);
    expect(body.events[5]?.event_id).toBe(`given-${customer}`);
    const ids = body.events.filter((e) => e.status === 'accepted').map((e) => e.event_id);
    expect(new Set(ids).size).toBe(4);

    const applied = async () => {
      const [state] = await readCustomers(redis, keys, [customer]);
      return state !== undefined && state.n >= 4 ? state : undefined;
    };
    const first = await waitFor('the accepted purchases applied', applied);
    expect(first).toMatchObject({ n: 4, units: 5 });
    expect(first.bought).toEqual({ '0700000001': 1, '0700000003': 2, '0700000005': 2 });

    // The client did not hear the answer and posts the same batch again: same ids, counted once.
    const duplicatesBefore = (await processorMetrics.duplicates.get()).values.reduce(
      (s, v) => s + v.value,
      0,
    );
    const again = (await (await post(batch)).json()) as IngestJson;
    expect(again.events.map((e) => e.event_id)).toEqual(body.events.map((e) => e.event_id));
    // A later purchase of the same customer (same partition, after the retry) marks the end.
    const marker = await post([purchase(customer, '0700000009', 10)]);
    expect(marker.status).toBe(202);
    const after = await waitFor('the marker applied', async () => {
      const [state] = await readCustomers(redis, keys, [customer]);
      return state?.bought['0700000009'] === 1 ? state : undefined;
    });
    expect(after).toMatchObject({ n: 5, units: 6 });
    const duplicates = (await processorMetrics.duplicates.get()).values.reduce(
      (s, v) => s + v.value,
      0,
    );
    expect(duplicates - duplicatesBefore).toBeGreaterThanOrEqual(4);

    const text = await (await fetch(`${serving.url}/metrics`)).text();
    expect(metric(text, 'rec_serving_ingest_events_total', 'status="accepted"')).toBe(9);
    expect(metric(text, 'rec_serving_ingest_events_total', 'status="invalid"')).toBe(6);
  });

  it('refuses up front a purchase the processors would refuse as late, by their horizon and cut', async () => {
    const buyer = `late-${randomUUID().slice(0, 8)}`;
    const newest = T0 + 200 * DAY_MS + 12_345;
    const first = await post([
      purchase(buyer, '0700000011', 0),
      { ...purchase(buyer, '0700000012', 0), event_time: newest },
    ]);
    expect(first.status).toBe(202);
    await waitFor('the newest purchase applied', async () => {
      const [state] = await readCustomers(redis, keys, [buyer]);
      return state?.n === 2 ? state : undefined;
    });
    // The processors recorded the horizon they run with (the default, 30 days).
    const horizon = Number(await redis.hget(keys.processorSettings, 'dedup_horizon_ms'));
    expect(horizon).toBe(30 * DAY_MS);
    // The cut is the scripts' own rule (include/horizon.lua), to the millisecond.
    const lua =
      readFileSync(new URL('../../processors/lua/include/horizon.lua', import.meta.url), 'utf8') +
      "\nreturn string.format('%.17g', horizon_cut(tonumber(ARGV[1]), tonumber(ARGV[2])))";
    for (const [t, h] of [
      [newest, horizon],
      [T0, 7 * DAY_MS],
      [newest + 1, 3],
      [1_600_000_000_123, 45 * DAY_MS + 3],
    ] as const) {
      expect(Number(await redis.eval(lua, 0, t, h)), `${t} ${h}`).toBe(horizonCut(t, h));
    }
    const cut = horizonCut(newest, horizon);

    const at = (article: string, t: number) => ({ ...purchase(buyer, article, 0), event_time: t });
    const res = await post([
      at('0700000013', cut - 1),
      at('0700000014', cut),
      { ...at('0700000015', cut + 1), price: 'x' },
      at('0700000016', newest - DAY_MS),
    ]);
    expect(res.status).toBe(202);
    const body = (await res.json()) as IngestJson;
    expect(body).toMatchObject({ accepted: 2, invalid: 1, late: 1 });
    expect(body.events.map((e) => e.status)).toEqual(['late', 'accepted', 'invalid', 'accepted']);
    const refused = body.events[0]!;
    expect(refused.event_id).toMatch(/^[0-9a-f]{32}$/);
    expect(refused.error?.code).toBe('REC_ERR_LATE_EVENT');
    expect(refused.error?.fields).toEqual([
      { path: 'event_time', message: `before ${new Date(cut).toISOString()}` },
    ]);
    expect(refused.error?.message).toContain(`customer "${buyer}"'s newest purchase`);

    // The same purchase produced past the API: the processors refuse it as late, at the same cut.
    const producer = new EventProducer(dlqProducer, ctx.topics.purchases, codecs.purchases);
    await producer.send([
      { ...at('0700000013', cut - 1), event_id: `past-api-${buyer}`, quantity: 1 },
    ]);
    const state = await waitFor('the accepted two applied', async () => {
      const [s] = await readCustomers(redis, keys, [buyer]);
      return s?.n === 4 ? s : undefined;
    });
    expect(Object.keys(state.bought).sort()).toEqual([
      '0700000011',
      '0700000012',
      '0700000014',
      '0700000016',
    ]);
    const letter = await waitFor('the late purchase dead-lettered', async () => {
      const letters = await readDeadLetters(ctx.kafka, ctx.topics.purchases.dlq, ctx.logger);
      return letters.find((d) => d.reason?.includes(buyer));
    });
    expect(letter.code).toBe('REC_ERR_LATE_EVENT');
    expect(letter.reason).toContain(`is before ${new Date(cut).toISOString()}`);

    const text = await (await fetch(`${serving.url}/metrics`)).text();
    expect(metric(text, 'rec_serving_ingest_events_total', 'status="late"')).toBe(1);
  });

  it('logs every answer of /v1/recommendations to recommendations.served, as answered', async () => {
    const answers = new Map<string, { body: RecJson; before: number; after: number }>();
    for (const [i, path] of [
      `/v1/recommendations/${customer}?k=5&allow_repurchase=true`,
      `/v1/recommendations/${customer}?k=2`,
      '/v1/recommendations/someone-new?k=3',
    ].entries()) {
      const requestId = `served-${ns}-${i}`;
      const before = Date.now();
      const res = await fetch(`${serving.url}${path}`, { headers: { 'x-request-id': requestId } });
      expect(res.status).toBe(200);
      answers.set(requestId, { body: (await res.json()) as RecJson, before, after: Date.now() });
    }
    // A refused request is not an answer: not logged.
    expect((await fetch(`${serving.url}/v1/recommendations/${customer}?k=0`)).status).toBe(400);
    await waitFor('the answers sent', async () => {
      const text = await (await fetch(`${serving.url}/metrics`)).text();
      return metric(text, 'rec_served_log_sent_total') >= 3;
    });

    const records = await readServed(ctx);
    expect(records.map((r) => r.request_id).sort()).toEqual([...answers.keys()].sort());
    for (const r of records) {
      const { body, before, after } = answers.get(r.request_id)!;
      expect(r.served_at).toBeGreaterThanOrEqual(before);
      expect(r.served_at).toBeLessThanOrEqual(after);
      expect(r).toEqual({
        request_id: r.request_id,
        customer_id: body.customer_id,
        served_at: r.served_at,
        features_now: body.now,
        model_version: body.model_version,
        ranked_by: body.ranker.kind,
        experiment: body.experiment,
        variant: body.variant,
        degraded: body.degraded,
        cold_start: body.cold_start,
        items: body.items.map((it) => ({
          article_id: it.article_id,
          rank: it.rank,
          score: it.score,
          sources: it.sources,
        })),
      });
    }
    const known = records.find((r) => r.request_id === `served-${ns}-0`);
    expect(known?.items.length).toBeGreaterThan(0);
    expect(known?.cold_start).toBe(false);
    expect(records.find((r) => r.request_id === `served-${ns}-2`)?.cold_start).toBe(true);
    const text = await (await fetch(`${serving.url}/metrics`)).text();
    expect(metric(text, 'rec_served_log_dropped_total', 'reason="buffer_full"')).toBe(0);
  }, 60_000);
});

describe('with Kafka unreachable', () => {
  const ctx = stackContext('ingest-down');
  const keys = keySpace(`d${randomUUID().slice(0, 8)}`);
  let serving: ServingHandle;

  beforeAll(async () => {
    // Nothing listens on port 1: every connection is refused.
    const closed = createKafka(
      { kafkaBrokers: ['127.0.0.1:1'], kafkaSecurity: NO_KAFKA_SECURITY },
      'test-ingest-down',
      ctx.logger,
    );
    serving = await startServing({
      redisUrl: ctx.config.redisUrl,
      keys,
      logger: ctx.logger,
      port: 0,
      host: '127.0.0.1',
      streams: { kafka: closed, registry: ctx.registry, topics: ctx.topics },
      apiKeys: [new Secret(KEY)],
      servedLog: { enabled: true, bufferSize: 5, batchSize: 5, flushMs: 20 },
      config: { ingest: { maxEvents: 10, maxBytes: MAX_BYTES, timeoutMs: 1_000 } },
    });
  });
  afterAll(async () => {
    await serving.close();
  });

  it('answers recommendations 200 at once and counts the answers it cannot log', async () => {
    const started = performance.now();
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`${serving.url}/v1/recommendations/c${i}?k=3`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const perRequest = (performance.now() - started) / 30;
    expect(perRequest).toBeLessThan(100);
    const text = await (await fetch(`${serving.url}/metrics`)).text();
    expect(metric(text, 'rec_served_log_sent_total')).toBe(0);
    expect(
      metric(text, 'rec_served_log_dropped_total', 'reason="buffer_full"'),
    ).toBeGreaterThanOrEqual(25);
    expect(metric(text, 'rec_served_log_buffered')).toBeLessThanOrEqual(5);
  });

  it('answers ingest 503 with Retry-After, claiming nothing accepted', async () => {
    const started = Date.now();
    const res = await fetch(`${serving.url}/v1/events/purchases`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify([purchase('c1', '0700000001', 0)]),
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    const body = (await res.json()) as ErrorJson;
    expect(body.error.code).toBe('REC_ERR_UNAVAILABLE');
    expect(body.error.message).toContain('INGEST_TIMEOUT_MS');
    expect(Date.now() - started).toBeLessThan(5_000);
    const text = await (await fetch(`${serving.url}/metrics`)).text();
    expect(metric(text, 'rec_serving_ingest_events_total', 'status="accepted"')).toBe(0);
  });
});
