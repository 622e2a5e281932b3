/** What the processors of one deployment are given: clients, codecs, key space, logger, metrics. */
import type { Kafka, Producer } from 'kafkajs';
import type { RedisClient } from '../common/redis.ts';
import type { EmbeddingsSwitch } from '../common/config.ts';
import type { Logger } from '../common/logger.ts';
import type { KeySpace } from '../features/keys.ts';
import type { Codecs } from '../streams/bootstrap.ts';
import type { Topics } from '../streams/topics.ts';
import type { ProcessorMetrics } from './metrics.ts';
import type { PurchaseProcessorOptions } from './purchases.ts';

export interface ProcessorDeps {
  kafka: Kafka;
  redis: RedisClient;
  codecs: Codecs;
  topics: Topics;
  keys: KeySpace;
  logger: Logger;
  metrics: ProcessorMetrics;
  dlqProducer: Producer;
  /** Consumer group prefix; groups are `<prefix>.<topic>`. */
  groupPrefix: string;
  /** The purchases processor's options; `dedupHorizonMs` is the taste processor's too. */
  options?: Partial<PurchaseProcessorOptions>;
  /** Group session timeout (ms) of the consumers (default 30 s). */
  sessionTimeoutMs?: number;
  /**
   * How often (ms) idle partitions are checked against the position store (default 5 000; 0:
   * never; `ConsumerRunnerOptions.positionsCheckMs`).
   */
  positionsCheckMs?: number;
  /** Wait for metadata to catch up before consuming purchases (default true). */
  metadataFirst?: boolean;
  /**
   * How far (ms) an event time may be ahead of the processing clock before the purchases groups
   * refuse it (default DEFAULT_MAX_EVENT_SKEW_MS, a day).
   */
  maxEventSkewMs?: number;
  /** The processing clock (ms), for tests; default Date.now. */
  clock?: () => number;
  /** Embeddings on: the taste consumer group too (config `embeddings`; default off). */
  embeddings?: EmbeddingsSwitch;
}
