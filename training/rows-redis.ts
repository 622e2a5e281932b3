/**
 * Where the training rows are rebuilt (`npm run train`, `npm run eval`): the Redis of
 * `TRAINING_REDIS_URL` when it is set, else the live one.
 *
 * The rows replay the whole purchase history into a namespace of their own, about as large as the
 * live state while a cycle runs (docs/training.md). A live Redis sized for its own state
 * (`maxmemory`, `noeviction`: README) would fill up, and the live processors' writes would then be
 * refused until the cycle ends. A Redis of the rows' own keeps the two apart; the registry, the
 * active model and the live co-buyer lists stay in the live Redis.
 */
import type { Config } from '../common/config.ts';
import { RecError } from '../common/errors.ts';
import { redact } from '../common/redact.ts';
import { createRedis, type RedisClient } from '../common/redis.ts';

/**
 * A connected client of the rows' own Redis (one Redis, not a cluster; the caller disconnects
 * it), or undefined when the rows are rebuilt in the live Redis. Refused, with what to do, before
 * anything is rebuilt: with `EMBEDDINGS=on`, whose rows would read the article vectors from the
 * Redis they are rebuilt in, where `npm run embed` did not write them (`REC_ERR_CONFIG`); and when
 * the URL does not answer (`REC_ERR_UNAVAILABLE`, the URL's password masked).
 */
export async function openTrainingRedis(
  config: Pick<Config, 'trainingRedisUrl' | 'embeddings'>,
): Promise<RedisClient | undefined> {
  const url = config.trainingRedisUrl;
  if (url === undefined) return undefined;
  if (config.embeddings.enabled) {
    throw new RecError(
      'REC_ERR_CONFIG',
      'TRAINING_REDIS_URL with EMBEDDINGS=on: the rows would read the article vectors from the ' +
        'training Redis, where `npm run embed` does not write them; unset TRAINING_REDIS_URL to ' +
        'rebuild the rows in the live Redis, or EMBEDDINGS to train without the embedding features',
    );
  }
  const client = createRedis({ redisUrl: url }, { lazyConnect: true });
  const quiet = () => undefined; // the refusal below says it; ioredis would print it too
  client.on('error', quiet);
  try {
    await client.connect();
    return client;
  } catch (err) {
    client.disconnect();
    throw new RecError(
      'REC_ERR_UNAVAILABLE',
      `TRAINING_REDIS_URL ${redact(url)} does not answer (${err instanceof Error ? err.message : String(err)}): ` +
        'start that Redis, or unset TRAINING_REDIS_URL to rebuild the rows in the live Redis',
    );
  } finally {
    client.off('error', quiet);
  }
}
