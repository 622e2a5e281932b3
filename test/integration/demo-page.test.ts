/**
 * The demo storefront page (`/demo`) in a real browser: Debian's chromium driven by playwright-core
 * (no browser download), over the real API, Kafka, registry, Redis and processors, with seeded
 * articles, customers and purchases. A person's path: open the page, search a customer by id
 * prefix, open a recommended item, buy it through the HTTP ingest, see it in the recent purchases
 * and the recommendations change. Also: article names are rendered as text (an article named
 * like markup stays text), the CSP header, the page without a key cannot buy. Screenshots at a
 * laptop and a phone viewport go to reports/demo-page/.
 *
 * Skipped, saying so, only where no chromium is installed (CHROMIUM_PATH, /usr/bin/chromium,
 * /usr/bin/chromium-browser); `.ci/run` installs it.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { Redis } from 'ioredis';
import type { Producer } from 'kafkajs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Secret } from '../../common/redact.ts';
import { keySpace, type KeySpace } from '../../features/keys.ts';
import { deleteNamespace } from '../../features/state.ts';
import type { RunningProcessors } from '../../processors/start.ts';
import type { Article } from '../../schemas/events.ts';
import { DEMO_PAGE_CSP } from '../../serving/routes/index.ts';
import { startServing, type ServingHandle } from '../../serving/server.ts';
import { bootstrap } from '../../streams/bootstrap.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { makeArticles, makeCustomers, makePurchases } from '../fixtures/events.ts';
import { stackContext, startSuiteProcessors, waitFor, type StackContext } from '../helpers.ts';

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser']
  .filter((p): p is string => p !== undefined && p !== '')
  .find((p) => existsSync(p));
if (CHROMIUM === undefined) {
  console.warn(
    'demo page browser test SKIPPED: no chromium found (set CHROMIUM_PATH or apt-get install chromium)',
  );
}

const T0 = Date.UTC(2020, 8, 1);
const REPORTS = 'reports/demo-page';
const KEY = `demo-page-test-${randomUUID()}`;
/** An article name that would inject an element if the page rendered names as HTML. */
const MARKUP_NAME = '<img src=x id=injected>Striped top';
const COLOURS = ['Black', 'White', 'Light Pink', 'Dark Blue'];
const SECTIONS = ['Womens Everyday Collection', 'Divided Collection', 'Menswear', 'Kids Girl'];

function seededArticles(): Article[] {
  return makeArticles(60, T0).map((a, i) => ({
    ...a,
    prod_name: i === 1 ? MARKUP_NAME : `Article ${i}`,
    colour_group_name: COLOURS[i % COLOURS.length] ?? null,
    section_name: SECTIONS[i % SECTIONS.length] ?? null,
  }));
}

/**
 * The API with the HTTP ingest (`POST /v1/events/purchases`) producing to the suite's topics and
 * accepting `KEY`, and the demo page allowed to buy with it (`key`) or not (null).
 */
async function startApi(ctx: StackContext, keys: KeySpace, key: string | null) {
  return startServing({
    redisUrl: ctx.config.redisUrl,
    keys,
    logger: ctx.logger,
    port: 0,
    host: '127.0.0.1',
    streams: { kafka: ctx.kafka, registry: ctx.registry, topics: ctx.topics },
    apiKeys: [new Secret(KEY)],
    config: {
      demoPage: { enabled: true, ingestKey: key === null ? null : new Secret(key) },
    },
  });
}

describe.skipIf(CHROMIUM === undefined)('the demo storefront page in a real browser', () => {
  const ctx = stackContext('demo-page');
  const ns = `demo${randomUUID().slice(0, 8)}`;
  const keys = keySpace(ns);
  const redis = new Redis(ctx.config.redisUrl);
  let producer: Producer;
  let running: RunningProcessors;
  let serving: ServingHandle;
  let readOnly: ServingHandle;
  let browser: Browser;
  const errors: string[] = [];

  beforeAll(async () => {
    const { codecs } = await bootstrap(ctx);
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
    await new EventProducer(producer, ctx.topics.articles, codecs.articles).send(seededArticles());
    await new EventProducer(producer, ctx.topics.customers, codecs.customers).send(
      makeCustomers(40, T0),
    );
    const purchases = makePurchases({
      count: 1_500,
      customers: 40,
      articles: 60,
      start: T0,
      days: 20,
      seed: 16,
    });
    await new EventProducer(producer, ctx.topics.purchases, codecs.purchases).send(purchases);
    ({ running } = await startSuiteProcessors(ctx, {
      redis,
      keys,
      codecs,
      producer,
      groupPrefix: `demo-page-${ns}`,
    }));
    await running.caughtUp(60_000);
    serving = await startApi(ctx, keys, KEY);
    readOnly = await startApi(ctx, keys, null);
    browser = await chromium.launch({ executablePath: CHROMIUM as string, args: ['--no-sandbox'] });
    mkdirSync(REPORTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser.close().catch(() => undefined);
    await serving.close().catch(() => undefined);
    await readOnly.close().catch(() => undefined);
    await running.stop().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await deleteNamespace(redis, keys);
    redis.disconnect();
    await ctx.cleanup();
  });

  async function open(url: string, viewport: { width: number; height: number }): Promise<Page> {
    errors.length = 0;
    const page = await browser.newPage({ viewport });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('response', (r) => {
      if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`);
    });
    await page.goto(`${url}/demo`);
    await page.waitForSelector('body[data-ready="true"]');
    return page;
  }

  const texts = (page: Page, selector: string) => page.locator(selector).allTextContents();
  const articlesOf = async (page: Page, selector: string) =>
    Promise.all(
      (await page.locator(selector).all()).map(
        async (l) => (await l.getAttribute('data-article')) ?? '',
      ),
    );
  const recIds = (page: Page) => articlesOf(page, '#recs li.card');
  const recentIds = (page: Page) => articlesOf(page, '#recent li');

  it('serves the page with a strict CSP, and hands out the ingest key only when given one', async () => {
    const res = await fetch(`${serving.url}/demo`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toBe(DEMO_PAGE_CSP);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await res.text()).toContain('/demo/app.js');
    const withKey = (await (await fetch(`${serving.url}/demo/config.json`)).json()) as {
      ingest_key: string | null;
    };
    expect(withKey.ingest_key).toBe(KEY);
    const without = (await (await fetch(`${readOnly.url}/demo/config.json`)).json()) as {
      ingest_key: string | null;
    };
    expect(without.ingest_key).toBeNull();
  });

  it('picks a customer, buys a recommended item, shows it bought and the list changed', async () => {
    const page = await open(serving.url, { width: 1366, height: 900 });
    await page.fill('#prefix', 'cust00000');
    await page.click('#search button[type=submit]');
    await page.waitForSelector('#matches li button');
    const matches = await texts(page, '#matches li button');
    expect(matches.length).toBeGreaterThan(0);
    expect(matches.every((m) => m.startsWith('cust00000'))).toBe(true);
    // The most active customer of the generated data (Zipf-skewed customers): cust000000.
    await page.click('#matches li button >> text=cust000000');
    await page.waitForSelector('#recs li.card');
    await page.waitForSelector('#recent li[data-article]');
    const customer = 'cust000000';
    expect(await page.textContent('#customer')).toContain(customer);

    // Names, colour, section, sources and explain's reasons on every card.
    const before = await recIds(page);
    expect(before.length).toBe(12);
    const firstCard = page.locator('#recs li.card').first();
    const cardText = (await firstCard.textContent()) ?? '';
    expect(COLOURS.some((c) => cardText.includes(c))).toBe(true);
    expect(SECTIONS.some((s) => cardText.includes(s))).toBe(true);
    expect(await firstCard.locator('.chip').count()).toBeGreaterThan(0);
    expect(await firstCard.locator('.reasons li').count()).toBeGreaterThan(0);
    const trending = await texts(page, '#trending li');
    expect(trending.length).toBeGreaterThan(0);
    expect(await page.locator('#segment option').count()).toBeGreaterThan(2);
    await page.screenshot({ path: `${REPORTS}/laptop.png`, fullPage: true });

    // Open the first recommendation: details, similar items, buy.
    const target = before[0]!;
    await firstCard.locator('button.card-open').click();
    await page.waitForSelector('#buy:not([disabled])');
    expect(await page.textContent('#detail')).toContain(target);
    await page.waitForSelector('#similar-co li');
    const t0 = Date.now();
    await page.click('#buy');
    await page
      .locator('#buy-status', { hasText: 'in the recent purchases after' })
      .waitFor({ timeout: 15_000 });
    const seenMs = Date.now() - t0;
    const recent = await recentIds(page);
    expect(recent[0]).toBe(target);
    const after = await recIds(page);
    // Bought, so no longer recommended (repurchases are not recommended by default).
    expect(after).not.toContain(target);
    expect(after).not.toEqual(before);
    expect(await page.locator('#recs li.card.new').count()).toBeGreaterThan(0);
    expect(await page.textContent('#recs-note')).toMatch(/changed: \d+ new, \d+ gone/);
    // The purchase went through Kafka and the processors into the store.
    const [latest] = await redis.zrevrange(keys.customer(customer).recent, 0, 0);
    expect(latest?.split('|')[2]).toBe(target);
    console.log(`demo page: bought ${target}, seen in the page after ${seenMs} ms`);
    await page.screenshot({ path: `${REPORTS}/laptop-after-buy.png`, fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  it('renders article names as text, fits a phone, and cannot buy without a key', async () => {
    const page = await open(readOnly.url, { width: 390, height: 844 });
    await page.click('#random');
    await page.waitForSelector('#recs li.card');
    // A customer who bought the article named like markup: it shows as text, injects nothing.
    const buyer = await waitFor('a buyer of the markup-named article', async () => {
      for (let i = 0; i < 40; i++) {
        const id = `cust${String(i).padStart(6, '0')}`;
        // Among the 20 latest purchases: those the page lists.
        const items = await redis.zrevrange(keys.customer(id).recent, 0, 19);
        if (items.some((m) => m.split('|')[2] === '0700000002')) return id;
      }
      return undefined;
    });
    await page.goto(`${readOnly.url}/demo#customer=${buyer}`);
    await page.waitForSelector('#recent li[data-article="0700000002"]');
    expect(await page.locator('#injected').count()).toBe(0);
    expect(await page.textContent('#recent li[data-article="0700000002"]')).toContain(MARKUP_NAME);

    const width = await page.evaluate<number>('document.documentElement.scrollWidth');
    expect(width).toBeLessThanOrEqual(390);
    await page.locator('#recs li.card button.card-open').first().click();
    await page.waitForSelector('#buy-box:not([hidden])');
    expect(await page.isDisabled('#buy')).toBe(true);
    expect(await page.textContent('#buy-status')).toContain('DEMO_PAGE_KEY');
    await page.screenshot({ path: `${REPORTS}/phone.png`, fullPage: true });
    expect(statSync(`${REPORTS}/phone.png`).size).toBeGreaterThan(5_000);
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);
});
