/**
 * `npm run embed -- [--all] [--updated-since <ISO date>] [--sold-since <ISO date>] [--neighbours 20]
 * [--no-progress]`:
 * embed the new and changed articles of the store (default scope: sold, embedded before, or
 * updated since the date; `--all`: the whole catalogue) and rebuild the similar-items index.
 * Needs the model (`npm run embeddings:model`) and the processors' article metadata in Redis.
 */
import { parseArgs } from 'node:util';
import { createRedis } from '../common/redis.ts';
import { loadConfig } from '../common/config.ts';
import { keySpace } from '../features/keys.ts';
import { articleEmbeddingKeys, describeEmbedding, runEmbedding } from './job.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      all: { type: 'boolean', default: false },
      'updated-since': { type: 'string' },
      'sold-since': { type: 'string' },
      neighbours: { type: 'string', default: '20' },
      'batch-size': { type: 'string', default: '64' },
      'no-progress': { type: 'boolean', default: false },
    },
  });
  const since = values['updated-since'];
  const updatedSince = since === undefined ? undefined : Date.parse(since);
  if (updatedSince !== undefined && Number.isNaN(updatedSince)) {
    throw new Error(`--updated-since: not a date: ${since ?? ''}`);
  }
  const soldArg = values['sold-since'];
  const soldSince = soldArg === undefined ? undefined : Date.parse(soldArg);
  if (soldSince !== undefined && Number.isNaN(soldSince)) {
    throw new Error(`--sold-since: not a date: ${soldArg ?? ''}`);
  }
  const neighbours = Number(values.neighbours);
  const batchSize = Number(values['batch-size']);
  if (!Number.isInteger(neighbours) || neighbours < 1 || neighbours > 200) {
    throw new Error('--neighbours must be an integer from 1 to 200');
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error('--batch-size must be a positive integer');
  }
  const config = loadConfig();
  const redis = createRedis(config, { maxRetriesPerRequest: null });
  try {
    const keys = keySpace(config.redisNamespace);
    const report = await runEmbedding(redis, keys, articleEmbeddingKeys(config), {
      root: config.embeddings.modelDir,
      remoteModel: config.embeddings.remoteModel,
      all: values.all,
      neighbours,
      batchSize,
      progress: !values['no-progress'],
      ...(updatedSince === undefined ? {} : { updatedSince }),
      ...(soldSince === undefined ? {} : { soldSince }),
    });
    for (const line of describeEmbedding(report)) console.log(line);
    if (config.embeddings.enabled && report.embed.embedded > 0) {
      console.log('  EMBEDDINGS=on: run npm run taste:rebuild so that taste vectors include them');
    }
  } finally {
    redis.disconnect();
  }
}

main().catch((err: unknown) => {
  console.error(`embed failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
