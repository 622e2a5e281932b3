/**
 * The dataset reader on generated fixtures and small hand-written folders (no Kafka): counts,
 * conversions, event times and ids, ordering, duplicates, Parquet, and the positions named by
 * errors. The shared real datasets are read too when present.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { articleSchema, customerSchema, purchaseSchema } from '../../schemas/events.ts';
import { generateDataset, mulberry32, type GeneratedInfo } from '../../test/fixtures/generate.ts';
import { csvToParquet, pyarrowAvailable } from '../../test/fixtures/parquet.ts';
import { purchaseEventId } from './convert.ts';
import { CSV_MAX_RECORD_SIZE, escapeFormula } from './csv.ts';
import { DatasetError, readDataset, type Dataset } from './dataset.ts';

const DAY_MS = 86_400_000;
const HM_SAMPLE = '/work/shared/data/hm-sample';
const ONLINE_RETAIL = '/work/shared/data/online-retail-dev';

let root: string;
let seq = 0;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'loader-dataset-'));
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

function freshDir(name: string): string {
  const dir = join(root, `${String(seq++)}-${name}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

const ARTICLES = 'article_id,prod_name\n0108775015,Strap top\n0108775044,Strap top\n';
const CUSTOMERS = 'customer_id,age\nc1,21.0\nc2,\n';
const TRANSACTIONS =
  't_dat,customer_id,article_id,price,sales_channel_id\n2020-09-01,c1,0108775015,0.05,2\n';

/** A hand-written folder: the given files, the others minimal and valid. */
function folder(files: { articles?: string; customers?: string; transactions?: string }): string {
  const dir = freshDir('handmade');
  writeFileSync(join(dir, 'articles.csv'), files.articles ?? ARTICLES);
  writeFileSync(join(dir, 'customers.csv'), files.customers ?? CUSTOMERS);
  writeFileSync(join(dir, 'transactions_train.csv'), files.transactions ?? TRANSACTIONS);
  return dir;
}

async function readError(dir: string): Promise<DatasetError> {
  const err: unknown = await readDataset(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DatasetError);
  return err as DatasetError;
}

function withoutFiles(d: Dataset): Omit<Dataset, 'files'> {
  return { articles: d.articles, customers: d.customers, purchases: d.purchases, stats: d.stats };
}

describe('readDataset on a generated H&M-layout CSV folder', () => {
  let info: GeneratedInfo;
  let data: Dataset;
  const progress: [string, number][] = [];

  beforeAll(async () => {
    info = generateDataset(freshDir('generated'), {
      customers: 300,
      articles: 500,
      purchases: 25_000,
      seed: 42,
    });
    data = await readDataset(info.dir, { onProgress: (file, rows) => progress.push([file, rows]) });
  });

  it('reads every row and reports the files and row counts', () => {
    expect(data.files).toEqual({
      articles: 'articles.csv',
      customers: 'customers.csv',
      purchases: 'transactions_train.csv',
    });
    expect(data.stats).toEqual({
      articleRows: info.articles,
      customerRows: info.customers,
      purchaseRows: info.purchases,
      duplicateArticles: 0,
      duplicateCustomers: 0,
    });
    expect(data.purchases).toHaveLength(info.purchases);
    expect(data.articles).toHaveLength(info.articles);
    expect(data.customers).toHaveLength(info.customers);
  });

  it('produces records that satisfy the zod schemas exactly', () => {
    for (const p of data.purchases) expect(purchaseSchema.parse(p)).toEqual(p);
    for (const a of data.articles) expect(articleSchema.parse(a)).toEqual(a);
    for (const c of data.customers) expect(customerSchema.parse(c)).toEqual(c);
  });

  it('keeps article ids as 10-digit strings with the leading zero and parses numeric columns as ints', () => {
    const first = data.articles[0];
    expect(first?.article_id).toMatch(/^0\d{9}$/);
    expect(first?.product_code).toBe(first?.article_id.slice(1, 7));
    expect(typeof first?.product_type_no).toBe('number');
    expect(data.articles.some((a) => a.detail_desc === null)).toBe(true);
    expect(data.articles.some((a) => a.detail_desc?.includes('"') === true)).toBe(true);
    expect(data.articles.some((a) => a.section_name?.includes(',') === true)).toBe(true);
  });

  it('reads FN and Active flags, float ages as ints, and empty fields as null', () => {
    expect(new Set(data.customers.map((c) => c.fn))).toEqual(new Set([true, null]));
    expect(data.customers.some((c) => c.age === null)).toBe(true);
    expect(data.customers.every((c) => c.age === null || Number.isInteger(c.age))).toBe(true);
    expect(data.customers.some((c) => c.club_member_status === null)).toBe(true);
  });

  it('sorts purchases by event time and gives each day the times midnight + 0, 1, 2 ... ms', () => {
    const times = data.purchases.map((p) => p.event_time);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    expect(new Set(times).size).toBe(times.length);
    const perDay = new Map<number, number[]>();
    for (const t of times) {
      const day = Math.floor(t / DAY_MS) * DAY_MS;
      perDay.set(day, [...(perDay.get(day) ?? []), t - day]);
    }
    for (const offsets of perDay.values()) expect(offsets).toEqual(offsets.map((_, i) => i));
    expect(new Date(times[0] ?? 0).toISOString().slice(0, 10)).toBe(info.firstDate);
    expect(new Date(times.at(-1) ?? 0).toISOString().slice(0, 10)).toBe(info.lastDate);
  });

  it('gives every purchase a distinct 32-hex event id, duplicate rows included', () => {
    expect(info.duplicatePurchases).toBeGreaterThan(0);
    const ids = data.purchases.map((p) => p.event_id);
    expect(ids.every((id) => /^[0-9a-f]{32}$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('returns identical records, ids included, when the same folder is read again', async () => {
    expect(await readDataset(info.dir)).toEqual(data);
  });

  it('stamps articles and customers with the first purchase time unless metadataTime is given', async () => {
    const first = data.purchases[0]?.event_time;
    expect(data.articles.every((a) => a.updated_at === first)).toBe(true);
    expect(data.customers.every((c) => c.updated_at === first)).toBe(true);
    const t = Date.UTC(2020, 0, 1);
    const again = await readDataset(info.dir, { metadataTime: t });
    expect(again.articles.every((a) => a.updated_at === t)).toBe(true);
    expect(again.customers.every((c) => c.updated_at === t)).toBe(true);
    await expect(readDataset(info.dir, { metadataTime: 1_600_000_000 })).rejects.toThrow(
      'metadataTime 1600000000 is invalid: event time must be ms since the epoch, after 1990',
    );
  });

  it('reports progress every 10,000 rows and the final count of each file', () => {
    expect(progress.filter(([f]) => f === 'transactions_train.csv')).toEqual([
      ['transactions_train.csv', 10_000],
      ['transactions_train.csv', 20_000],
      ['transactions_train.csv', 25_000],
    ]);
    expect(progress.filter(([f]) => f !== 'transactions_train.csv')).toEqual([
      ['articles.csv', info.articles],
      ['customers.csv', info.customers],
    ]);
  });
});

describe('transactions with ts and quantity columns (online-retail layout)', () => {
  let info: GeneratedInfo;
  let data: Dataset;

  beforeAll(async () => {
    info = generateDataset(freshDir('with-ts'), {
      customers: 100,
      articles: 150,
      purchases: 3_000,
      seed: 7,
      withTs: true,
    });
    data = await readDataset(info.dir);
  });

  it('takes the event time from ts, read as UTC, and the quantity from the quantity column', async () => {
    const dir = folder({
      transactions:
        't_dat,customer_id,article_id,price,sales_channel_id,quantity,ts\n' +
        '2010-12-01,c1,0108775015,2.55,1,6,2010-12-01T08:26:00\n' +
        '2010-12-01,c2,0108775044,3.39,2,1,2010-12-01T08:28:30\n',
    });
    const { purchases } = await readDataset(dir);
    expect(purchases.map((p) => [p.event_time, p.quantity])).toEqual([
      [Date.UTC(2010, 11, 1, 8, 26), 6],
      [Date.UTC(2010, 11, 1, 8, 28, 30), 1],
    ]);
    expect(data.purchases.some((p) => p.quantity > 1)).toBe(true);
  });

  it('uses ts when its date differs from t_dat, and midnight + position when ts is empty', async () => {
    const dir = folder({
      transactions:
        'T_DAT,Customer_Id,ARTICLE_ID,Price,Sales_Channel_Id,TS\n' +
        '2010-12-01,c1,0108775015,1,1,2010-12-02T00:10:00\n' +
        '2010-12-01,c1,0108775015,1,1,\n' +
        '2010-12-01,c2,0108775015,1,1,\n',
    });
    const { purchases } = await readDataset(dir);
    expect(purchases.map((p) => p.event_time)).toEqual([
      Date.UTC(2010, 11, 1) + 1,
      Date.UTC(2010, 11, 1) + 2,
      Date.UTC(2010, 11, 2, 0, 10),
    ]);
  });

  it('gives identical rows (same time, several units) distinct ids numbered by occurrence', async () => {
    const row = '2010-12-01,c1,0108775015,2.55,1,6,2010-12-01T08:26:00\n';
    const dir = folder({
      transactions: `t_dat,customer_id,article_id,price,sales_channel_id,quantity,ts\n${row}${row}`,
    });
    const { purchases } = await readDataset(dir);
    const base = {
      customer_id: 'c1',
      article_id: '0108775015',
      price: 2.55,
      sales_channel_id: 1,
      quantity: 6,
      event_time: Date.UTC(2010, 11, 1, 8, 26),
    };
    expect(purchases.map((p) => p.event_id)).toEqual([
      purchaseEventId(base, 0),
      purchaseEventId(base, 1),
    ]);
    expect(purchases[0]?.event_id).not.toBe(purchases[1]?.event_id);
  });

  it('gives the same set of ids when the transaction rows are shuffled', async () => {
    const lines = readFileSync(info.files.transactions, 'utf8').trimEnd().split('\n');
    const [header, ...rows] = lines;
    const rnd = mulberry32(99);
    for (let i = rows.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [rows[i], rows[j]] = [rows[j] ?? '', rows[i] ?? ''];
    }
    const dir = freshDir('shuffled');
    copyFileSync(info.files.articles, join(dir, 'articles.csv'));
    copyFileSync(info.files.customers, join(dir, 'customers.csv'));
    writeFileSync(join(dir, 'transactions_train.csv'), [header, ...rows].join('\n') + '\n');
    const shuffled = await readDataset(dir);
    const ids = (d: Dataset) => d.purchases.map((p) => p.event_id).sort();
    expect(ids(shuffled)).toEqual(ids(data));
    expect(new Set(ids(data)).size).toBe(info.purchases);
  });
});

describe('ordering and duplicate ids', () => {
  it('orders a file that is not sorted by day, keeping file order within each day', async () => {
    const dir = folder({
      transactions:
        't_dat,customer_id,article_id,price,sales_channel_id\n' +
        '2020-09-02,a,0108775015,1,1\n' +
        '2020-09-01,b,0108775015,1,1\n' +
        '2020-09-02,c,0108775015,1,1\n' +
        '2020-09-01,d,0108775015,1,1\n',
    });
    const { purchases } = await readDataset(dir);
    expect(purchases.map((p) => [p.customer_id, p.event_time])).toEqual([
      ['b', Date.UTC(2020, 8, 1)],
      ['d', Date.UTC(2020, 8, 1) + 1],
      ['a', Date.UTC(2020, 8, 2)],
      ['c', Date.UTC(2020, 8, 2) + 1],
    ]);
  });

  it('keeps file order for purchases with equal event times', async () => {
    const dir = folder({
      transactions:
        't_dat,customer_id,article_id,price,sales_channel_id,ts\n' +
        '2020-09-01,z,0108775015,1,1,2020-09-01T10:00:00\n' +
        '2020-09-01,y,0108775015,1,1,2020-09-01T09:00:00\n' +
        '2020-09-01,x,0108775015,1,1,2020-09-01T10:00:00\n',
    });
    const { purchases } = await readDataset(dir);
    expect(purchases.map((p) => p.customer_id)).toEqual(['y', 'z', 'x']);
  });

  it('keeps the last row of a repeated article or customer id and counts the repeats', async () => {
    const dir = folder({
      articles:
        'article_id,prod_name\n0108775015,old name\n0108775044,other\n0108775015,new name\n',
      customers: 'customer_id,FN\nc1,\nc1,1.0\nc1,0.0\n',
    });
    const data = await readDataset(dir);
    expect(data.articles.map((a) => [a.article_id, a.prod_name])).toEqual([
      ['0108775015', 'new name'],
      ['0108775044', 'other'],
    ]);
    expect(data.customers.map((c) => [c.customer_id, c.fn])).toEqual([['c1', false]]);
    expect(data.stats).toMatchObject({
      articleRows: 3,
      customerRows: 3,
      duplicateArticles: 1,
      duplicateCustomers: 2,
    });
  });
});

describe('formula-escaped cells (as npm run replay writes them)', () => {
  it('strips exactly one leading quote before a formula character, and only there', async () => {
    const names = [
      '=HYPERLINK("x")',
      '@cmd',
      '+1 more',
      '-x',
      "'=already quoted",
      '-1.5',
      "it's",
      "'plain",
    ];
    const escaped = names.map(escapeFormula);
    expect(escaped).toEqual([
      `'=HYPERLINK("x")`,
      "'@cmd",
      "'+1 more",
      "'-x",
      "''=already quoted",
      '-1.5',
      "it's",
      "'plain",
    ]);
    expect(['-1.5', '+3', '-2e-3', '.5', '-7.'].map(escapeFormula)).toEqual([
      '-1.5',
      '+3',
      '-2e-3',
      '.5',
      '-7.',
    ]);
    expect(['\tx', '\rx', '-Infinity', '-1.5.2'].map(escapeFormula)).toEqual([
      "'\tx",
      "'\rx",
      "'-Infinity",
      "'-1.5.2",
    ]);
    const quote = (s: string) => `"${s.replaceAll('"', '""')}"`;
    const ids = names.map((_, i) => `01087750${String(10 + i)}`);
    const dir = folder({
      articles: `article_id,prod_name,product_type_no\n${escaped.map((n, i) => `${ids[i]},${quote(n)},-1`).join('\n')}\n`,
    });
    const data = await readDataset(dir);
    const byId = new Map(data.articles.map((a) => [a.article_id, a]));
    expect(ids.map((i) => byId.get(i)?.prod_name)).toEqual(names);
    expect(ids.map((i) => byId.get(i)?.product_type_no)).toEqual(names.map(() => -1));
  });
});

describe('columns', () => {
  it('matches header names ignoring case, ignores unknown columns and sets missing optional ones to null', async () => {
    const dir = folder({
      customers: 'CUSTOMER_ID,fn,ACTIVE,Age,favourite_colour\nc1,1,0,33.0,blue\n',
    });
    const { customers } = await readDataset(dir);
    expect(customers).toEqual([
      {
        customer_id: 'c1',
        fn: true,
        active: false,
        club_member_status: null,
        fashion_news_frequency: null,
        age: 33,
        postal_code: null,
        updated_at: Date.UTC(2020, 8, 1),
      },
    ]);
  });

  it('refuses a header that has a column it reads twice, ignoring case', async () => {
    const dir = folder({ customers: 'customer_id,Age,AGE,x,x\nc1,21,22,,\n' });
    expect((await readError(dir)).message).toBe(
      'customers.csv line 1, column age: the header has this column twice (names are compared ignoring case)',
    );
  });

  it('names the file and the column when a required column is missing', async () => {
    const dir = folder({
      transactions: 't_dat,customer_id,article_id,sales_channel_id\n2020-09-01,c1,0108775015,2\n',
    });
    const err = await readError(dir);
    expect(err.message).toBe(
      'transactions_train.csv line 1, column price: required column is missing ' +
        '(the file has: t_dat, customer_id, article_id, sales_channel_id)',
    );
    expect(err.column).toBe('price');
  });
});

describe('files', () => {
  it('reads a UTF-8 BOM and CRLF line ends', async () => {
    const dir = folder({
      customers: '\ufeffcustomer_id,age\r\nc1,21.0\r\nc2,\r\n',
      transactions:
        '\ufefft_dat,customer_id,article_id,price,sales_channel_id\r\n' +
        '2020-09-01,c1,0108775015,0.05,2\r\n',
    });
    const data = await readDataset(dir);
    expect(data.customers.map((c) => [c.customer_id, c.age])).toEqual([
      ['c1', 21],
      ['c2', null],
    ]);
    expect(data.purchases[0]?.sales_channel_id).toBe(2);
  });

  it('names the expected file and the folder when a table is missing', async () => {
    const dir = folder({});
    rmSync(join(dir, 'transactions_train.csv'));
    await expect(readDataset(dir)).rejects.toThrow(
      `no transactions_train.csv or transactions_train.parquet in ${dir}`,
    );
  });

  it('refuses a folder that has both the CSV and the Parquet file of a table', async () => {
    const dir = folder({});
    writeFileSync(join(dir, 'articles.parquet'), '');
    await expect(readDataset(dir)).rejects.toThrow(
      `both articles.csv and articles.parquet exist in ${dir}: remove one of them`,
    );
  });

  it('needs metadataTime when the transactions file has no rows', async () => {
    const dir = folder({ transactions: 't_dat,customer_id,article_id,price,sales_channel_id\n' });
    await expect(readDataset(dir)).rejects.toThrow(/has no rows.*pass metadataTime/);
    const data = await readDataset(dir, { metadataTime: Date.UTC(2020, 0, 1) });
    expect(data.purchases).toEqual([]);
    expect(data.articles[0]?.updated_at).toBe(Date.UTC(2020, 0, 1));
  });
});

describe('malformed values', () => {
  const header = 't_dat,customer_id,article_id,price,sales_channel_id,quantity,ts';
  const good = '2020-09-01,c1,0108775015,0.05,2,1,2020-09-01T10:00:00';
  it.each([
    { column: 'price', row: '2020-09-01,c1,0108775015,abc,2,1,', problem: '"abc" is not a number' },
    {
      column: 't_dat',
      row: '2020-13-45,c1,0108775015,0.05,2,1,',
      problem: '"2020-13-45" is not a date (expected YYYY-MM-DD)',
    },
    {
      column: 't_dat',
      row: '2020-02-30,c1,0108775015,0.05,2,1,',
      problem: '"2020-02-30" is not a date (expected YYYY-MM-DD)',
    },
    { column: 'customer_id', row: '2020-09-01,,0108775015,0.05,2,1,', problem: 'the id is empty' },
    {
      column: 'sales_channel_id',
      row: '2020-09-01,c1,0108775015,0.05,x,1,',
      problem: '"x" is not an integer',
    },
    {
      column: 'article_id',
      row: '2020-09-01,c1,01087:75015,0.05,2,1,',
      problem: '"01087:75015" is not a valid id',
    },
    {
      column: 'customer_id',
      row: '2020-09-01,c 1,0108775015,0.05,2,1,',
      problem: '"c 1" is not a valid id',
    },
    {
      column: 'quantity',
      row: '2020-09-01,c1,0108775015,0.05,2,0,',
      problem: '"0" is not a positive quantity',
    },
    {
      column: 'ts',
      row: '2020-09-01,c1,0108775015,0.05,2,1,yesterday',
      problem: '"yesterday" is not a date-time',
    },
    {
      column: 'price',
      row: '2020-09-01,c1,0108775015,-0.05,2,1,',
      problem: '-0.05 is invalid: Too small',
    },
  ])(
    'reports a bad $column value with file, line and column: $problem',
    async ({ column, row, problem }) => {
      const dir = folder({ transactions: `${header}\n${good}\n${row}\n${good}\n` });
      const err = await readError(dir);
      expect(err.message).toContain(`transactions_train.csv line 3, column ${column}: ${problem}`);
      expect(err.file).toBe(join(dir, 'transactions_train.csv'));
      expect(err.line).toBe(3);
      expect(err.column).toBe(column);
    },
  );

  it('names the column as the header spells it', async () => {
    const dir = folder({
      transactions:
        'T_DAT,CUSTOMER_ID,ARTICLE_ID,PRICE,SALES_CHANNEL_ID\n2020-09-01,c1,0108775015,?,1\n',
    });
    expect((await readError(dir)).message).toBe(
      'transactions_train.csv line 2, column PRICE: "?" is not a number',
    );
  });

  it('counts the lines of quoted fields with line breaks in earlier rows', async () => {
    const dir = folder({
      articles:
        'article_id,prod_name,product_type_no,detail_desc\n' +
        '0100000001,Top,253,"First line,\nsecond ""line"""\n' +
        '0100000002,Top,x25,plain\n',
    });
    const err = await readError(dir);
    expect(err.message).toBe(
      'articles.csv line 4, column product_type_no: "x25" is not an integer',
    );
  });

  it.each([
    ['LF', '\n'],
    ['CRLF', '\r\n'],
  ])(
    'gives the line of the bad field itself when a multi-line field precedes it in the same row (%s)',
    async (_name, eol) => {
      const dir = folder({
        articles: [
          'article_id,detail_desc,product_type_no',
          '0100000001,plain,1',
          `0100000002,"a${eol}b, ""c""${eol}d",x25`,
          '',
        ].join(eol),
      });
      const err = await readError(dir);
      expect(err.message).toBe(
        'articles.csv line 5, column product_type_no: "x25" is not an integer',
      );
      expect(err.line).toBe(5);
    },
  );

  it('counts empty lines', async () => {
    const dir = folder({ customers: 'customer_id,age\n\nc1,21.0\n\n\nc2,abc\n' });
    expect((await readError(dir)).message).toBe(
      'customers.csv line 6, column age: "abc" is not an integer',
    );
  });

  it('reports a schema violation (an age of 200) at its line and column', async () => {
    const dir = folder({ customers: 'customer_id,age\nc1,21.0\nc2,200.0\n' });
    const err = await readError(dir);
    expect(err.message).toMatch(/^customers\.csv line 3, column age: 200 is invalid: Too big/);
  });

  it('reports a row with the wrong number of fields', async () => {
    const dir = folder({
      transactions:
        't_dat,customer_id,article_id,price,sales_channel_id\n' +
        '2020-09-01,c1,0108775015,0.05,2\n' +
        '2020-09-01,c1,0108775015,0.05\n',
    });
    expect((await readError(dir)).message).toBe(
      'transactions_train.csv line 3: the row has 4 fields but the header has 5',
    );
  });

  it('reports an unterminated quote', async () => {
    const dir = folder({ articles: 'article_id,prod_name\n0108775015,"Strap top\n' });
    const err = await readError(dir);
    expect(err.message).toMatch(/^articles\.csv line \d+: invalid CSV \(CSV_QUOTE_NOT_CLOSED\)/);
  });

  it('stops at a record longer than the 1 MiB limit, naming the file, the line and the limit', async () => {
    expect(CSV_MAX_RECORD_SIZE).toBe(1 << 20);
    const long = 'x'.repeat(CSV_MAX_RECORD_SIZE + 10);
    const dir = folder({
      articles: `article_id,prod_name\n0108775015,Strap top\n0108775044,"${long}"\n0110065001,ok\n`,
    });
    const err = await readError(dir);
    expect(err.message).toBe(
      'articles.csv line 3: a record is longer than the limit of 1048576 bytes (1 MiB) per record: an unclosed quote, or not a CSV file?',
    );
    expect(err.line).toBe(3);
    expect(err.code).toBe('REC_ERR_DATASET');
    // An unclosed quote early in a big file: the same bounded error, not the rest of the file in one field.
    const unclosed = folder({
      articles: `article_id,prod_name\n0108775015,"Strap top\n${'0108775044,name\n'.repeat(80_000)}`,
    });
    expect((await readError(unclosed)).message).toMatch(
      /^articles\.csv line \d+: a record is longer than the limit of 1048576 bytes/,
    );
  });
});

describe.skipIf(!pyarrowAvailable())(
  'Parquet tables converted from CSV by python3 + pyarrow (skipped when pyarrow is not installed)',
  () => {
    /** Copy of a CSV folder with every table converted to Parquet. */
    function toParquet(src: GeneratedInfo, opts: Parameters<typeof csvToParquet>[2] = {}): string {
      const dir = freshDir('parquet');
      csvToParquet(src.files.articles, join(dir, 'articles.parquet'), opts);
      csvToParquet(src.files.customers, join(dir, 'customers.parquet'), opts);
      csvToParquet(src.files.transactions, join(dir, 'transactions_train.parquet'), opts);
      return dir;
    }

    it.each([false, true])(
      'reads the same records from Parquet as from the CSV it was made from (withTs: %s)',
      async (withTs) => {
        const info = generateDataset(freshDir('csv-for-parquet'), {
          customers: 80,
          articles: 120,
          purchases: 2_000,
          seed: 5,
          withTs,
        });
        const dir = toParquet(info, { rowGroupSize: 333 });
        const fromCsv = await readDataset(info.dir);
        const fromParquet = await readDataset(dir);
        expect(fromParquet.files.purchases).toBe('transactions_train.parquet');
        expect(withoutFiles(fromParquet)).toEqual(withoutFiles(fromCsv));
      },
    );

    it('writes Parquet fixtures from the generator when asked for format parquet', async () => {
      const info = generateDataset(freshDir('generated-parquet'), {
        customers: 20,
        articles: 30,
        purchases: 200,
        seed: 11,
        format: 'parquet',
      });
      expect(info.files.articles.endsWith('articles.parquet')).toBe(true);
      const data = await readDataset(info.dir);
      expect(data.stats.purchaseRows).toBe(200);
    });

    it('reports a bad value by row number', async () => {
      const src = folder({
        transactions:
          't_dat,customer_id,article_id,price,sales_channel_id\n' +
          '2020-09-01,c1,0108775015,0.05,2\n' +
          '2020-09-01,c1,0108775015,-1.5,2\n',
      });
      const dir = freshDir('parquet-bad');
      for (const name of ['articles', 'customers', 'transactions_train']) {
        csvToParquet(join(src, `${name}.csv`), join(dir, `${name}.parquet`));
      }
      const err = await readError(dir);
      expect(err.message).toMatch(
        /^transactions_train\.parquet row 2, column price: -1\.5 is invalid: Too small/,
      );
    });

    it('refuses id columns stored as numbers, whose leading zeros are lost', async () => {
      const src = generateDataset(freshDir('numeric-ids'), {
        customers: 5,
        articles: 5,
        purchases: 20,
        seed: 3,
      });
      const dir = toParquet(src, { textColumns: ['customer_id', 'postal_code'] });
      const err = await readError(dir);
      expect(err.message).toMatch(
        /^transactions_train\.parquet row 1, column article_id: \d+ is stored as a bigint; ids must be stored as text/,
      );
    });
  },
);

describe.skipIf(!existsSync(HM_SAMPLE))(
  `H&M sample in ${HM_SAMPLE} (real data; skipped when that shared folder is absent)`,
  () => {
    it('reads 30,542 purchases, 105,542 articles and 1,337 customers', async () => {
      const data = await readDataset(HM_SAMPLE);
      expect(data.stats).toEqual({
        articleRows: 105_542,
        customerRows: 1_337,
        purchaseRows: 30_542,
        duplicateArticles: 0,
        duplicateCustomers: 0,
      });
      expect(data.articles[0]?.article_id).toBe('0108775015');
      expect(data.customers.filter((c) => c.age === null)).toHaveLength(12);
      expect(data.articles.filter((a) => a.detail_desc === null)).toHaveLength(416);
      expect(new Set(data.purchases.map((p) => p.event_id)).size).toBe(30_542);
      expect(data.purchases[0]?.event_time).toBe(Date.UTC(2018, 8, 20));
    });
  },
);

describe.skipIf(!existsSync(ONLINE_RETAIL))(
  `online-retail-dev in ${ONLINE_RETAIL} (real data; skipped when that shared folder is absent)`,
  () => {
    it('reads 260,239 purchases with ts and quantity, 3,502 articles and 3,613 customers', async () => {
      const data = await readDataset(ONLINE_RETAIL);
      expect(data.stats).toEqual({
        articleRows: 3_502,
        customerRows: 3_613,
        purchaseRows: 260_239,
        duplicateArticles: 0,
        duplicateCustomers: 0,
      });
      expect(data.purchases[0]).toMatchObject({
        customer_id: '17850',
        article_id: '85123A',
        quantity: 6,
        event_time: Date.UTC(2010, 11, 1, 8, 26),
      });
      expect(data.purchases.at(-1)?.event_time).toBe(Date.UTC(2011, 8, 30, 15, 52));
      expect(data.purchases.reduce((n, p) => n + p.quantity, 0)).toBe(3_613_924);
      expect(new Set(data.purchases.map((p) => p.event_id)).size).toBe(260_239);
    });
  },
);
