/**
 * `npm run serve`: the recommendation API. Reads the environment (common/config.ts plus the
 * SERVING_* settings below), serves until SIGINT / SIGTERM.
 *
 * SERVING_MAX_CANDIDATES=N (default: the app's defaults, 150 with quotas repurchase 100,
 * siblings 40, co-purchase 30, segment 30, similar 30 with EMBEDDINGS=on, global 30) caps the candidates per
 * recommendation at N and scales the quotas by the same shares of N (global trending: N). Global
 * trending fills whatever the personal sources leave, so a request holds exactly N candidates whenever the store has N to offer (a cold
 * customer gets them from global trending). The serving benchmark runs with N = 100.
 *
 * SERVING_ALLOW_FIXTURE_MODEL=true (default false) lets this instance serve an untrained fixture
 * ranker (`npm run model -- fixture`) when it is the active model. For benchmarks and tests only:
 * without it a fixture is refused and the API ranks with the heuristic `heuristic-v2` (or keeps
 * the model it had), saying so in every answer.
 *
 * SERVING_MAX_IN_FLIGHT=N (default 4 × SCORER_WORKERS) is admission control: the most
 * recommendation requests this instance answers at a time; one more gets 503 REC_ERR_UNAVAILABLE
 * with `Retry-After` at once (serving/admission.ts). 0 turns the limit off.
 */
import { z } from 'zod';
import { loadConfig } from '../common/config.ts';
import { keySpace } from '../features/keys.ts';
import { createLogger } from '../common/logger.ts';
import type { ServingConfig } from './app.ts';
import { defaultCandidateConfig, scaledCandidateConfig } from './candidates/index.ts';
import { startServing } from './server.ts';

const env = z
  .object({
    SERVING_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    SERVING_HOST: z.string().default('0.0.0.0'),
    SCORER_WORKERS: z.coerce.number().int().min(1).max(16).default(2),
    SERVING_MAX_CANDIDATES: z.coerce.number().int().min(1).max(1000).optional(),
    SERVING_MAX_IN_FLIGHT: z.coerce.number().int().min(0).max(100_000).optional(),
    SERVING_ALLOW_FIXTURE_MODEL: z
      .enum(['true', 'false', '1', '0'], {
        error:
          'SERVING_ALLOW_FIXTURE_MODEL must be true or false (true: benchmarks and tests only)',
      })
      .default('false')
      .transform((v) => v === 'true' || v === '1'),
  })
  .parse(process.env);

/** Candidate settings: the defaults, or scaled to SERVING_MAX_CANDIDATES (module comment). */
function candidateConfig(max: number | undefined, embeddings: boolean): Partial<ServingConfig> {
  const { maxCandidates, quotas } =
    max === undefined ? defaultCandidateConfig(embeddings) : scaledCandidateConfig(max, embeddings);
  return { maxCandidates, quotas, embeddings };
}

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, 'serving');
  const handle = await startServing({
    redisUrl: config.redisUrl,
    keys: keySpace(config.redisNamespace),
    logger,
    port: env.SERVING_PORT,
    host: env.SERVING_HOST,
    workers: env.SCORER_WORKERS,
    allowFixtureModel: env.SERVING_ALLOW_FIXTURE_MODEL,
    config: {
      ...candidateConfig(env.SERVING_MAX_CANDIDATES, config.embeddings.enabled),
      ...(env.SERVING_MAX_IN_FLIGHT === undefined
        ? {}
        : { maxInFlight: env.SERVING_MAX_IN_FLIGHT }),
      // Where `npm run embed` wrote the article vectors (default: the serving namespace).
      ...(config.embeddings.namespace ? { embeddingNamespace: config.embeddings.namespace } : {}),
    },
  });
  const version = handle.live.version;
  console.log(
    `serving on ${handle.url} ${version === null ? `— ${handle.live.noModel().message}` : `(model: ${version})`}`,
  );
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
