/**
 * Step 8 of the serving benchmark: freshness to the API's answer. The processors run again (a
 * child process on the run's consumer groups, resuming at their committed offsets) while the API
 * is under load at STOREFRONT_RATE. One at a time, a purchase is published to Kafka with the real
 * producer: by a known customer (one the load does not request when the store has others) of an
 * article of the global trending top that is not in the customer's current recommendations, at the
 * event-time "now" of that answer. The customer's recommendations are then asked for with
 * `explain=true` every POLL_MS until their features show the purchase (the customer's
 * `c_purchases` went up): the latency is from just before the send to the arrival of the first
 * answer that shows it — publish, the processors, Redis and the API's reads, all of it. The first
 * probe, untimed, waits for the processors to have joined their groups.
 */
import type { Producer } from 'kafkajs';
import type { Purchase } from '../../schemas/events.ts';
import { AvroCodec } from '../../streams/avro.ts';
import { createRegistryClient } from '../../streams/kafka.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { stopChild } from './children.ts';
import type { LoadRun } from './load.ts';
import { K, STOREFRONT_RATE } from './options.ts';
import { startProcessors, type Customers } from './prepare.ts';
import type { BenchRun } from './setup.ts';
import { pct, round, say, sleep, sorted } from './stats.ts';

/** Interval between two polls of one probe's recommendations. */
const POLL_MS = 10;
/** A probe not visible by then counts as missed. */
const PROBE_TIMEOUT_MS = 10_000;
/** How long the first probe may wait for the processors to start and join their groups. */
const READY_TIMEOUT_MS = 120_000;
/** Pause between two probes. */
const GAP_MS = 100;
/** Articles the purchases are drawn from: the global trending top. */
const ARTICLE_POOL = 200;

interface Answer {
  readonly purchases: number;
  readonly now: number;
  readonly items: ReadonlySet<string>;
}

interface Prober {
  readonly run: BenchRun;
  readonly base: string;
  readonly events: EventProducer<Purchase>;
  readonly articles: readonly string[];
  sent: number;
}

type ProbeResult = { visibleMs: number } | { missed: true } | { skipped: string };

/** The customer's explained recommendations: `c_purchases`, the answer's "now" and its items. */
async function explained(base: string, customer: string): Promise<Answer | null> {
  const res = await fetch(`${base}/v1/recommendations/${customer}?k=${K}&explain=true`);
  if (res.status !== 200) {
    await res.body?.cancel();
    return null;
  }
  const body = (await res.json()) as {
    now?: number;
    items?: { article_id: string; features?: Record<string, number | null> }[];
  };
  const purchases = body.items?.[0]?.features?.c_purchases;
  if (typeof purchases !== 'number' || typeof body.now !== 'number') return null;
  return { purchases, now: body.now, items: new Set(body.items?.map((i) => i.article_id)) };
}

/** One purchase published, then the answer polled until it shows it (or `timeoutMs`). */
async function probe(p: Prober, customer: string, timeoutMs: number): Promise<ProbeResult> {
  const before = await explained(p.base, customer);
  if (before === null) return { skipped: 'no explained answer with features' };
  const start = Math.floor(Math.random() * p.articles.length);
  const article = [...p.articles.slice(start), ...p.articles.slice(0, start)].find(
    (a) => !before.items.has(a),
  );
  if (article === undefined) return { skipped: 'no article outside the recommendations' };
  p.sent++;
  const purchase: Purchase = {
    event_id: `${p.run.groupPrefix}-fresh-${p.sent}`,
    customer_id: customer,
    article_id: article,
    price: 0.0339,
    sales_channel_id: 2,
    quantity: 1,
    event_time: before.now,
  };
  const t0 = performance.now();
  await p.events.send([purchase]);
  for (;;) {
    const now = await explained(p.base, customer);
    if (now !== null && now.purchases > before.purchases) {
      return { visibleMs: performance.now() - t0 };
    }
    if (performance.now() - t0 > timeoutMs) return { missed: true };
    await sleep(POLL_MS);
  }
}

/**
 * Customers to probe: known ones the load does not request, else the load's known ones, shuffled.
 */
function probeCustomers(customers: Customers): string[] {
  const requested = new Set(customers.known);
  const others = customers.knownAll.filter((c) => !requested.has(c));
  const pool = others.length >= 20 ? others : [...customers.known];
  return pool
    .map((c) => ({ c, r: Math.random() }))
    .sort((a, b) => a.r - b.r)
    .map((x) => x.c);
}

export interface FreshnessTarget {
  readonly run: BenchRun;
  readonly base: string;
  readonly customers: Customers;
  /** A load run at a rate for a duration (load.ts `loadRunner`). */
  readonly loadRun: (rate: number | null, duration: number) => Promise<LoadRun>;
  /** Processes not counted as "other" by the load runs: the processors' is added. */
  readonly ours: Set<number>;
}

/**
 * The freshness step: the processors started, a first (untimed) probe, then `duration` seconds of
 * load at STOREFRONT_RATE with probes one after the other; the processors stopped after.
 */
export async function freshnessRun(t: FreshnessTarget, duration: number) {
  const { run } = t;
  const registry = createRegistryClient(run.endpoints);
  const codec = await AvroCodec.forTopic(registry, run.topics.purchases);
  const producer: Producer = createIdempotentProducer(run.kafka);
  await producer.connect();
  try {
    const articles = await run.redis.zrevrange(run.keys.trending.global('7d'), 0, ARTICLE_POOL - 1);
    const p: Prober = {
      run,
      base: t.base,
      events: new EventProducer(producer, run.topics.purchases, codec),
      articles,
      sent: 0,
    };
    const customers = probeCustomers(t.customers);
    if (customers.length === 0 || articles.length === 0) {
      throw new Error('freshness: no known customers or no trending articles to probe with');
    }
    say('freshness: starting the processors again');
    const tReady = performance.now();
    const proc = startProcessors(run);
    if (proc.proc.pid !== undefined) t.ours.add(proc.proc.pid);
    let first: ProbeResult = { skipped: 'no customer' };
    for (const c of customers.slice(0, 5)) {
      first = await probe(p, c, READY_TIMEOUT_MS);
      if (!('skipped' in first)) break;
    }
    if (!('visibleMs' in first)) {
      throw new Error(`freshness: the first purchase never showed in the API's answer`);
    }
    const readyS = (performance.now() - tReady) / 1000;
    say(
      `processors consuming after ${round(readyS, 1)} s (first purchase visible in ${round(first.visibleMs)} ms); load at ${STOREFRONT_RATE}/s for ${duration} s with purchases probed one at a time`,
    );

    const visible: number[] = [];
    let missed = 0;
    let skipped = 0;
    const probes = async () => {
      const stopAt = performance.now() + duration * 1000 - 1000;
      await sleep(1000);
      for (let i = 5; performance.now() < stopAt; i++) {
        const r = await probe(p, customers[i % customers.length] ?? '', PROBE_TIMEOUT_MS);
        if ('visibleMs' in r) visible.push(r.visibleMs);
        else if ('missed' in r) missed++;
        else skipped++;
        await sleep(GAP_MS);
      }
    };
    const [load] = await Promise.all([t.loadRun(STOREFRONT_RATE, duration), probes()]);
    const s = sorted(visible);
    const result = {
      load_rate: STOREFRONT_RATE,
      probes: s.length,
      missed,
      skipped,
      p50_ms: round(pct(s, 0.5)),
      p90_ms: round(pct(s, 0.9)),
      p99_ms: round(pct(s, 0.99)),
      max_ms: round(s.at(-1) ?? NaN),
      min_ms: round(s[0] ?? NaN),
      poll_ms: POLL_MS,
      probe_timeout_ms: PROBE_TIMEOUT_MS,
      processors_ready_s: round(readyS, 1),
      load,
    };
    say(
      `freshness (publish -> visible in the API's answer) over ${result.probes} probes: p50 ${result.p50_ms} ms, p99 ${result.p99_ms} ms, max ${result.max_ms} ms, ${missed} missed, ${skipped} skipped`,
    );
    return result;
  } finally {
    await stopChild(run.children.processors);
    run.children.processors = null;
    await producer.disconnect();
  }
}
