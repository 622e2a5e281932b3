/**
 * `npm run eval:online` against the real stack: served lists of two variants of an experiment
 * (and lists outside it) are produced through the Avro producer under a random prefix, with
 * purchases engineered so each variant's hit rate, MAP and coverage are known exactly; the CLI
 * runs as a child process and its numbers, intervals, the difference's sign, the fallback slice,
 * the JSON line and the report's files are checked, by served time and by feature time (where
 * the planted winner flips). Also: clear errors with exit code 2.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Article, Purchase, Served } from '../../schemas/events.ts';
import { AvroCodec } from '../../streams/avro.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { runTsCli, stackContext, type StackContext } from '../helpers.ts';
import { ARTICLE_NULLS } from '../fixtures/events.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const FROM = Date.UTC(2024, 2, 1); // 2024-03-01, inclusive
const TO = FROM + 2 * DAY; // exclusive
/** features_now lies this long before served_at (replayed history). */
const OFFSET = 30 * DAY;

const art = (n: number) => `a${String(n).padStart(3, '0')}`;

function served(
  id: string,
  customer: string,
  variant: string,
  servedAt: number,
  articles: string[],
  over: Partial<Served> = {},
): Served {
  return {
    request_id: id,
    customer_id: customer,
    served_at: servedAt,
    features_now: servedAt - OFFSET,
    model_version: variant === 'treatment' ? 'm2' : 'm1',
    ranked_by: 'model',
    experiment: 'exp1',
    variant,
    degraded: false,
    cold_start: false,
    items: articles.map((a, i) => ({
      article_id: a,
      rank: i + 1,
      score: 1 - i / 100,
      sources: ['trending_global'],
    })),
    ...over,
  };
}

const SERVED: Served[] = [];
const PURCHASES: Purchase[] = [];
let purchaseId = 0;
const bought = (customer: string, article: string, time: number) => {
  PURCHASES.push({
    event_id: `p${purchaseId++}`,
    customer_id: customer,
    article_id: article,
    price: 0.02,
    sales_channel_id: 2,
    quantity: 1,
    event_time: time,
  });
};

// control: 100 customers x 2 lists (t and t + 1 h) of 12 of a000..a059. By served time the even
// ones buy their rank-1 article a day later (hit, AP 1), the odd ones an article not shown; the
// even ones also buy their rank-3 article 9 days later (outside both windows).
for (let i = 0; i < 100; i++) {
  const t = FROM + i * 10 * 60_000;
  const items = Array.from({ length: 12 }, (_, j) => art((i + j) % 60));
  SERVED.push(served(`c${i}-1`, `ca${i}`, 'control', t, items));
  SERVED.push(served(`c${i}-2`, `ca${i}`, 'control', t + HOUR, items));
  if (i % 2 === 0) {
    bought(`ca${i}`, items[0] as string, t + DAY);
    bought(`ca${i}`, items[2] as string, t + 9 * DAY);
  } else bought(`ca${i}`, art(99), t + 2 * DAY);
}
// treatment: 80 customers x 2 lists of 12 of a060..a089; customers 9, 19, ... get their second
// list from the trending cache (a090..a099, degraded). By served time one in four buys its rank-2
// article a day later (AP 1/2), one in four its rank-1 article an hour before (not counted). By
// feature time the even ones bought their rank-1 article a day after features_now (hit, AP 1).
for (let i = 0; i < 80; i++) {
  const t = FROM + 5 * 60_000 + i * 10 * 60_000;
  const items = Array.from({ length: 12 }, (_, j) => art(60 + ((i + j) % 30)));
  SERVED.push(served(`t${i}-1`, `cb${i}`, 'treatment', t, items));
  SERVED.push(
    i % 10 === 9
      ? served(
          `t${i}-2`,
          `cb${i}`,
          'treatment',
          t + HOUR,
          Array.from({ length: 10 }, (_, j) => art(90 + j)),
          { ranked_by: 'trending_cache', degraded: true, model_version: 'trending-cache' },
        )
      : served(`t${i}-2`, `cb${i}`, 'treatment', t + HOUR, items),
  );
  if (i % 4 === 0) bought(`cb${i}`, items[1] as string, t + DAY);
  if (i % 4 === 1) bought(`cb${i}`, items[0] as string, t - HOUR);
  if (i % 2 === 0) bought(`cb${i}`, items[0] as string, t - OFFSET + DAY);
}
// Outside the experiment: 10 lists of the default variant.
for (let i = 0; i < 10; i++) {
  SERVED.push(
    served(
      `d${i}`,
      `cd${i}`,
      'default',
      FROM + i * HOUR,
      Array.from({ length: 12 }, (_, j) => art(j)),
      { experiment: null, ranked_by: 'heuristic', model_version: 'heuristic-v2' },
    ),
  );
}
// Before the interval, and a re-published copy of an answer: neither counts.
const OUTSIDE = served('early', 'ca0', 'control', FROM - 1, [art(0)]);
const COPY = served('c0-1', 'ca0', 'control', FROM, [art(0)]);

const ARTICLES: Article[] = Array.from({ length: 100 }, (_, i) => ({
  ...ARTICLE_NULLS,
  article_id: art(i),
  prod_name: `article ${i}`,
  updated_at: FROM - 100 * DAY,
}));

const runCli = (args: string[], env: Record<string, string>) =>
  runTsCli('evaluation/online/online-cli.ts', args, env);

type Triple = [number, number, number];
interface Line {
  lists: number;
  customers: number;
  catalogue_size: number;
  baseline: string;
  open_windows: number;
  variants: Record<
    string,
    {
      lists: number;
      customers: number;
      lists_with_purchase: number;
      hit_rate12: Triple;
      map12: Triple;
      coverage: Triple;
      ranked_by: Record<string, number>;
      degraded: number;
      fallback: { lists: number; customers: number; hit_rate12: Triple } | null;
    }
  >;
  differences: Record<
    string,
    { baseline: string; hit_rate12: Triple; map12: Triple; coverage: Triple }
  >;
}

/** The value, and an interval that holds it and is not wider than `width`. */
function expectEstimate(t: Triple | undefined, value: number, width = 0.3): void {
  expect(t).toBeDefined();
  const [v, lo, hi] = t as Triple;
  expect(v).toBeCloseTo(value, 6);
  expect(lo).toBeLessThanOrEqual(value + 1e-9);
  expect(hi).toBeGreaterThanOrEqual(value - 1e-9);
  expect(hi - lo).toBeLessThanOrEqual(width);
}

describe('npm run eval:online', () => {
  let ctx: StackContext;
  let producer: Producer;
  let dir: string;
  const env = () => ({ TOPIC_PREFIX: ctx.prefix });

  beforeAll(async () => {
    ctx = stackContext('evalonline', 3);
    const { codecs } = await bootstrap(ctx);
    const servedCodec = await AvroCodec.forTopic(ctx.registry, ctx.topics.served);
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
    const lists = new EventProducer(producer, ctx.topics.served, servedCodec);
    await lists.send([...SERVED, OUTSIDE]);
    await lists.send([COPY]);
    await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(PURCHASES);
    await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(ARTICLES);
    dir = await mkdtemp(join(tmpdir(), 'eval-online-'));
  });

  afterAll(async () => {
    await producer.disconnect();
    await ctx.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads out each variant by served time: exact values, intervals, the difference, the report', async () => {
    const report = join(dir, 'report');
    const run = await runCli(
      ['--from', '2024-03-01', '--to', '2024-03-03T00:00Z', '--report', report, '--no-progress'],
      env(),
    );
    console.log(`eval:online by served time: ${run.seconds.toFixed(1)} s`);
    expect(run.stderr).not.toContain('failed');
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    const line = JSON.parse(lines.at(-1) ?? '') as Line;

    expect(line).toMatchObject({ lists: 370, customers: 190, catalogue_size: 100 });
    expect(line.open_windows).toBe(0);
    expect(line.baseline).toBe('control');
    expect(Object.keys(line.variants)).toEqual(['control', 'default', 'treatment']);

    const control = line.variants.control;
    expect(control).toMatchObject({ lists: 200, customers: 100, lists_with_purchase: 200 });
    expectEstimate(control?.hit_rate12, 0.5);
    expectEstimate(control?.map12, 0.5);
    expectEstimate(control?.coverage, 0.6);
    expect(control?.fallback).toBeNull();

    const treatment = line.variants.treatment;
    expect(treatment).toMatchObject({ lists: 160, customers: 80, lists_with_purchase: 40 });
    expectEstimate(treatment?.hit_rate12, 0.25);
    expectEstimate(treatment?.map12, 0.125);
    // a060..a089 from the model, a090..a099 from the trending cache.
    expectEstimate(treatment?.coverage, 0.4);
    expect(treatment?.ranked_by).toEqual({ model: 152, trending_cache: 8 });
    expect(treatment?.degraded).toBe(8);
    expect(treatment?.fallback).toMatchObject({ lists: 8, customers: 8, hit_rate12: [0, 0, 0] });

    const dflt = line.variants.default;
    expect(dflt).toMatchObject({ lists: 10, customers: 10, lists_with_purchase: 0 });
    expectEstimate(dflt?.coverage, 0.12);

    const diff = line.differences.treatment;
    expect(diff?.baseline).toBe('control');
    const [dHit, , dHitHigh] = diff?.hit_rate12 ?? [NaN, NaN, NaN];
    expect(dHit).toBeCloseTo(-0.25, 6);
    expect(dHitHigh).toBeLessThan(0); // control is ahead, with confidence
    expect(diff?.map12[0]).toBeCloseTo(-0.375, 6);
    expect(diff?.map12[2]).toBeLessThan(0);
    expect(diff?.coverage[0]).toBeCloseTo(-0.2, 6);

    // The human-readable table comes first, the notes name the dropped copy.
    expect(run.stdout).toMatch(/^control\s+200\s+100\s+200\s+0\.5000 \[/m);
    expect(run.stdout).toMatch(/^ {2}of which fallback\s+8\s+8\s+0\s+0\.0000/m);
    expect(run.stdout).toContain('note: 1 re-published served record dropped (same request_id)');

    // The report: Markdown, the summary (the JSON line's object) and four plots.
    const files = await readdir(report);
    for (const plot of ['metrics', 'differences', 'map-at-k', 'lists-per-day']) {
      expect(files).toContain(`${plot}.svg`);
      expect(await readFile(join(report, `${plot}.svg`), 'utf8')).toMatch(/^<svg/);
      if (files.includes(`${plot}.png`)) {
        const png = await readFile(join(report, `${plot}.png`));
        expect(png.subarray(1, 4).toString()).toBe('PNG');
      }
    }
    expect(JSON.parse(await readFile(join(report, 'summary.json'), 'utf8'))).toEqual(line);
    const md = await readFile(join(report, 'report.md'), 'utf8');
    expect(md).toContain('# Online read-out: 2024-03-01T00:00:00.000Z – 2024-03-03T00:00:00.000Z');
    expect(md).toContain('| **treatment** | 160 | 80 | 40 | 0.2500 [');
    expect(md).toContain('| of which fallback | 8 | 8 | 0 | 0.0000 [0.0000, 0.0000]');
    expect(md).toMatch(/\| treatment \| -0\.2500 \[-0\.\d+, -0\.\d+\] \|/);
    expect(md).toContain('(lists-per-day.');
  });

  it('reads out one experiment by feature time, where the planted winner is the treatment', async () => {
    const run = await runCli(
      [
        '--from',
        new Date(FROM - OFFSET).toISOString(),
        '--to',
        new Date(TO - OFFSET).toISOString(),
        '--time',
        'features',
        '--experiment',
        'exp1',
        '--no-progress',
      ],
      env(),
    );
    console.log(`eval:online by feature time: ${run.seconds.toFixed(1)} s`);
    expect(run.stderr).not.toContain('failed');
    expect(run.code).toBe(0);
    const line = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '') as Line;
    expect(Object.keys(line.variants)).toEqual(['control', 'treatment']);
    expect(line).toMatchObject({ lists: 360, customers: 180, baseline: 'control' });
    // The topic holds purchases past every window's end (the served-time ones): all closed.
    expect(line.open_windows).toBe(0);
    expect(line.variants.control).toMatchObject({ lists: 200, lists_with_purchase: 0 });
    expectEstimate(line.variants.control?.hit_rate12, 0);
    expectEstimate(line.variants.treatment?.hit_rate12, 0.5);
    expectEstimate(line.variants.treatment?.map12, 0.5);
    const diff = line.differences.treatment;
    expect(diff?.hit_rate12[0]).toBeCloseTo(0.5, 6);
    expect(diff?.hit_rate12[1]).toBeGreaterThan(0); // the treatment is ahead, with confidence
    expect(diff?.map12[1]).toBeGreaterThan(0);
  });

  it('refuses bad arguments and missing topics with one clear line and exit code 2', async () => {
    const bad = await runCli(['--from', '2024-13-01', '--to', '2024-03-03'], env());
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--from "2024-13-01" is not a valid time');

    const reversed = await runCli(['--from', '2024-03-03', '--to', '2024-03-01'], env());
    expect(reversed.code).toBe(2);
    expect(reversed.stderr).toContain('must be before --to');

    const time = await runCli(['--from', '2024-03-01', '--to', '2024-03-02', '--time', 'x'], env());
    expect(time.code).toBe(2);
    expect(time.stderr).toContain('--time must be served');

    const prefix = `test-evalonline-missing-${randomUUID().slice(0, 8)}.`;
    const missing = await runCli(['--from', '2024-03-01', '--to', '2024-03-02'], {
      TOPIC_PREFIX: prefix,
    });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(`${prefix}recommendations.served`);
    expect(missing.stderr).toContain('do not exist');

    const baseline = await runCli(
      ['--from', '2024-03-01', '--to', '2024-03-03', '--baseline', 'nope', '--no-progress'],
      env(),
    );
    expect(baseline.code).toBe(2);
    expect(baseline.stderr).toContain('baseline "nope" is not a variant');
  });
});
