/**
 * Typed topic descriptors: name, event contract, partitions and broker configs, DLQ name and
 * schema subject (TopicNameStrategy: `<topic>-value`). Purchases are keyed by customer_id so one
 * customer's events stay ordered; articles and customers are compacted and keyed by id.
 */
import {
  articleContract,
  customerContract,
  purchaseContract,
  servedContract,
  type Article,
  type Customer,
  type EventContract,
  type Purchase,
  type Served,
} from '../schemas/events.ts';

export interface TopicDescriptor<T> {
  readonly name: string;
  readonly contract: EventContract<T>;
  readonly partitions: number;
  /** Copies of each partition (`KAFKA_REPLICATION_FACTOR`; its DLQ's too). */
  readonly replicationFactor: number;
  /** Broker-side topic configs. */
  readonly configs: Readonly<Record<string, string>>;
  /** Value subject under TopicNameStrategy. */
  readonly subject: string;
  /** Dead-letter topic for records of this topic that fail to decode or validate. */
  readonly dlq: string;
}

export interface Topics {
  readonly purchases: TopicDescriptor<Purchase>;
  readonly articles: TopicDescriptor<Article>;
  readonly customers: TopicDescriptor<Customer>;
  /** What `/v1/recommendations` answered (served-list logging), keyed by customer_id. */
  readonly served: TopicDescriptor<Served>;
}

/**
 * Event time lies years in the past for historical loads, and time-based retention would delete
 * such segments at once; training and analysts replay from the beginning, so purchases are kept.
 */
const KEEP_FOREVER = { 'retention.ms': '-1', 'retention.bytes': '-1' } as const;
const COMPACTED = { 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '60000' } as const;
const EVENT_TIME = { 'message.timestamp.type': 'CreateTime' } as const;

export const dlqTopicName = (topic: string): string => `${topic}.dlq`;
export const valueSubject = (topic: string): string => `${topic}-value`;

/**
 * The topic configs of a replication factor: from 3 copies up a write with acks=all needs 2 of
 * them (`min.insync.replicas=2`), so one broker may fail without losing an acknowledged record or
 * stopping the writers; below 3 the broker default (1) stays.
 */
export function replicationConfigs(replicationFactor: number): Record<string, string> {
  return replicationFactor >= 3 ? { 'min.insync.replicas': '2' } : {};
}

function descriptor<T>(
  name: string,
  contract: EventContract<T>,
  partitions: number,
  replicationFactor: number,
  configs: Record<string, string>,
): TopicDescriptor<T> {
  return Object.freeze({
    name,
    contract,
    partitions,
    replicationFactor,
    configs: Object.freeze({ ...configs, ...replicationConfigs(replicationFactor) }),
    subject: valueSubject(name),
    dlq: dlqTopicName(name),
  });
}

/**
 * The project's topics, optionally behind a prefix (tests use a random one per suite), each with
 * `replicationFactor` copies (config `kafkaReplicationFactor`).
 */
export function topics(prefix = '', purchasePartitions = 3, replicationFactor = 1): Topics {
  const rf = replicationFactor;
  return Object.freeze({
    purchases: descriptor(`${prefix}purchases`, purchaseContract, purchasePartitions, rf, {
      ...KEEP_FOREVER,
      ...EVENT_TIME,
    }),
    articles: descriptor(`${prefix}articles`, articleContract, 1, rf, {
      ...COMPACTED,
      ...EVENT_TIME,
    }),
    customers: descriptor(`${prefix}customers`, customerContract, 1, rf, {
      ...COMPACTED,
      ...EVENT_TIME,
    }),
    served: descriptor(`${prefix}recommendations.served`, servedContract, purchasePartitions, rf, {
      ...KEEP_FOREVER,
      ...EVENT_TIME,
    }),
  });
}

export function allTopics(t: Topics): TopicDescriptor<unknown>[] {
  return [t.purchases, t.articles, t.customers, t.served] as TopicDescriptor<unknown>[];
}
