import { cpSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { datasetFingerprint } from './loaded.ts';

describe('datasetFingerprint', () => {
  const root = mkdtempSync(join(tmpdir(), 'fingerprint-'));
  afterAll(() => {
    rmSync(root, { recursive: true, force: true });
  });

  const folder = (name: string, purchases: string): string => {
    const dir = join(root, name);
    cpSync(join(root, 'seed'), dir, { recursive: true });
    writeFileSync(join(dir, 'transactions_train.csv'), purchases);
    return dir;
  };
  mkdirSync(join(root, 'seed'));
  writeFileSync(join(root, 'seed', 'README.md'), '# a sample\n');
  writeFileSync(join(root, 'seed', 'articles.csv'), 'article_id,product_code\n0108775015,108775\n');
  const rows =
    't_dat,customer_id,article_id,price,sales_channel_id\n2020-09-01,c1,0108775015,0.01,2\n';

  it('is the content: a copy elsewhere, touched later, is the same folder', () => {
    const a = folder('hm-sample', rows);
    const b = folder('copy/hm-sample', rows);
    utimesSync(join(b, 'transactions_train.csv'), new Date(2030, 0, 1), new Date(2030, 0, 1));
    expect(datasetFingerprint(b)).toEqual(datasetFingerprint(a));
    expect(datasetFingerprint(a).slug).toBe('hm-sample');
  });

  it('changes with a byte of a file, or a file more', () => {
    const a = folder('one', rows);
    const b = folder('two', rows.replace('0.01', '0.02'));
    expect(datasetFingerprint(b).hash).not.toBe(datasetFingerprint(a).hash);
    const before = datasetFingerprint(a).hash;
    writeFileSync(join(a, 'customers.csv'), 'customer_id\nc1\n');
    expect(datasetFingerprint(a).hash).not.toBe(before);
  });
});
