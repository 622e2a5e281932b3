/**
 * `npm run co-buyers [-- --now <ISO time>]`: build the co-buyer lists of the deployment's
 * namespace (`REDIS_NAMESPACE`, default `rec`) from its customers' state (see co-buyers.ts). Each
 * training cycle builds them too; this is for a deployment that serves a model using them before
 * its first cycle, or after loading data. "now" defaults to just after the latest purchase the
 * store holds.
 */
import { parseArgs } from 'node:util';
import { createRedis } from '../common/redis.ts';
import { loadConfig } from '../common/config.ts';
import { keySpace } from '../features/keys.ts';
import { buildCoBuyers } from './co-buyers.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { now: { type: 'string' } } });
  let now: number | undefined;
  if (values.now !== undefined) {
    now = Date.parse(values.now);
    if (Number.isNaN(now)) throw new Error(`--now: not a time: "${values.now}"`);
  }
  const config = loadConfig();
  const redis = createRedis(config, { maxRetriesPerRequest: null });
  try {
    const keys = keySpace(config.redisNamespace);
    const r = await buildCoBuyers(redis, keys, now === undefined ? {} : { now });
    console.log(
      `co-buyers: ${r.written} articles given neighbours (of ${r.articles} bought by ` +
        `${r.customers} customers within the window before ${new Date(r.now).toISOString()}), ` +
        `${r.removed} old lists removed, in ${(r.ms / 1000).toFixed(1)} s (read ` +
        `${(r.steps.readMs / 1000).toFixed(1)} s, compute ${(r.steps.computeMs / 1000).toFixed(1)} s, ` +
        `write ${(r.steps.writeMs / 1000).toFixed(1)} s)`,
    );
  } finally {
    redis.disconnect();
  }
}

main().catch((err: unknown) => {
  console.error(`co-buyers failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
