/**
 * `npm run taste:rebuild [-- --no-progress]`: rebuild the taste vectors of the deployment's
 * namespace from the purchases topic (see taste-rebuild.ts), e.g. after `npm run embed` embedded
 * articles that had already been bought. Article vectors are read from `EMBEDDINGS_NAMESPACE`,
 * else `REDIS_NAMESPACE`, else `rec`; the event-id guard's horizon is the processors'
 * `PROCESSOR_DEDUP_HORIZON_DAYS` (default 30).
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { createRedis } from '../common/redis.ts';
import { connectStreams } from '../streams/bootstrap.ts';
import { loadConfig } from '../common/config.ts';
import { articleEmbeddingKeys } from '../embeddings/job.ts';
import { keySpace } from '../features/keys.ts';
import { createLogger } from '../common/logger.ts';
import { rebuildTaste } from './taste-rebuild.ts';

const env = z
  .object({ PROCESSOR_DEDUP_HORIZON_DAYS: z.coerce.number().positive().default(30) })
  .parse(process.env);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { 'no-progress': { type: 'boolean', default: false } } });
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'taste');
  const { kafka, topics, codecs } = await connectStreams(config, 'rec-taste-rebuild', logger);
  const redis = createRedis(config, { maxRetriesPerRequest: null });
  try {
    const keys = keySpace(config.redisNamespace);
    const r = await rebuildTaste(
      {
        kafka,
        redis,
        codecs,
        topics,
        keys,
        logger,
        dedupHorizonMs: env.PROCESSOR_DEDUP_HORIZON_DAYS * 86_400_000,
      },
      articleEmbeddingKeys(config),
      { progress: !values['no-progress'] },
    );
    console.log(
      `taste:rebuild: ${r.applied} purchases applied (${r.withoutVector} without an article ` +
        `vector), ${r.deleted} old keys deleted, in ${(r.ms / 1000).toFixed(1)} s`,
    );
  } finally {
    redis.disconnect();
  }
}

main().catch((err: unknown) => {
  console.error(`taste:rebuild failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
