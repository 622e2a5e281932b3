/**
 * Customers as the store knows them (for the demo page and other storefront tools):
 *  - `GET /v1/customers?prefix=&k=`: known customers (with purchases in the store) whose id starts
 *    with `prefix`, or `k` random known ones without it; found by a SCAN of the customer state keys
 *    (`KeySpace.customerStates`, never a KEYS) bounded in calls and time;
 *  - `GET /v1/customers/{customerId}`: what the store holds of a customer — counts, channels, age,
 *    their trending segments, and their latest purchases with the articles' names, colours and
 *    sections. An unknown customer is answered 200 with `known: false` (a new customer).
 */
import { randomInt } from 'node:crypto';
import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import type { Redis } from 'ioredis';
import { scanTargets, type RedisClient } from '../../common/redis.ts';
import { ageBucket, type KeySpace } from '../../features/keys.ts';
import { segmentValue } from '../../features/segments.ts';
import { readArticles, readCustomers, type CustomerState } from '../../features/state.ts';
import {
  CustomerParams,
  CustomerResponse,
  CustomerSearchQuery,
  CustomerSearchResponse,
  type CustomerResponseBody,
} from '../api-schemas.ts';
import { storeRead } from '../http-errors.ts';
import { articleDetails } from './article-details.ts';
import { ERROR_RESPONSES, tookMs, type AppEnv, type RouteContext } from './context.ts';

/**
 * Keys one SCAN call looks at, and what bounds a search's cost: at most this many calls (a million
 * keys) and this much time (the rest of the key space is left unsearched, `complete: false`). A
 * search costs O(key space): fine for the demo page and a support tool, not for a storefront's
 * search box, which needs an index of customer ids.
 */
const SCAN_COUNT = 2_000;
const MAX_SCAN_CALLS = 500;
const SCAN_BUDGET_MS = 2_000;
/** Latest purchases a customer answer lists. */
const RECENT_PURCHASES = 20;

const searchRoute = createRoute({
  method: 'get',
  path: '/v1/customers',
  summary: 'Known customers by id prefix, or random known customers',
  request: { query: CustomerSearchQuery },
  responses: {
    200: {
      description: 'Customer ids',
      content: { 'application/json': { schema: CustomerSearchResponse } },
    },
    ...ERROR_RESPONSES,
  },
});

const customerRoute = createRoute({
  method: 'get',
  path: '/v1/customers/{customerId}',
  summary: "A customer's purchases and segments as the store holds them",
  request: { params: CustomerParams },
  responses: {
    200: {
      description: 'The customer (known: false for one the store has no purchases of)',
      content: { 'application/json': { schema: CustomerResponse } },
    },
    ...ERROR_RESPONSES,
  },
});

export function customerRoutes(ctx: RouteContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  const { redis, keys } = ctx;

  app.openapi(searchRoute, async (c) => {
    const t0 = performance.now();
    const { prefix, k } = c.req.valid('query');
    const found = await storeRead('customer search', () =>
      prefix === undefined
        ? randomCustomers(redis, keys, k)
        : customersByPrefix(redis, keys, prefix, k),
    );
    return c.json(
      {
        prefix: prefix ?? null,
        customers: found.ids,
        complete: found.complete,
        took_ms: tookMs(t0),
      },
      200,
    );
  });

  app.openapi(customerRoute, async (c) => {
    const t0 = performance.now();
    const { customerId } = c.req.valid('param');
    const [customer] = await storeRead('customer', () => readCustomers(redis, keys, [customerId]));
    if (customer === undefined) throw new Error('readCustomers answered no customer');
    const recent = customer.recent.slice(0, RECENT_PURCHASES);
    const articles = await storeRead('articles', () =>
      readArticles(
        redis,
        keys,
        recent.map((r) => r.articleId),
      ),
    );
    const body: CustomerResponseBody = {
      customer_id: customerId,
      known: customer.n > 0,
      age: ageOf(customer),
      purchases: customer.n,
      first: customer.first,
      last: customer.last,
      channels: customer.channels,
      segments: segmentsOf(
        customer,
        articles.map((a) => a.meta.index_group_name ?? null),
      ),
      recent: recent.map((r, i) => ({
        ...articleDetails(r.articleId, articles[i]?.meta ?? {}),
        event_id: r.eventId,
        time: r.time,
        price: r.price,
        channel: r.channel,
        quantity: r.quantity,
      })),
      took_ms: tookMs(t0),
    };
    return c.json(body, 200);
  });
  return app;
}

function ageOf(c: CustomerState): number | null {
  const age = c.meta.age === undefined ? NaN : Number(c.meta.age);
  return Number.isFinite(age) ? age : null;
}

/**
 * A customer's trending segments in `GET /v1/trending`'s syntax: their most used sales channel,
 * then their age bucket with each index group of their latest purchases (most recent first).
 */
function segmentsOf(c: CustomerState, indexGroups: readonly (string | null)[]): string[] {
  const out: string[] = [];
  const channel = Object.entries(c.channels).sort((a, b) => b[1] - a[1])[0]?.[0];
  if (channel !== undefined) out.push(`channel:${channel}`);
  const bucket = ageBucket(ageOf(c));
  const seen = new Set<string>();
  for (const g of indexGroups) {
    const value = segmentValue('age_index', bucket, g);
    if (seen.has(value)) continue;
    seen.add(value);
    out.push(`age_index:${value}`);
  }
  return out;
}

interface Found {
  readonly ids: string[];
  /** Whether the SCAN went through the whole key space. */
  readonly complete: boolean;
}

/** Up to `k` known customers whose id starts with `prefix` (a bounded SCAN, see the header). */
async function customersByPrefix(
  redis: RedisClient,
  keys: KeySpace,
  prefix: string,
  k: number,
): Promise<Found> {
  // The prefix holds only A-Z a-z 0-9 _ . - (CustomerSearchQuery): no glob characters.
  const match = keys.customerStates.replace('{u:*}', `{u:${prefix}*}`);
  const ids = new Set<string>();
  let cursor = '0';
  let calls = 0;
  const deadline = performance.now() + SCAN_BUDGET_MS;
  // On a Redis Cluster each master in turn, within the one budget.
  for (const node of scanTargets(redis)) {
    cursor = '0';
    for (; calls < MAX_SCAN_CALLS && performance.now() < deadline; calls++) {
      const [next, found] = await node.scan(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT);
      for (const key of found) {
        const id = keys.customerOf(key);
        if (id !== null) ids.add(id);
      }
      cursor = next;
      if (cursor === '0' || ids.size >= k) break;
    }
    if (cursor !== '0' || ids.size >= k) break;
  }
  return { ids: [...ids].sort().slice(0, k), complete: cursor === '0' };
}

/**
 * Up to `k` random known customers: SCANs from random cursors (Redis masks any cursor to its
 * table, so each starts at a random bucket), then from the start when the store is small.
 */
async function randomCustomers(redis: RedisClient, keys: KeySpace, k: number): Promise<Found> {
  // On a Redis Cluster: one master picked at random (the search is a sample).
  const nodes = scanTargets(redis);
  const node = nodes[randomInt(0, nodes.length)] ?? nodes[0];
  if (node === undefined) return { ids: [], complete: true };
  return randomCustomersOf(node, keys, k);
}

async function randomCustomersOf(redis: Redis, keys: KeySpace, k: number): Promise<Found> {
  const ids = new Set<string>();
  let cursor = String(randomInt(0, 2 ** 31));
  let wrapped = false;
  const deadline = performance.now() + SCAN_BUDGET_MS;
  for (
    let calls = 0;
    calls < MAX_SCAN_CALLS && ids.size < k && performance.now() < deadline;
    calls++
  ) {
    const [next, found] = await redis.scan(
      cursor,
      'MATCH',
      keys.customerStates,
      'COUNT',
      SCAN_COUNT,
    );
    for (const key of found) {
      const id = keys.customerOf(key);
      if (id !== null && ids.size < k) ids.add(id);
    }
    if (next === '0') {
      // The end of the table: once more from its start (what the random cursor skipped).
      if (wrapped) break;
      wrapped = true;
    }
    cursor = next;
  }
  return { ids: [...ids], complete: false };
}
