/**
 * `npm run serve`: the recommendation API. Reads the environment (streams/config.ts plus the
 * SERVING_* settings below), serves until SIGINT / SIGTERM.
 */
import { z } from 'zod';
import { loadConfig } from '../streams/config.ts';
import { keySpace } from '../streams/features/keys.ts';
import { createLogger } from '../streams/logger.ts';
import { startServing } from './server.ts';

const env = z
  .object({
    SERVING_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    SERVING_HOST: z.string().default('0.0.0.0'),
    SCORER_WORKERS: z.coerce.number().int().min(1).max(16).default(2),
    REDIS_NAMESPACE: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/)
      .default('rec'),
  })
  .parse(process.env);

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, 'serving');
  const handle = await startServing({
    redisUrl: config.redisUrl,
    keys: keySpace(env.REDIS_NAMESPACE),
    logger,
    port: env.SERVING_PORT,
    host: env.SERVING_HOST,
    workers: env.SCORER_WORKERS,
  });
  console.log(`serving on ${handle.url} (model: ${handle.live.version ?? 'heuristic'})`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void handle.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(
    `serving failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
  process.exit(1);
});
