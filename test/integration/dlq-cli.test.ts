/**
 * `npm run dlq` against the real stack: purchases are published under a random prefix and a real
 * consumer runner (streams/consumer.ts) dead-letters some of them (its handler rejects chosen
 * events with a code, the runner itself refuses an undecodable record). The CLI, run as a child
 * process, lists them with their codes, reasons and decoded values; `--code` and `--limit` select;
 * `--redrive` re-publishes exactly the selected ones to the source topic (original key, value
 * bytes, partition and timestamp, `dlq.*` headers replaced by `dlq.redriven.*`), a second redrive
 * sends nothing, and listing afterwards still shows every dead letter. Also: an unknown topic
 * is a usage error naming the known ones.
 */
import { Partitioners, type KafkaMessage, type Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecError } from '../../common/errors.ts';
import type { Purchase } from '../../schemas/events.ts';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { DLQ_HEADERS, runConsumer, type Rejection } from '../../streams/consumer.ts';
import { REDRIVE_HEADERS } from '../../streams/dlq.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { runTsCli, stackContext, waitFor, type StackContext } from '../helpers.ts';

const T0 = Date.UTC(2020, 8, 1);
const HOUR = 3_600_000;

function purchase(i: number): Purchase {
  return {
    event_id: `ev-${i}`,
    customer_id: `c${i % 5}`,
    article_id: `0${100000000 + (i % 11)}`,
    price: 0.01 * (1 + (i % 4)),
    sales_channel_id: 1 + (i % 2),
    quantity: 1,
    event_time: T0 + i * HOUR,
  };
}

const EVENTS = Array.from({ length: 12 }, (_, i) => purchase(i));
/** What the handler rejects, by event id. */
const REJECT: Record<
  string,
  { code: 'REC_ERR_FUTURE_EVENT' | 'REC_ERR_KEY_MISMATCH'; why: string }
> = {
  'ev-2': { code: 'REC_ERR_FUTURE_EVENT', why: 'dated after now + skew (ev-2)' },
  'ev-5': { code: 'REC_ERR_FUTURE_EVENT', why: 'dated after now + skew (ev-5)' },
  'ev-9': { code: 'REC_ERR_KEY_MISMATCH', why: 'key is not the customer (ev-9)' },
};
/**
 * Written to partition 2 under a key the default partitioner sends elsewhere: a redrive must use
 * the source partition, not the key's.
 */
const JUNK_PARTITION = 2;
const JUNK = {
  key: junkKey(),
  value: Buffer.from('not avro at all'),
  partition: JUNK_PARTITION,
};

function junkKey(): string {
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata = [0, 1, 2].map((partitionId) => ({
    partitionId,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));
  for (let i = 0; ; i++) {
    const key = `c-junk-${i}`;
    const p = partitioner({ topic: 'any', partitionMetadata, message: { key, value: null } });
    if (p !== JUNK_PARTITION) return key;
  }
}
const DEAD = Object.keys(REJECT).length + 1;

interface RecordLine {
  dlq_partition: number;
  dlq_offset: string;
  source_topic: string;
  source_partition: number;
  source_offset: string;
  source_timestamp: string | null;
  failed_at: string;
  code: string;
  reason: string;
  group: string;
  key: string | null;
  value_decoded: boolean;
  value: string;
  value_bytes: number;
}
interface SummaryLine {
  summary: true;
  dead_letters: number;
  by_code: Record<string, number>;
  matching: number;
  listed: number;
  already_redriven?: number;
  redriven: number | null;
}

const runCli = (args: string[], env: Record<string, string>) =>
  runTsCli('streams/dlq-cli.ts', args, env);

const header = (m: KafkaMessage, name: string) => m.headers?.[name]?.toString();

describe('npm run dlq', () => {
  let ctx: StackContext;
  let codecs: Codecs;
  let producer: Producer;
  /** The source records as first published, by `partition:offset`. */
  let originals: Map<string, KafkaMessage>;
  const env = () => ({ TOPIC_PREFIX: ctx.prefix });

  async function cli(args: string[]) {
    const r = await runCli(args, env());
    expect(r.stderr, r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout;
  }

  async function cliJson(args: string[]): Promise<{ records: RecordLine[]; summary: SummaryLine }> {
    const lines = (await cli([...args, '--json']))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as RecordLine | SummaryLine);
    const summary = lines.pop() as SummaryLine;
    expect(summary.summary).toBe(true);
    return { records: lines as RecordLine[], summary };
  }

  /** Every record of `topic` up to its end offsets now, by `partition:offset`. */
  async function readRaw(topic: string): Promise<Map<string, KafkaMessage>> {
    const admin = ctx.kafka.admin();
    await admin.connect();
    const ends = await admin.fetchTopicOffsets(topic);
    await admin.disconnect();
    const total = ends.reduce((n, e) => n + Number(e.high) - Number(e.low), 0);
    const seen = new Map<string, KafkaMessage>();
    const consumer = ctx.kafka.consumer({
      groupId: `${ctx.prefix}raw-${Date.now()}`,
      maxWaitTimeInMs: 200,
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ partition, message }) => {
        seen.set(`${partition}:${message.offset}`, message);
        return Promise.resolve();
      },
    });
    await waitFor(`${total} records on ${topic}`, () => seen.size >= total);
    await consumer.disconnect();
    return seen;
  }

  /** The records of the source topic that a redrive wrote. */
  async function redriven(): Promise<KafkaMessage[]> {
    const all = await readRaw(ctx.topics.purchases.name);
    return [...all.values()].filter((m) => header(m, REDRIVE_HEADERS.from) !== undefined);
  }

  beforeAll(async () => {
    ctx = stackContext('dlqcli', 3);
    ({ codecs } = await bootstrap(ctx));
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
    const purchases = new EventProducer(producer, ctx.topics.purchases, codecs.purchases);
    await purchases.send(EVENTS.slice(0, 6));
    await producer.send({ topic: ctx.topics.purchases.name, messages: [JUNK] });
    await purchases.send(EVENTS.slice(6));
    originals = await readRaw(ctx.topics.purchases.name);

    // A real consumer runner dead-letters them: the handler rejects the chosen events.
    let handled = 0;
    const runner = await runConsumer<Purchase>({
      kafka: ctx.kafka,
      groupId: `${ctx.prefix}processor`,
      topic: ctx.topics.purchases,
      codec: codecs.purchases,
      dlqProducer: producer,
      logger: ctx.logger,
      handler: (records) => {
        handled += records.length;
        const rejected: Rejection<Purchase>[] = records.flatMap((record) => {
          const r = REJECT[record.value.event_id];
          return r ? [{ record, reason: new RecError(r.code, r.why) }] : [];
        });
        return Promise.resolve({ rejected });
      },
    });
    const admin = ctx.kafka.admin();
    await admin.connect();
    try {
      await waitFor('every record handled or dead-lettered', async () => {
        const [dlq] = await admin.fetchTopicOffsets(ctx.topics.purchases.dlq);
        return handled >= EVENTS.length && Number(dlq?.high) >= DEAD;
      });
    } finally {
      await admin.disconnect();
      await runner.stop();
    }
  });

  afterAll(async () => {
    await producer.disconnect();
    await ctx.cleanup();
  });

  it('lists every dead letter with its source, code, reason, group, key and value', async () => {
    const { records, summary } = await cliJson(['--topic', 'purchases']);
    expect(records).toHaveLength(DEAD);
    expect(summary).toMatchObject({
      dead_letters: DEAD,
      matching: DEAD,
      listed: DEAD,
      redriven: null,
      by_code: { REC_ERR_FUTURE_EVENT: 2, REC_ERR_KEY_MISMATCH: 1, REC_ERR_DECODE: 1 },
    });
    for (const r of records) {
      const original = originals.get(`${r.source_partition}:${r.source_offset}`);
      expect(original, `source ${r.source_partition}:${r.source_offset}`).toBeDefined();
      expect(r.source_topic).toBe(ctx.topics.purchases.name);
      expect(r.group).toBe(`${ctx.prefix}processor`);
      expect(r.key).toBe(original?.key?.toString());
      expect(r.value_bytes).toBe(original?.value?.length);
      expect(Date.parse(r.failed_at)).toBeGreaterThan(Date.now() - 10 * 60_000);
      expect(r.source_timestamp).toBe(new Date(Number(original?.timestamp)).toISOString());
      if (r.code === 'REC_ERR_DECODE') {
        expect(r.value_decoded).toBe(false);
        expect(r.key).toBe(JUNK.key);
        expect(r.source_partition).toBe(JUNK_PARTITION);
        expect(r.value_bytes).toBe(JUNK.value.length);
        expect(r.reason).toMatch(/Confluent Avro wire format/);
      } else {
        expect(r.value_decoded).toBe(true);
        const event = (JSON.parse(r.value) as Purchase).event_id;
        expect(REJECT[event]).toMatchObject({ code: r.code, why: r.reason });
      }
    }

    // The readable form says the same, the undecodable value by its size.
    const text = await cli(['--topic', `${ctx.prefix}purchases`]);
    expect(text).toMatch(/REC_ERR_FUTURE_EVENT\s+2/);
    expect(text).toMatch(/REC_ERR_KEY_MISMATCH\s+1/);
    expect(text).toMatch(/REC_ERR_DECODE\s+1/);
    expect(text).toContain('key is not the customer (ev-9)');
    expect(text).toContain(`does not decode, ${JUNK.value.length} bytes`);
    expect(text).toContain('"event_id":"ev-5"');
  });

  it('selects by --code and caps with --limit', async () => {
    const future = await cliJson(['--topic', 'purchases', '--code', 'REC_ERR_FUTURE_EVENT']);
    expect(future.records.map((r) => r.code)).toEqual([
      'REC_ERR_FUTURE_EVENT',
      'REC_ERR_FUTURE_EVENT',
    ]);
    expect(future.summary).toMatchObject({ dead_letters: DEAD, matching: 2, listed: 2 });
    const one = await cliJson(['--topic', 'purchases', '--limit', '1']);
    expect(one.records).toHaveLength(1);
    expect(one.summary.listed).toBe(1);
  });

  it('redrives exactly the selected dead letters, once, with the original bytes', async () => {
    const first = await cliJson([
      '--topic',
      'purchases',
      '--code',
      'REC_ERR_FUTURE_EVENT',
      '--redrive',
    ]);
    expect(first.summary.redriven).toBe(2);
    let sent = await redriven();
    expect(sent).toHaveLength(2);
    const dlq = ctx.topics.purchases.dlq;
    for (const r of first.records) {
      const original = originals.get(`${r.source_partition}:${r.source_offset}`) as KafkaMessage;
      const copy = sent.find(
        (m) => header(m, REDRIVE_HEADERS.from) === `${dlq}:${r.dlq_partition}:${r.dlq_offset}`,
      );
      expect(copy, `redriven copy of ${r.dlq_offset}`).toBeDefined();
      expect(copy?.key?.equals(original.key as Buffer)).toBe(true);
      expect(copy?.value?.equals(original.value as Buffer)).toBe(true);
      expect(copy?.timestamp).toBe(original.timestamp);
      expect(Date.parse(header(copy as KafkaMessage, REDRIVE_HEADERS.at) ?? '')).toBeGreaterThan(
        Date.now() - 10 * 60_000,
      );
      // The record's own headers kept, the dlq.* ones dropped.
      expect(header(copy as KafkaMessage, 'content-type')).toBe('application/vnd.confluent.avro');
      for (const h of Object.values(DLQ_HEADERS)) expect(copy?.headers?.[h]).toBeUndefined();
    }
    // Run again: nothing left of that code.
    const again = await cliJson([
      '--topic',
      'purchases',
      '--code',
      'REC_ERR_FUTURE_EVENT',
      '--redrive',
    ]);
    expect(again.records).toHaveLength(0);
    expect(again.summary).toMatchObject({ redriven: 0, already_redriven: 2 });
    expect(await redriven()).toHaveLength(2);

    // Without --code: the other codes, one at a time with --limit, then nothing.
    const limited = await cliJson(['--topic', 'purchases', '--redrive', '--limit', '1']);
    expect(limited.summary.redriven).toBe(1);
    const rest = await cliJson(['--topic', 'purchases', '--redrive']);
    expect(rest.summary.redriven).toBe(1);
    expect([...limited.records, ...rest.records].map((r) => r.code).sort()).toEqual([
      'REC_ERR_DECODE',
      'REC_ERR_KEY_MISMATCH',
    ]);
    const done = await cli(['--topic', 'purchases', '--redrive']);
    expect(done).toContain('re-published 0 to');
    sent = await redriven();
    expect(sent).toHaveLength(DEAD);
    expect(new Set(sent.map((m) => header(m, REDRIVE_HEADERS.from))).size).toBe(DEAD);

    // Listing moved nothing: every dead letter is still listed.
    const after = await cliJson(['--topic', 'purchases']);
    expect(after.records).toHaveLength(DEAD);
    expect(after.summary.redriven).toBeNull();

    // Each copy in its source partition (the undecodable one sits where its key does not lead).
    const all = await readRaw(ctx.topics.purchases.name);
    for (const r of after.records) {
      const from = `${dlq}:${r.dlq_partition}:${r.dlq_offset}`;
      const at = [...all].find(([, m]) => header(m, REDRIVE_HEADERS.from) === from)?.[0];
      expect(at?.split(':')[0], from).toBe(String(r.source_partition));
    }
  });

  it('refuses an unknown topic, naming the known ones', async () => {
    const r = await runCli(['--topic', 'orders'], env());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'unknown topic "orders": known topics are purchases, articles, customers',
    );
  });
});
