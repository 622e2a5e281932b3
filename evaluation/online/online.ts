/**
 * The online read-out's plumbing (`npm run eval:online`): its command-line options, the check
 * that the topics exist, the replays of the served lists, the purchases and the catalogue
 * (streams/replay.ts, decoded through the registry), the read-out (readout.ts), the table on
 * stdout and the one-line JSON summary.
 */
import type { Kafka } from 'kafkajs';
import type { AvroCodec } from '../../streams/avro.ts';
import type { Article, Purchase, Served } from '../../schemas/events.ts';
import { UsageError } from '../../common/errors.ts';
import type { Logger } from '../../common/logger.ts';
import { progress as makeProgress, type Progress } from '../../common/progress.ts';
import { replay } from '../../streams/replay.ts';
import type { TopicDescriptor, Topics } from '../../streams/topics.ts';
import { parseInstant } from '../replay-file.ts';
import {
  distinctRequests,
  readout,
  toServedList,
  type Bought,
  type Difference,
  type Estimate,
  type Readout,
  type ServedList,
  type TimeBase,
} from './readout.ts';

const DAY_MS = 86_400_000;
/** The bounds of event time the contracts accept: a replay over them reads a whole topic. */
const ALL_TIME = { from: Date.UTC(1990, 0, 1), to: Date.UTC(2100, 0, 1) } as const;

export const ONLINE_USAGE =
  'usage: npm run eval:online -- --from <time> --to <time> [--report <dir>] [--window-days 7] [--k 12]\n' +
  '         [--experiment NAME] [--baseline VARIANT] [--time served|features]\n' +
  '         [--confidence 0.95] [--iterations 2000] [--seed 7] [--no-progress]\n' +
  '  lists served in [from, to) (by served_at, or by features_now with --time features), scored against\n' +
  "  their customer's purchases in (t, t + window]; times are ISO dates (00:00 UTC) or date-times (UTC\n" +
  '  unless they name an offset)';

export interface OnlineOptions {
  /** Inclusive, ms since the epoch. */
  from: number;
  /** Exclusive, ms since the epoch. */
  to: number;
  windowDays: number;
  k: number;
  time: TimeBase;
  experiment: string | undefined;
  baseline: string | undefined;
  report: string | undefined;
  confidence: number;
  iterations: number;
  seed: number;
  progress: boolean;
}

function numberOption(
  name: string,
  text: string | undefined,
  dflt: number,
  ok: (n: number) => boolean,
  what: string,
): number {
  if (text === undefined) return dflt;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || !ok(n)) {
    throw new UsageError(`--${name} must be ${what} (got "${text}")`);
  }
  return n;
}

/** Check the parsed command-line values; every problem is a UsageError with one clear line. */
export function onlineOptions(values: {
  from?: string | undefined;
  to?: string | undefined;
  report?: string | undefined;
  'window-days'?: string | undefined;
  k?: string | undefined;
  experiment?: string | undefined;
  baseline?: string | undefined;
  time?: string | undefined;
  confidence?: string | undefined;
  iterations?: string | undefined;
  seed?: string | undefined;
  progress?: boolean | undefined;
}): OnlineOptions {
  const missing = (['from', 'to'] as const).filter(
    (k) => values[k] === undefined || values[k] === '',
  );
  if (missing.length > 0) {
    throw new UsageError(`missing ${missing.map((k) => `--${k}`).join(', ')}\n${ONLINE_USAGE}`);
  }
  const from = parseInstant(values.from as string, '--from');
  const to = parseInstant(values.to as string, '--to');
  if (!(from < to)) {
    throw new UsageError(
      `--from (${new Date(from).toISOString()}) must be before --to (${new Date(to).toISOString()}): the interval is [from, to)`,
    );
  }
  const time = values.time ?? 'served';
  if (time !== 'served' && time !== 'features') {
    throw new UsageError(
      `--time must be served (served_at, the default) or features (features_now) (got "${time}")`,
    );
  }
  for (const name of ['experiment', 'baseline', 'report'] as const) {
    if (values[name] === '') throw new UsageError(`--${name} must not be empty`);
  }
  return {
    from,
    to,
    time,
    windowDays: numberOption(
      'window-days',
      values['window-days'],
      7,
      (n) => n > 0 && n <= 365,
      'a number of days in (0, 365]',
    ),
    k: numberOption(
      'k',
      values.k,
      12,
      (n) => Number.isInteger(n) && n >= 1 && n <= 100,
      'an integer in 1..100',
    ),
    experiment: values.experiment,
    baseline: values.baseline,
    report: values.report,
    confidence: numberOption(
      'confidence',
      values.confidence,
      0.95,
      (n) => n > 0 && n < 1,
      'a share in (0, 1), e.g. 0.95',
    ),
    iterations: numberOption(
      'iterations',
      values.iterations,
      2000,
      (n) => Number.isInteger(n) && n >= 100 && n <= 100_000,
      'an integer in 100..100000',
    ),
    seed: numberOption('seed', values.seed, 7, (n) => Number.isInteger(n), 'an integer'),
    progress: values.progress ?? true,
  };
}

/** The topics the read-out reads, refused (UsageError) when one does not exist. */
export async function checkTopics(kafka: Kafka, topics: Topics, prefix: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = [topics.served, topics.purchases, topics.articles]
      .map((t) => t.name)
      .filter((n) => !existing.has(n));
    if (missing.length > 0) {
      throw new UsageError(
        `topic${missing.length === 1 ? '' : 's'} ${missing.join(', ')} ${missing.length === 1 ? 'does' : 'do'} not exist${prefix === '' ? '' : ` (TOPIC_PREFIX=${prefix})`}: nothing to read out (served lists are logged by the API once it runs)`,
      );
    }
  } finally {
    await admin.disconnect();
  }
}

export interface OnlineDeps {
  kafka: Kafka;
  topics: Topics;
  codecs: {
    served: AvroCodec<Served>;
    purchases: AvroCodec<Purchase>;
    articles: AvroCodec<Article>;
  };
  logger: Logger;
  /** Wall clock (ms), the horizon of purchases known with `--time served`. */
  now?: () => number;
}

export interface OnlineResult {
  options: OnlineOptions;
  readout: Readout;
  /** Served records read in the interval, before dropping copies and other experiments. */
  servedRecords: number;
  /** Re-published copies of an answer (same request id), dropped. */
  servedCopies: number;
  /** Lists of other experiments (with `--experiment`), left out. */
  otherExperiments: number;
  /** Experiments seen in the interval (null: lists outside any experiment). */
  experimentsSeen: (string | null)[];
  purchases: number;
  purchaseCopies: number;
  /** Invalid records skipped, per topic. */
  invalid: Record<string, number>;
  notes: string[];
  seconds: number;
}

/** Replay one topic over [from, to) into `onValue`, with a progress bar. */
async function replayAll<T>(
  deps: OnlineDeps,
  label: string,
  topic: TopicDescriptor<T>,
  codec: AvroCodec<T>,
  from: number,
  to: number,
  show: boolean,
  onValue: (v: T) => void,
): Promise<{ records: number; invalid: number }> {
  const ui: { bar: Progress | null } = { bar: null };
  try {
    const r = await replay<T>({
      kafka: deps.kafka,
      topic,
      codec,
      from,
      to,
      logger: deps.logger,
      onRecords: (records) => {
        for (const rec of records) onValue(rec.value);
      },
      onProgress: (read, total) => {
        ui.bar ??= makeProgress(`read ${label}`, total, show);
        ui.bar.update(read);
      },
    });
    return { records: r.records, invalid: r.invalid };
  } finally {
    ui.bar?.stop();
  }
}

/** Whether `topic` holds a record stamped at or after `t` (the broker's offsets-by-time lookup). */
async function purchasesFrom(kafka: Kafka, topic: string, t: number): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [at, ends] = await Promise.all([
      admin.fetchTopicOffsetsByTimestamp(topic, t),
      admin.fetchTopicOffsets(topic),
    ]);
    return at.some((p) => {
      const end = ends.find((e) => e.partition === p.partition);
      return BigInt(p.offset) >= 0n && end !== undefined && BigInt(p.offset) < BigInt(end.high);
    });
  } finally {
    await admin.disconnect();
  }
}

/** Replay the served lists, the purchases and the catalogue, and compute the read-out. */
export async function runOnline(deps: OnlineDeps, opts: OnlineOptions): Promise<OnlineResult> {
  const started = performance.now();
  const windowMs = opts.windowDays * DAY_MS;
  const now = (deps.now ?? Date.now)();

  // Served records are stamped with served_at: with --time features the whole topic is read and
  // filtered by features_now (on replayed history features_now lies long before served_at).
  const servedRange = opts.time === 'served' ? { from: opts.from, to: opts.to } : ALL_TIME;
  const served: ServedList[] = [];
  const sv = await replayAll(
    deps,
    'served lists',
    deps.topics.served,
    deps.codecs.served,
    servedRange.from,
    servedRange.to,
    opts.progress,
    (s) => {
      const l = toServedList(s, opts.time);
      if (l.time >= opts.from && l.time < opts.to) served.push(l);
    },
  );
  const { lists: distinct, copies } = distinctRequests(served);
  const experimentsSeen = [...new Set(distinct.map((l) => l.experiment))].sort((a, b) =>
    (a ?? '').localeCompare(b ?? ''),
  );
  const lists =
    opts.experiment === undefined
      ? distinct
      : distinct.filter((l) => l.experiment === opts.experiment);

  // A purchase counts for a list at t when it lies in (t, t + window], t in [from, to).
  const bought: Bought[] = [];
  const eventIds = new Set<string>();
  let purchaseCopies = 0;
  let lastPurchase = -Infinity;
  const pv = await replayAll(
    deps,
    'purchases',
    deps.topics.purchases,
    deps.codecs.purchases,
    opts.from,
    opts.to + windowMs,
    opts.progress,
    (p) => {
      if (eventIds.has(p.event_id)) {
        purchaseCopies++;
        return;
      }
      eventIds.add(p.event_id);
      bought.push({ customerId: p.customer_id, articleId: p.article_id, time: p.event_time });
      lastPurchase = Math.max(lastPurchase, p.event_time);
    },
  );

  const catalogue = new Set<string>();
  const av = await replayAll(
    deps,
    'articles',
    deps.topics.articles,
    deps.codecs.articles,
    ALL_TIME.from,
    ALL_TIME.to,
    opts.progress,
    (a) => {
      catalogue.add(a.article_id);
    },
  );

  // Every window is closed when the topic holds a purchase at or after its last end; else
  // purchases are known up to now on live traffic, on replayed history up to the last one read.
  const closed = await purchasesFrom(deps.kafka, deps.topics.purchases.name, opts.to + windowMs);
  const horizon = closed ? Infinity : opts.time === 'served' ? now : lastPurchase;
  let result: Readout;
  try {
    result = readout(lists, bought, {
      k: opts.k,
      windowMs,
      confidence: opts.confidence,
      iterations: opts.iterations,
      seed: opts.seed,
      catalogue,
      horizon,
      ...(opts.baseline === undefined ? {} : { baseline: opts.baseline }),
    });
  } catch (err) {
    // The one RangeError of readout(): --baseline names no variant.
    if (err instanceof RangeError) throw new UsageError(`--baseline: ${err.message}`);
    throw err;
  }

  const notes: string[] = [];
  if (served.length === 0) {
    notes.push(
      `no served lists with ${opts.time === 'served' ? 'served_at' : 'features_now'} in [${iso(opts.from)}, ${iso(opts.to)})`,
    );
  } else if (opts.experiment !== undefined && lists.length === 0) {
    notes.push(
      `no lists of experiment "${opts.experiment}" in the interval; experiments seen: ${experimentsSeen.map((e) => e ?? '(none)').join(', ')}`,
    );
  }
  if (result.openWindows > 0) {
    notes.push(
      `${result.openWindows} of ${result.lists} lists have a window ending after ${opts.time === 'served' ? 'now' : 'the last purchase read'} (${Number.isFinite(horizon) ? iso(horizon) : 'none read'}): purchases may still come, so their hit rate and MAP are too low; choose an earlier --to for final figures`,
    );
  }
  if (result.catalogueSize === 0)
    notes.push('no articles read: catalogue size unknown, coverage not reported');
  if (result.articlesOutsideCatalogue > 0) {
    notes.push(
      `${result.articlesOutsideCatalogue} served articles are not in the catalogue (not counted in coverage)`,
    );
  }
  if (result.customersInSeveralVariants > 0) {
    notes.push(
      `${result.customersInSeveralVariants} customers have lists in more than one variant (assignment changed in the interval?); each variant resamples them on its own`,
    );
  }
  if (copies > 0) {
    notes.push(
      `${copies} re-published served ${copies === 1 ? 'record' : 'records'} dropped (same request_id)`,
    );
  }
  if (purchaseCopies > 0) {
    notes.push(
      `${purchaseCopies} re-published ${purchaseCopies === 1 ? 'purchase' : 'purchases'} dropped (same event_id)`,
    );
  }
  const invalid = { served: sv.invalid, purchases: pv.invalid, articles: av.invalid };
  const bad = Object.entries(invalid).filter(([, n]) => n > 0);
  if (bad.length > 0) {
    notes.push(`invalid records skipped: ${bad.map(([t, n]) => `${t} ${n}`).join(', ')}`);
  }
  return {
    options: opts,
    readout: result,
    servedRecords: served.length,
    servedCopies: copies,
    otherExperiments: distinct.length - lists.length,
    experimentsSeen,
    purchases: bought.length,
    purchaseCopies,
    invalid,
    notes,
    seconds: (performance.now() - started) / 1000,
  };
}

const iso = (t: number) => new Date(t).toISOString();
const round = (x: number, d = 6) => (Number.isFinite(x) ? Number(x.toFixed(d)) : null);
/** `[value, low, high]`, rounded; null for no estimate. */
const triple = (e: Estimate | null) =>
  e === null ? null : [round(e.value), round(e.low), round(e.high)];

/** The one-line JSON summary the CLI prints last. */
export function summaryLine(r: OnlineResult): Record<string, unknown> {
  const o = r.readout;
  const k = o.k;
  const diff = (d: Difference | null) => (d === null ? null : triple(d));
  return {
    from: iso(r.options.from),
    to: iso(r.options.to),
    time: r.options.time,
    window_days: r.options.windowDays,
    k,
    experiment: r.options.experiment ?? null,
    lists: o.lists,
    customers: o.customers,
    purchases: r.purchases,
    catalogue_size: o.catalogueSize,
    open_windows: o.openWindows,
    confidence: o.confidence,
    iterations: o.iterations,
    baseline: o.baseline,
    rarefied_customers: o.matchedCustomers,
    variants: Object.fromEntries(
      o.variants.map((v) => [
        v.variant,
        {
          lists: v.lists,
          customers: v.customers,
          lists_with_purchase: v.listsWithPurchase,
          [`hit_rate${k}`]: triple(v.hitRate),
          [`map${k}`]: triple(v.map),
          [`map${k}_buyers`]: triple(v.mapBuyers),
          coverage: triple(v.coverage),
          coverage_rarefied: v.coverageMatched === null ? null : round(v.coverageMatched),
          articles_served: v.articlesServed,
          ranked_by: v.rankedBy,
          degraded: v.degraded,
          cold_start: v.coldStart,
          fallback:
            v.fallback === null
              ? null
              : {
                  lists: v.fallback.lists,
                  customers: v.fallback.customers,
                  [`hit_rate${k}`]: triple(v.fallback.hitRate),
                  [`map${k}`]: triple(v.fallback.map),
                },
        },
      ]),
    ),
    differences: Object.fromEntries(
      o.differences.map((d) => [
        d.variant,
        {
          baseline: d.baseline,
          [`hit_rate${k}`]: diff(d.hitRate),
          [`map${k}`]: diff(d.map),
          [`map${k}_buyers`]: diff(d.mapBuyers),
          coverage: diff(d.coverage),
          coverage_rarefied: d.coverageMatched === null ? null : round(d.coverageMatched),
          share_above_zero: {
            [`hit_rate${k}`]: round(d.hitRate.above, 4),
            [`map${k}`]: round(d.map.above, 4),
          },
        },
      ]),
    ),
    seconds: round(r.seconds, 1),
  };
}

const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');
const signed = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(4)}` : 'n/a');
/** `0.5000 [0.4000, 0.6000]` */
export const fmtEstimate = (e: Estimate | null): string =>
  e === null ? '–' : `${f4(e.value)} [${f4(e.low)}, ${f4(e.high)}]`;
/** `+0.2500 [+0.1500, +0.3500]` */
export const fmtDifference = (d: Difference | null): string =>
  d === null ? '–' : `${signed(d.value)} [${signed(d.low)}, ${signed(d.high)}]`;

/** The human-readable tables (stdout, before the JSON line). */
export function tableLines(r: OnlineResult): string[] {
  const o = r.readout;
  const k = o.k;
  const pct = `${Math.round(o.confidence * 100)} %`;
  const out = [
    '',
    `online read-out: lists with ${r.options.time === 'served' ? 'served_at' : 'features_now'} in [${iso(r.options.from)}, ${iso(r.options.to)})` +
      `${r.options.experiment === undefined ? '' : `, experiment ${r.options.experiment}`}; purchases within ${r.options.windowDays} d after; k = ${k}`,
    `${o.lists} lists, ${o.customers} customers, ${r.purchases} purchases read, catalogue ${o.catalogueSize} articles; ${pct} intervals: bootstrap over customers (${o.iterations} resamples)`,
    '',
    `${'variant'.padEnd(18)}${'lists'.padStart(8)}${'customers'.padStart(11)}${'bought'.padStart(8)}  ${`hit rate@${k}`.padEnd(26)}${`MAP@${k}`.padEnd(26)}coverage`,
  ];
  for (const v of o.variants) {
    out.push(
      `${v.variant.padEnd(18)}${String(v.lists).padStart(8)}${String(v.customers).padStart(11)}${String(v.listsWithPurchase).padStart(8)}  ${fmtEstimate(v.hitRate).padEnd(26)}${fmtEstimate(v.map).padEnd(26)}${fmtEstimate(v.coverage)}`,
    );
    if (v.fallback !== null) {
      out.push(
        `${'  of which fallback'.padEnd(18)}${String(v.fallback.lists).padStart(8)}${String(v.fallback.customers).padStart(11)}${String(v.fallback.listsWithPurchase).padStart(8)}  ${fmtEstimate(v.fallback.hitRate).padEnd(26)}${fmtEstimate(v.fallback.map)}`,
      );
    }
  }
  if (o.differences.length > 0) {
    out.push(
      '',
      `difference to ${o.baseline} (unpaired bootstrap, ${pct} interval; share of resamples above 0):`,
    );
    for (const d of o.differences) {
      out.push(
        `${d.variant.padEnd(18)}hit rate ${fmtDifference(d.hitRate)} (${f4(d.hitRate.above)})  MAP ${fmtDifference(d.map)} (${f4(d.map.above)})  coverage ${fmtDifference(d.coverage)}, rarefied to ${o.matchedCustomers} customers ${d.coverageMatched === null ? '–' : signed(d.coverageMatched)}`,
      );
    }
  }
  if (r.notes.length > 0) out.push('', ...r.notes.map((n) => `note: ${n}`));
  return out;
}
