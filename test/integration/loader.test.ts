/**
 * The loader end to end on the real stack: a generated H&M-layout folder is published, the counts
 * printed equal the files' rows, the topics hold exactly that many records, and a second load of
 * the same files with `npm run load` says the topic holds purchases and produces the same event ids.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { endOffsetTotal } from '../../streams/admin.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import { replay } from '../../streams/replay.ts';
import { describeLoad, purchasesHeld, runLoad } from '../../streams/loader/load.ts';
import { generateDataset } from '../fixtures/generate.ts';
import { runTsCli, stackContext } from '../helpers.ts';

describe('npm run load on a generated fixture', () => {
  const ctx = stackContext('loader');
  const dir = mkdtempSync(join(tmpdir(), 'rec-loader-'));
  const config = { ...ctx.config, topicPrefix: ctx.prefix };

  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await ctx.cleanup();
  });

  it('publishes as many events as the files have rows, with the same ids on a second load', async () => {
    const info = generateDataset(dir, { customers: 40, articles: 60, purchases: 700, seed: 9 });
    expect(await purchasesHeld(config, ctx.logger)).toBe(0);
    const report = await runLoad({ config, logger: ctx.logger, dataDir: dir, progress: false });
    expect(report.published).toEqual({
      articles: info.articles,
      customers: info.customers,
      purchases: info.purchases,
    });
    expect(report.stats).toMatchObject({
      articleRows: info.articles,
      customerRows: info.customers,
      purchaseRows: info.purchases,
    });
    expect(describeLoad(report).join('\n')).toContain(`${info.purchases} published`);

    const admin = ctx.kafka.admin();
    await admin.connect();
    expect(await endOffsetTotal(admin, ctx.topics.purchases.name)).toBe(info.purchases);
    expect(await endOffsetTotal(admin, ctx.topics.articles.name)).toBe(info.articles);
    expect(await endOffsetTotal(admin, ctx.topics.customers.name)).toBe(info.customers);

    // Load again with `npm run load`: it says the topic holds purchases, and publishes anyway;
    // twice the records, but every event id appears exactly twice.
    expect(await purchasesHeld(config, ctx.logger)).toBe(info.purchases);
    const cli = await runTsCli('streams/loader/load-cli.ts', ['--data', dir, '--no-progress'], {
      TOPIC_PREFIX: ctx.prefix,
    });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain(
      `warning: the purchases topic already holds ${info.purchases} records: nothing is counted twice`,
    );
    expect(cli.stdout).toContain(`${info.purchases} published`);
    expect(await endOffsetTotal(admin, ctx.topics.purchases.name)).toBe(2 * info.purchases);
    await admin.disconnect();
    const { codecs } = await bootstrap(ctx);
    const ids = new Map<string, number>();
    const times: number[] = [];
    await replay({
      kafka: ctx.kafka,
      topic: ctx.topics.purchases,
      codec: codecs.purchases,
      from: 0,
      to: Date.UTC(2100, 0, 1),
      logger: ctx.logger,
      onRecords: (rs) => {
        for (const r of rs) {
          ids.set(r.value.event_id, (ids.get(r.value.event_id) ?? 0) + 1);
          times.push(r.value.event_time);
        }
      },
    });
    expect(ids.size).toBe(info.purchases);
    expect([...ids.values()].every((n) => n === 2)).toBe(true);
    expect(Math.min(...times)).toBe(Date.parse(`${info.firstDate}T00:00:00Z`));
  });

  it('names the file, line and column of a malformed value, and publishes nothing', async () => {
    const bad = mkdtempSync(join(tmpdir(), 'rec-loader-bad-'));
    try {
      const { writeFileSync, readFileSync } = await import('node:fs');
      generateDataset(bad, { customers: 5, articles: 5, purchases: 20, seed: 2 });
      const file = join(bad, 'transactions_train.csv');
      const lines = readFileSync(file, 'utf8').split('\n');
      const cells = (lines[4] ?? '').split(',');
      cells[3] = 'abc'; // price
      lines[4] = cells.join(',');
      writeFileSync(file, lines.join('\n'));
      const badConfig = { ...config, topicPrefix: `${ctx.prefix}bad.` };
      await expect(
        runLoad({ config: badConfig, logger: ctx.logger, dataDir: bad, progress: false }),
      ).rejects.toThrow(/transactions_train\.csv line 5, column price: "abc" is not a number/);
      const admin = ctx.kafka.admin();
      await admin.connect();
      const topics = await admin.listTopics();
      await admin.disconnect();
      expect(topics.filter((t) => t.startsWith(badConfig.topicPrefix))).toEqual([]);
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });
});
