/**
 * `npm run replay` against the real stack: known events are published under a random prefix,
 * an interval is replayed to Parquet and CSV (the CLI as a child process for purchases, the
 * library for articles and customers), and the files are read back (hyparquet, csv-parse): they
 * hold exactly the events with from <= event time < to, with the decoded values, each event once
 * (re-published copies dropped, the first kept; every record with --keep-duplicates), CSV formula
 * cells escaped and read back by the loader unescaped. Also: clear errors with exit code 2, and no
 * file (nor temporary file) left by a failed run.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { asyncBufferFromFile, parquetReadObjects, parquetMetadataAsync } from 'hyparquet';
import type { Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Article, Customer, Purchase } from '../../schemas/events.ts';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { readDataset } from '../../streams/loader/dataset.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import {
  UsageError,
  checkWritable,
  parseInstant,
  replayOptions,
  replayToFile,
  type ReplayFileOptions,
} from '../../evaluation/replay-file.ts';
import { topics as makeTopics } from '../../streams/topics.ts';
import { runTsCli, stackContext, type StackContext } from '../helpers.ts';
import { ARTICLE_NULLS } from '../fixtures/events.ts';

const T0 = Date.UTC(2020, 8, 1); // 2020-09-01
const HOUR = 3_600_000;
const FROM = T0 + 10 * HOUR; // 2020-09-01T10:00Z, inclusive
const TO = T0 + 40 * HOUR; // 2020-09-02T16:00Z, exclusive

function purchase(i: number, over: Partial<Purchase> = {}): Purchase {
  return {
    event_id: `ev-${i}`,
    customer_id: `c${i % 7}`,
    article_id: `0${100000000 + (i % 13)}`,
    price: 0.0169322 * (1 + (i % 5)) + i / 1e6,
    sales_channel_id: 1 + (i % 2),
    quantity: 1 + (i % 3),
    event_time: T0 + i * HOUR + (i % 4) * 1234,
    ...over,
  };
}

const PURCHASES: Purchase[] = [
  ...Array.from({ length: 60 }, (_, i) => purchase(i)),
  // The bounds: exactly `from` is in, exactly `to` is out, one ms before `to` is in.
  purchase(1000, { event_time: FROM }),
  purchase(1001, { event_time: TO }),
  purchase(1002, { event_time: TO - 1 }),
  purchase(1003, { event_time: FROM - 1 }),
];
// Published after everything else, stamped inside the interval.
const LATE: Purchase[] = [purchase(2000, { event_time: FROM + 5 * HOUR + 7 })];
// Re-published copies (same event_id, another Kafka record), published last: three in the
// interval (one with other values: the first copy must win), one before it (skipped, not a copy).
const COPIES: Purchase[] = [
  purchase(12),
  purchase(20, { price: 9.99, quantity: 7 }),
  purchase(1000, { event_time: FROM }),
  purchase(5),
];
const IN_RANGE_COPIES = 3;

const ARTICLES: Article[] = [
  {
    ...ARTICLE_NULLS,
    article_id: '0108775015',
    product_code: '0108775',
    prod_name: 'Strap top',
    product_type_no: 253,
    colour_group_code: 9,
    detail_desc: 'Jersey top with "narrow" straps, a comma,\nand a second line; ünïcödé',
    updated_at: T0 + 12 * HOUR,
  },
  { ...ARTICLE_NULLS, article_id: '0108775044', prod_name: ' padded ', updated_at: T0 + 20 * HOUR },
  {
    // Cells a spreadsheet would run as formulas, and numbers that must stay numbers.
    ...ARTICLE_NULLS,
    article_id: '0108775050',
    prod_name: '=HYPERLINK("x")',
    detail_desc: '@cmd',
    product_type_no: -1,
    product_type_name: '-1.5',
    index_name: "'=already quoted",
    section_name: '+tab\t',
    updated_at: T0 + 25 * HOUR,
  },
  { ...ARTICLE_NULLS, article_id: '0110065001', updated_at: T0 + 1 * HOUR }, // before: out
  { ...ARTICLE_NULLS, article_id: '0110065002', updated_at: TO }, // at `to`: out
];

const CUSTOMERS: Customer[] = [
  {
    customer_id: 'cust-a',
    fn: true,
    active: false,
    club_member_status: 'ACTIVE',
    fashion_news_frequency: 'NONE',
    age: 49,
    postal_code: '52043ee2162cf5aa7ee79974281641c6f11a68d276429a91f8ca0d4b6efa8100',
    updated_at: T0 + 11 * HOUR,
  },
  {
    customer_id: 'cust-b',
    fn: null,
    active: null,
    club_member_status: null,
    fashion_news_frequency: null,
    age: null,
    postal_code: null,
    updated_at: T0 + 39 * HOUR,
  },
  { ...cust('cust-c'), updated_at: T0 + 41 * HOUR }, // after: out
];

function cust(id: string): Customer {
  return {
    customer_id: id,
    fn: false,
    active: true,
    club_member_status: 'PRE-CREATE',
    fashion_news_frequency: 'Regularly',
    age: 20,
    postal_code: 'x',
    updated_at: T0,
  };
}

const inRange = <T>(events: readonly T[], time: (e: T) => number): T[] =>
  events.filter((e) => time(e) >= FROM && time(e) < TO);
const byKey =
  <T>(key: (e: T) => string) =>
  (a: T, b: T) =>
    key(a).localeCompare(key(b));

async function readParquet(path: string): Promise<Record<string, unknown>[]> {
  const file = await asyncBufferFromFile(path);
  return parquetReadObjects({ file, rowFormat: 'object' });
}

async function readCsv(path: string): Promise<Record<string, string>[]> {
  return parseCsv<Record<string, string>>(await readFile(path, 'utf8'), { columns: true });
}

const runCli = (args: string[], env: Record<string, string>) =>
  runTsCli('evaluation/replay-cli.ts', args, env);

describe('npm run replay', () => {
  let ctx: StackContext;
  let codecs: Codecs;
  let producer: Producer;
  let dir: string;
  const env = () => ({ TOPIC_PREFIX: ctx.prefix });
  const deps = () => ({ kafka: ctx.kafka, topics: ctx.topics, codecs, logger: ctx.logger });
  const opts = (over: Partial<ReplayFileOptions>): ReplayFileOptions => ({
    topic: 'purchases',
    from: FROM,
    to: TO,
    out: join(dir, 'out.csv'),
    format: 'csv',
    progress: false,
    ...over,
  });

  beforeAll(async () => {
    ctx = stackContext('replaycli', 3);
    ({ codecs } = await bootstrap(ctx));
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
    await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(PURCHASES);
    await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(LATE);
    await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(COPIES);
    await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(ARTICLES);
    await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(CUSTOMERS);
    dir = await mkdtemp(join(tmpdir(), 'replay-cli-'));
  });

  afterAll(async () => {
    await producer.disconnect();
    await ctx.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const expectedPurchases = () =>
    inRange([...PURCHASES, ...LATE], (p) => p.event_time).sort(byKey((p) => p.event_id));

  it('writes exactly the purchases of [from, to) to Parquet, with t_dat and ts', async () => {
    const out = join(dir, 'purchases.parquet');
    const run = await runCli(
      [
        '--topic',
        'purchases',
        '--from',
        '2020-09-01T10:00',
        '--to',
        '2020-09-02T16:00:00Z',
        '--out',
        out,
        '--no-progress',
      ],
      env(),
    );
    console.log(`replay CLI to Parquet: ${run.seconds.toFixed(1)} s`);
    expect(run.stderr).not.toContain('replay failed');
    expect(run.code).toBe(0);
    const expected = expectedPurchases();
    const summary = run.stdout.trim().split('\n').at(-1) ?? '';
    expect(summary).toMatch(
      new RegExp(
        `^replayed ${expected.length} ${ctx.prefix}purchases records to .*purchases\\.parquet in \\d+\\.\\d s`,
      ),
    );
    expect(summary).toContain(`(${IN_RANGE_COPIES} duplicate copies dropped`);

    const meta = await parquetMetadataAsync(await asyncBufferFromFile(out));
    expect(meta.schema.slice(1).map((s) => s.name)).toEqual([
      'event_id',
      'customer_id',
      'article_id',
      'price',
      'sales_channel_id',
      'quantity',
      'event_time',
      't_dat',
      'ts',
    ]);
    const rows = (await readParquet(out)).sort(byKey((r) => String(r.event_id)));
    expect(rows).toHaveLength(expected.length);
    rows.forEach((r, i) => {
      const p = expected[i] as Purchase;
      expect({ ...r, event_time: (r.event_time as Date).getTime() }).toEqual({
        ...p,
        t_dat: new Date(Math.floor(p.event_time / 86_400_000) * 86_400_000),
        ts: new Date(p.event_time),
      });
    });
    // The boundary cases, spelled out.
    const ids = new Set(rows.map((r) => r.event_id));
    expect(ids.has('ev-1000')).toBe(true); // at `from`
    expect(ids.has('ev-1002')).toBe(true); // 1 ms before `to`
    expect(ids.has('ev-1001')).toBe(false); // at `to`
    expect(ids.has('ev-1003')).toBe(false); // 1 ms before `from`
    expect(ids.has('ev-2000')).toBe(true); // published late
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('writes the same purchases to CSV, readable back with csv-parse', async () => {
    const out = join(dir, 'purchases.csv');
    const run = await runCli(
      [
        '--topic',
        'purchases',
        '--from',
        '2020-09-01T10:00:00.000Z',
        '--to',
        '2020-09-02T18:00+02:00',
        '--out',
        out,
      ],
      env(),
    );
    console.log(`replay CLI to CSV: ${run.seconds.toFixed(1)} s`);
    expect(run.code).toBe(0);
    // Not a terminal: progress as plain lines on stderr, ending with the total read.
    expect(run.stderr).toMatch(/^replay purchases: done, \d+ rows \(100 %\) in [\d.]+ s$/m);
    expect(run.stderr).toContain(
      `replay purchases: ${IN_RANGE_COPIES} duplicate copies dropped (first record of each event_id kept)`,
    );
    const header = (await readFile(out, 'utf8')).split('\n')[0];
    expect(header).toBe(
      'event_id,customer_id,article_id,price,sales_channel_id,quantity,event_time,t_dat,ts',
    );
    const rows = (await readCsv(out)).sort(byKey((r) => r.event_id ?? ''));
    const expected = expectedPurchases();
    expect(rows).toHaveLength(expected.length);
    rows.forEach((r, i) => {
      const p = expected[i] as Purchase;
      const iso = new Date(p.event_time).toISOString();
      expect(r).toEqual({
        event_id: p.event_id,
        customer_id: p.customer_id,
        article_id: p.article_id,
        price: String(p.price),
        sales_channel_id: String(p.sales_channel_id),
        quantity: String(p.quantity),
        event_time: iso,
        t_dat: iso.slice(0, 10),
        ts: iso,
      });
      expect(Number(r.price)).toBe(p.price); // doubles survive the text round trip
    });
  });

  it('writes every record, re-published copies included, with --keep-duplicates', async () => {
    const out = join(dir, 'raw.csv');
    const run = await runCli(
      [
        '--topic',
        'purchases',
        '--from',
        '2020-09-01T10:00Z',
        '--to',
        '2020-09-02T16:00Z',
        '--out',
        out,
        '--keep-duplicates',
        '--no-progress',
      ],
      env(),
    );
    console.log(`replay CLI --keep-duplicates: ${run.seconds.toFixed(1)} s`);
    expect(run.code).toBe(0);
    const expected = expectedPurchases();
    expect(run.stdout).toContain(`replayed ${expected.length + IN_RANGE_COPIES} `);
    expect(run.stdout).not.toContain('duplicate');
    const rows = await readCsv(out);
    expect(rows).toHaveLength(expected.length + IN_RANGE_COPIES);
    // In file (offset) order: the original, then the changed copy.
    expect(rows.filter((r) => r.event_id === 'ev-20').map((r) => Number(r.price))).toEqual([
      purchase(20).price,
      9.99,
    ]);
    expect(rows.filter((r) => r.event_id === 'ev-5')).toEqual([]);
    const lib = await replayToFile(deps(), opts({ out: join(dir, 'raw2.csv') }));
    expect([lib.records, lib.duplicates]).toEqual([expected.length, IN_RANGE_COPIES]);
  });

  it('replays articles and customers (nulls, quoting, booleans) to both formats', async () => {
    const articles = inRange(ARTICLES, (a) => a.updated_at).sort(byKey((a) => a.article_id));
    const customers = inRange(CUSTOMERS, (c) => c.updated_at).sort(byKey((c) => c.customer_id));
    expect(articles).toHaveLength(3);
    expect(customers).toHaveLength(2);

    const aPq = join(dir, 'articles.parquet');
    const r1 = await replayToFile(deps(), opts({ topic: 'articles', out: aPq, format: 'parquet' }));
    expect(r1.records).toBe(3);
    expect(r1.duplicates).toBe(0);
    const aRows = (await readParquet(aPq)).sort(byKey((r) => String(r.article_id)));
    expect(aRows.map((r) => ({ ...r, updated_at: (r.updated_at as Date).getTime() }))).toEqual(
      articles,
    );

    const aCsv = join(dir, 'articles.csv');
    await replayToFile(deps(), opts({ topic: 'articles', out: aCsv, format: 'csv' }));
    const aText = (await readCsv(aCsv)).sort(byKey((r) => r.article_id ?? ''));
    expect(aText.map((r) => r.detail_desc)).toEqual([articles[0]?.detail_desc, '', "'@cmd"]);
    // Formula-leading text gets a leading ' (OWASP CSV injection); numbers stay numbers.
    expect(aText.map((r) => r.prod_name)).toEqual(['Strap top', ' padded ', `'=HYPERLINK("x")`]);
    expect(aText.map((r) => r.product_type_no)).toEqual(['253', '', '-1']);
    expect(aText[2]).toMatchObject({
      product_type_name: '-1.5',
      index_name: "''=already quoted",
      section_name: "'+tab\t",
    });
    const aRaw = await readFile(aCsv, 'utf8');
    expect(aRaw).toContain(`0108775050,,"'=HYPERLINK(""x"")",-1,-1.5,`);
    expect(aText.map((r) => r.updated_at)).toEqual(
      articles.map((a) => new Date(a.updated_at).toISOString()),
    );

    const cPq = join(dir, 'customers.parquet');
    await replayToFile(deps(), opts({ topic: 'customers', out: cPq, format: 'parquet' }));
    const cRows = (await readParquet(cPq)).sort(byKey((r) => String(r.customer_id)));
    expect(cRows.map((r) => ({ ...r, updated_at: (r.updated_at as Date).getTime() }))).toEqual(
      customers,
    );

    const cCsv = join(dir, 'customers.csv');
    await replayToFile(deps(), opts({ topic: 'customers', out: cCsv, format: 'csv' }));
    const cText = (await readCsv(cCsv)).sort(byKey((r) => r.customer_id ?? ''));
    expect(cText).toEqual([
      {
        customer_id: 'cust-a',
        fn: 'true',
        active: 'false',
        club_member_status: 'ACTIVE',
        fashion_news_frequency: 'NONE',
        age: '49',
        postal_code: customers[0]?.postal_code,
        updated_at: new Date(T0 + 11 * HOUR).toISOString(),
      },
      {
        customer_id: 'cust-b',
        fn: '',
        active: '',
        club_member_status: '',
        fashion_news_frequency: '',
        age: '',
        postal_code: '',
        updated_at: new Date(T0 + 39 * HOUR).toISOString(),
      },
    ]);
  });

  it('gives files the loader reads back as an H&M-layout folder (same event times)', async () => {
    const folder = join(dir, 'hm');
    await mkdir(folder);
    for (const [topic, name] of [
      ['purchases', 'transactions_train'],
      ['articles', 'articles'],
      ['customers', 'customers'],
    ] as const) {
      await replayToFile(
        deps(),
        opts({ topic, out: join(folder, `${name}.parquet`), format: 'parquet' }),
      );
    }
    const data = await readDataset(folder);
    const strip = ({ event_id: _, ...p }: Purchase) => p;
    const sortKey = (p: Omit<Purchase, 'event_id'>) => `${p.event_time}|${p.customer_id}`;
    expect(data.purchases.map(strip).sort(byKey(sortKey))).toEqual(
      expectedPurchases().map(strip).sort(byKey(sortKey)),
    );
    expect(data.articles.map((a) => a.article_id).sort()).toEqual([
      '0108775015',
      '0108775044',
      '0108775050',
    ]);
    expect(data.customers.map((c) => c.customer_id).sort()).toEqual(['cust-a', 'cust-b']);
  });

  it('gives CSV files the loader reads back with the same values (formula escapes removed)', async () => {
    const folder = join(dir, 'hm-csv');
    await mkdir(folder);
    for (const [topic, name] of [
      ['purchases', 'transactions_train'],
      ['articles', 'articles'],
      ['customers', 'customers'],
    ] as const) {
      await replayToFile(deps(), opts({ topic, out: join(folder, `${name}.csv`), format: 'csv' }));
    }
    const data = await readDataset(folder);
    const strip = ({ event_id: _, ...p }: Purchase) => p;
    const sortKey = (p: Omit<Purchase, 'event_id'>) => `${p.event_time}|${p.customer_id}`;
    expect(data.purchases.map(strip).sort(byKey(sortKey))).toEqual(
      expectedPurchases().map(strip).sort(byKey(sortKey)),
    );
    const noTime = ({ updated_at: _, ...a }: Article) => a;
    expect(data.articles.map(noTime).sort(byKey((a) => a.article_id))).toEqual(
      inRange(ARTICLES, (a) => a.updated_at)
        .map(noTime)
        .sort(byKey((a) => a.article_id)),
    );
  });

  it('writes a valid empty file for an interval without events', async () => {
    const far = { from: T0 + 10_000 * HOUR, to: T0 + 10_001 * HOUR };
    const pq = join(dir, 'empty.parquet');
    const r = await replayToFile(deps(), opts({ ...far, out: pq, format: 'parquet' }));
    expect(r.records).toBe(0);
    expect(await readParquet(pq)).toEqual([]);
    const csv = join(dir, 'empty.csv');
    await replayToFile(deps(), opts({ ...far, out: csv, format: 'csv' }));
    expect(await readFile(csv, 'utf8')).toBe(
      'event_id,customer_id,article_id,price,sales_channel_id,quantity,event_time,t_dat,ts\n',
    );
  });

  it('leaves no file, partial or temporary, when a run fails, and keeps an older file', async () => {
    const out = join(dir, 'kept.parquet');
    await writeFile(out, 'older contents');
    // Topics that do not exist: the replay fails after the temporary file was opened.
    const missing = makeTopics(`${ctx.prefix}missing.`);
    let tmp = '';
    await expect(
      replayToFile(
        { ...deps(), topics: missing },
        opts({ out, format: 'parquet' }),
        (t) => (tmp = t),
      ),
    ).rejects.toThrow();
    expect(tmp).not.toBe('');
    expect(await readFile(out, 'utf8')).toBe('older contents');
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('reports usage errors clearly, with exit code 2, before touching the stack', async () => {
    const bad = (values: Record<string, string>) => () =>
      replayOptions({
        topic: 'purchases',
        from: '2020-09-01',
        to: '2020-09-02',
        out: 'x.csv',
        ...values,
      });
    expect(bad({ topic: 'orders' })).toThrow(
      /unknown topic "orders": use purchases, articles, customers/,
    );
    expect(bad({ from: '2020-09-02' })).toThrow(/--from .* must be before --to/);
    expect(bad({ to: '2020-08-01' })).toThrow(UsageError);
    expect(bad({ from: '2021-02-30' })).toThrow(/--from "2021-02-30" is not a valid time/);
    expect(bad({ to: 'yesterday' })).toThrow(/--to "yesterday" is not a valid time/);
    expect(bad({ to: '2020-09-02T25:00' })).toThrow(/is not a valid time/);
    expect(bad({ out: 'x.json' })).toThrow(/must end in \.parquet or \.csv/);
    expect(bad({ out: '' })).toThrow(/missing --out/);
    expect(parseInstant('2020-09-01', '--from')).toBe(T0);
    expect(parseInstant('2020-09-01T02:30+02:30', '--from')).toBe(T0);
    expect(parseInstant('2020-09-01T00:00:00.250', '--from')).toBe(T0 + 250);
    await expect(checkWritable(join(dir, 'no-such-folder', 'x.csv'))).rejects.toThrow(
      /does not exist/,
    );
    await expect(checkWritable(join(dir, '/'))).rejects.toThrow(UsageError);

    const unknown = await runCli(
      [
        '--topic',
        'orders',
        '--from',
        '2020-09-01',
        '--to',
        '2020-09-02',
        '--out',
        join(dir, 'o.csv'),
      ],
      env(),
    );
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('replay failed: unknown topic "orders"');

    // A prefix without topics: refused, and not created as a side effect.
    const nowhere = await runCli(
      [
        '--topic',
        'articles',
        '--from',
        '2020-09-01',
        '--to',
        '2020-09-02',
        '--out',
        join(dir, 'n.csv'),
      ],
      { TOPIC_PREFIX: `${ctx.prefix}nowhere.` },
    );
    expect(nowhere.code).toBe(2);
    expect(nowhere.stderr).toContain(`topic ${ctx.prefix}nowhere.articles does not exist`);
    const admin = ctx.kafka.admin();
    await admin.connect();
    const names = await admin.listTopics();
    await admin.disconnect();
    expect(names.filter((n) => n.startsWith(`${ctx.prefix}nowhere.`))).toEqual([]);
    expect(await readdir(dir)).not.toContain('n.csv');
  });
});
