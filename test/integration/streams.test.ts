/**
 * Event plumbing against the real broker and registry: Avro round trip in the Confluent wire
 * format, DLQ routing, commit-after-success, replay between two instants, schema compatibility.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import avro from 'avsc';
import type { KafkaMessage, Producer } from 'kafkajs';
import { AvroDeserializer } from '@confluentinc/schemaregistry/dist/serde/avro.js';
import { SerdeType } from '@confluentinc/schemaregistry/dist/serde/serde.js';
import { bootstrap, type Codecs } from '../../streams/bootstrap.ts';
import { registerSchema } from '../../streams/avro.ts';
import { DLQ_HEADERS, runConsumer, type DecodedRecord } from '../../streams/consumer.ts';
import { RecError } from '../../common/errors.ts';
import { EventProducer, createIdempotentProducer } from '../../streams/producer.ts';
import { replay, type PartitionRange } from '../../streams/replay.ts';
import { OffsetIndex } from '../../streams/offset-index.ts';
import type { Purchase } from '../../schemas/events.ts';
import { stackContext, waitFor, type StackContext } from '../helpers.ts';

const T0 = Date.UTC(2020, 7, 1);
const HOUR = 3_600_000;

function purchase(i: number, over: Partial<Purchase> = {}): Purchase {
  return {
    event_id: `ev-${i}`,
    customer_id: `c${i % 7}`,
    article_id: `0${100000000 + (i % 13)}`,
    price: 0.01 * (1 + (i % 5)),
    sales_channel_id: 1 + (i % 2),
    quantity: 1,
    event_time: T0 + i * HOUR,
    ...over,
  };
}

describe('event plumbing on the real stack', () => {
  let ctx: StackContext;
  let codecs: Codecs;
  let producer: Producer;
  let purchases: EventProducer<Purchase>;

  beforeAll(async () => {
    ctx = stackContext('streams');
    ({ codecs } = await bootstrap(ctx));
    producer = createIdempotentProducer(ctx.kafka);
    await producer.connect();
    purchases = new EventProducer(producer, ctx.topics.purchases, codecs.purchases);
  });

  afterAll(async () => {
    await producer.disconnect();
    await ctx.cleanup();
  });

  async function readAll(topic: string, expected: number): Promise<KafkaMessage[]> {
    const seen: KafkaMessage[] = [];
    const consumer = ctx.kafka.consumer({ groupId: `${ctx.prefix}reader-${topic}-${Date.now()}` });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        seen.push(message);
        return Promise.resolve();
      },
    });
    await waitFor(`${expected} records on ${topic}`, () => seen.length >= expected);
    await consumer.disconnect();
    return seen;
  }

  it('round-trips purchases through Kafka as Confluent-framed Avro that the Confluent deserializer reads', async () => {
    const events = Array.from({ length: 50 }, (_, i) => purchase(i));
    await purchases.send(events);

    const got: DecodedRecord<Purchase>[] = [];
    const runner = await runConsumer({
      kafka: ctx.kafka,
      groupId: `${ctx.prefix}roundtrip`,
      topic: ctx.topics.purchases,
      codec: codecs.purchases,
      dlqProducer: producer,
      logger: ctx.logger,
      handler: (records) => {
        got.push(...records);
        return Promise.resolve(undefined);
      },
    });
    await waitFor('50 decoded purchases', () => got.length >= 50);
    await runner.stop();

    const byId = new Map(got.map((r) => [r.value.event_id, r]));
    expect(byId.size).toBe(50);
    for (const e of events) {
      const r = byId.get(e.event_id);
      expect(r?.value).toEqual(e);
      expect(r?.key).toBe(e.customer_id); // keyed by customer
      expect(r?.timestamp).toBe(e.event_time); // record timestamp = event time
    }
    // One customer's events land in one partition, in event-time order.
    const partitionsOf = new Map<string, Set<number>>();
    for (const r of got) {
      const s = partitionsOf.get(r.value.customer_id) ?? new Set<number>();
      s.add(r.partition);
      partitionsOf.set(r.value.customer_id, s);
    }
    for (const s of partitionsOf.values()) expect(s.size).toBe(1);

    // The bytes are the Confluent wire format: Confluent's own deserializer decodes them.
    const raw = await readAll(ctx.topics.purchases.name, 50);
    const first = raw[0];
    expect(first?.value?.readUInt8(0)).toBe(0);
    expect(first?.value?.readInt32BE(1)).toBe(codecs.purchases.schemaId);
    const confluent = new AvroDeserializer(ctx.registry, SerdeType.VALUE, {});
    const decoded = (await confluent.deserialize(
      ctx.topics.purchases.name,
      first?.value as Buffer,
    )) as Purchase;
    expect(events).toContainEqual(decoded);
  });

  it('routes undecodable and invalid records to <topic>.dlq with the reason, and goes on', async () => {
    const topic = ctx.topics.purchases;
    const good = Array.from({ length: 20 }, (_, i) => purchase(1000 + i));
    // Valid Avro with this topic's schema id, but a value zod refuses (negative price, bad id).
    const type = avro.Type.forSchema(topic.contract.avro as avro.Schema);
    const framed = (v: Purchase) => {
      const body = type.toBuffer(v);
      const head = Buffer.alloc(5);
      head.writeInt32BE(codecs.purchases.schemaId, 1);
      return Buffer.concat([head, body]);
    };
    const poison = [
      { key: 'c1', value: Buffer.from('not avro at all') },
      { key: 'c2', value: framed(purchase(2000, { price: -1 })) },
      { key: 'c3', value: framed(purchase(2001, { customer_id: 'bad id with spaces' })) },
      { key: 'c4', value: Buffer.from([0, 0, 0, 0x7f, 0x7f, 1, 2]) }, // unknown schema id
    ];
    await purchases.send(good.slice(0, 10));
    await producer.send({ topic: topic.name, messages: poison });
    await purchases.send(good.slice(10));

    const seen: Purchase[] = [];
    const runner = await runConsumer({
      kafka: ctx.kafka,
      groupId: `${ctx.prefix}dlq`,
      topic,
      codec: codecs.purchases,
      dlqProducer: producer,
      logger: ctx.logger,
      handler: (records) => {
        seen.push(...records.map((r) => r.value));
        return Promise.resolve(undefined);
      },
    });
    const dlq = await readAll(topic.dlq, poison.length);
    await waitFor('all good records after the poison', () =>
      good.every((g) => seen.some((s) => s.event_id === g.event_id)),
    );
    await runner.stop();

    expect(dlq).toHaveLength(poison.length);
    const header = (m: KafkaMessage, h: string) => m.headers?.[h]?.toString();
    const codes = dlq.map((m) => header(m, DLQ_HEADERS.code)).sort();
    expect(codes).toEqual([
      'REC_ERR_DECODE',
      'REC_ERR_UNKNOWN_SCHEMA',
      'REC_ERR_VALIDATION',
      'REC_ERR_VALIDATION',
    ]);
    const reasons = dlq.map((m) => header(m, DLQ_HEADERS.reason) ?? '');
    expect(reasons.some((r) => r.includes('price'))).toBe(true);
    expect(reasons.some((r) => r.includes('customer_id'))).toBe(true);
    for (const m of dlq) {
      expect(header(m, DLQ_HEADERS.topic)).toBe(topic.name);
      expect(Number(header(m, DLQ_HEADERS.offset))).toBeGreaterThanOrEqual(0);
    }
    // Original bytes are kept, so nothing is lost.
    expect(dlq.map((m) => m.value?.toString('hex'))).toContain(
      Buffer.from('not avro at all').toString('hex'),
    );
  });

  it('dead-letters thousands of records of one batch, in requests the broker accepts', async () => {
    // Its own topics and producer, so that one fetch holds nothing but these records (and the
    // shared producer never knew the topics the cleanup deletes).
    const own = stackContext('streams-dlq-many', 1);
    const producer = createIdempotentProducer(own.kafka);
    try {
      await bootstrap(own);
      await producer.connect();
      const topic = own.topics.purchases;
      const N = 6_000;
      const junk = (i: number) => ({
        key: `c${i}`,
        value: Buffer.from(`junk ${i} `.padEnd(100, '.')),
      });
      for (let i = 0; i < N; i += 1_000) {
        await producer.send({
          topic: topic.name,
          messages: Array.from({ length: 1_000 }, (_, j) => junk(i + j)),
        });
      }
      const batches: number[] = [];
      const runner = await runConsumer({
        kafka: own.kafka,
        groupId: `${own.prefix}dlq-many`,
        topic,
        codec: codecs.purchases,
        dlqProducer: producer,
        logger: own.logger,
        handler: () => Promise.resolve(undefined),
        hooks: { onBatch: (b) => batches.push(b.dlq) },
      });
      await waitFor(`${N} dead letters`, () => batches.reduce((x, y) => x + y, 0) >= N, 40_000);
      await runner.stop();
      // One fetch dead-lettered thousands at once: with their reasons, over 1 MiB of dead letters.
      expect(Math.max(...batches)).toBeGreaterThan(3_000);
      const admin = own.kafka.admin();
      await admin.connect();
      const ends = await admin.fetchTopicOffsets(topic.dlq);
      await admin.disconnect();
      expect(ends.reduce((x, o) => x + Number(o.high), 0)).toBe(N);
    } finally {
      await producer.disconnect();
      await own.cleanup();
    }
  });

  it('commits offsets only after the handler succeeded: a crash before commit redelivers the batch', async () => {
    const topic = ctx.topics.customers;
    const customers = new EventProducer(producer, topic, codecs.customers);
    const records = Array.from({ length: 5 }, (_, i) => ({
      customer_id: `cust-${i}`,
      fn: null,
      active: true,
      club_member_status: 'ACTIVE',
      fashion_news_frequency: null,
      age: 20 + i,
      postal_code: null,
      updated_at: T0,
    }));
    await customers.send(records);
    const groupId = `${ctx.prefix}commit`;

    // First consumer: its handler never succeeds; it is stopped (a crash) while retrying.
    let attempts = 0;
    const failing = await runConsumer({
      kafka: ctx.kafka,
      groupId,
      topic,
      codec: codecs.customers,
      dlqProducer: producer,
      logger: ctx.logger,
      retry: { initialMs: 20, maxMs: 50 },
      handler: () => {
        attempts++;
        return Promise.reject(new Error('redis is down'));
      },
    });
    await waitFor('a few failed attempts', () => attempts >= 3);
    await failing.stop();

    const admin = ctx.kafka.admin();
    await admin.connect();
    const committed = await admin.fetchOffsets({ groupId, topics: [topic.name] });
    expect(committed[0]?.partitions.every((p) => p.offset === '-1')).toBe(true);

    // Restart in the same group: every record is delivered again, then committed.
    const got: string[] = [];
    const ok = await runConsumer({
      kafka: ctx.kafka,
      groupId,
      topic,
      codec: codecs.customers,
      dlqProducer: producer,
      logger: ctx.logger,
      handler: (rs) => {
        got.push(...rs.map((r) => r.value.customer_id));
        return Promise.resolve(undefined);
      },
    });
    await waitFor('redelivery', () => got.length >= 5);
    await waitFor('commit', async () => {
      const o = await admin.fetchOffsets({ groupId, topics: [topic.name] });
      return o[0]?.partitions.reduce((n, p) => n + Number(p.offset), 0) === 5;
    });
    await ok.stop();
    await admin.disconnect();
    expect(got.sort()).toEqual(records.map((r) => r.customer_id).sort());
  });

  it('replays exactly the events between two instants, late arrivals included', async () => {
    const fresh = stackContext('replay', 3);
    const { codecs: c } = await bootstrap(fresh);
    const p = new EventProducer(producer, fresh.topics.purchases, c.purchases);
    try {
      const inOrder = Array.from({ length: 200 }, (_, i) => purchase(i));
      // Late events: stamped in the past, published after everything else.
      const late = [
        purchase(5000, { event_time: T0 + 50 * HOUR + 1 }),
        purchase(5001, { event_time: T0 + 5 * HOUR }),
      ];
      await p.send(inOrder);
      await p.send(late);
      const from = T0 + 40 * HOUR; // inclusive
      const to = T0 + 120 * HOUR; // exclusive
      const expected = [...inOrder, ...late]
        .filter((e) => e.event_time >= from && e.event_time < to)
        .map((e) => e.event_id)
        .sort();
      const interval = {
        kafka: fresh.kafka,
        topic: fresh.topics.purchases,
        codec: c.purchases,
        from,
        to,
        logger: fresh.logger,
      };
      const got: string[] = [];
      let lastProgress = 0;
      const result = await replay({
        ...interval,
        onRecords: (rs) => {
          got.push(...rs.map((r) => r.value.event_id));
        },
        onProgress: (read) => (lastProgress = read),
      });
      // Written after the replay started: not part of it.
      expect(got.sort()).toEqual(expected);
      expect(result.records).toBe(expected.length);
      expect(lastProgress).toBeGreaterThan(0);

      // In event-time order: the partitions merged on (timestamp, partition), each in offset
      // order (the late events stay behind the rest of their partition), in chunks of exactly 7.
      const merged = async () => {
        const chunks: DecodedRecord<Purchase>[][] = [];
        await replay({
          ...interval,
          eventTimeChunk: 7,
          onRecords: (rs) => {
            chunks.push([...rs]);
          },
        });
        return chunks;
      };
      const chunks = await merged();
      const all = chunks.flat();
      expect(all.map((r) => r.value.event_id).sort()).toEqual(expected);
      expect(chunks.slice(0, -1).every((ch) => ch.length === 7)).toBe(true);
      expect(new Set(all.map((r) => r.partition)).size).toBe(3);
      for (const p of [0, 1, 2]) {
        const offsets = all.filter((r) => r.partition === p).map((r) => BigInt(r.offset));
        expect(offsets.every((o, i) => i === 0 || o > (offsets[i - 1] as bigint))).toBe(true);
      }
      const onTime = all.filter((r) => !r.value.event_id.startsWith('ev-500'));
      const key = (r: DecodedRecord<Purchase>) => [r.timestamp, r.partition];
      expect(onTime.map(key)).toEqual(
        [...onTime].sort((a, b) => a.timestamp - b.timestamp || a.partition - b.partition).map(key),
      );
      const ids = (chs: DecodedRecord<Purchase>[][]) => chs.map((ch) => ch.map((r) => r.offset));
      expect(ids(await merged())).toEqual(ids(chunks));

      // Indexed: one pass from the start notes where each interval's records lie; replays of the
      // intervals given those offsets hand over exactly what the lookups by timestamp do (the late
      // events included) and read fewer records.
      const bounds = [from, T0 + 80 * HOUR, to];
      const index = new OffsetIndex(bounds);
      const pass = await replay({
        ...interval,
        from: 0,
        to: from,
        onRead: index.observe.bind(index),
        onRecords: () => undefined,
      });
      for (const [a, b] of [
        [bounds[0], bounds[1]],
        [bounds[1], bounds[2]],
        [bounds[0], bounds[2]],
      ] as [number, number][]) {
        const within = (e: Purchase) => e.event_time >= a && e.event_time < b;
        const want = [...inOrder, ...late].filter(within).map((e) => e.event_id);
        const ranges = index.ranges(a, b, pass.ranges);
        expect(ranges).not.toBeNull();
        const byIndex: string[] = [];
        const read = await replay({
          ...interval,
          from: a,
          to: b,
          ...(ranges ? { ranges } : {}),
          onRecords: (rs) => {
            byIndex.push(...rs.map((r) => r.value.event_id));
          },
        });
        const byTime = await replay({ ...interval, from: a, to: b, onRecords: () => undefined });
        expect(byIndex.sort()).toEqual(want.sort());
        expect(read.records + read.skipped).toBeLessThan(byTime.records + byTime.skipped);
      }
      // A partition given nothing to read, with records from its start: none of its records is
      // handed over, and the others' are all there.
      const idle = pass.ranges[0] as PartitionRange;
      expect(BigInt(idle.end)).toBeGreaterThan(0n);
      const partitionsOf = async (ranges?: PartitionRange[]) => {
        const seen: number[] = [];
        await replay({
          ...interval,
          from: 0,
          to,
          ...(ranges ? { ranges } : {}),
          onRecords: (rs) => {
            seen.push(...rs.map((x) => x.partition));
          },
        });
        return seen;
      };
      const whole = await partitionsOf();
      const rest = await partitionsOf(
        pass.ranges.map((r) => (r === idle ? { ...r, start: r.end } : r)),
      );
      expect(rest.sort()).toEqual(whole.filter((p) => p !== idle.partition).sort());

      const none = await replay({
        kafka: fresh.kafka,
        topic: fresh.topics.purchases,
        codec: c.purchases,
        from: T0 + 10_000 * HOUR,
        to: T0 + 20_000 * HOUR,
        logger: fresh.logger,
        onRecords: () => undefined,
      });
      expect(none.records).toBe(0);
    } finally {
      await fresh.cleanup();
    }
  });

  it('replays a partition that takes many fetches, to its end', async () => {
    const big = stackContext('replay-big', 1);
    const { codecs: c } = await bootstrap(big);
    // Its own producer: the shared one still targets topics earlier tests deleted.
    const own = createIdempotentProducer(big.kafka);
    await own.connect();
    const p = new EventProducer(own, big.topics.purchases, c.purchases);
    try {
      // ~3 MB in one partition: several fetches of kafkajs' 1 MB per partition.
      const events = Array.from({ length: 30_000 }, (_, i) =>
        purchase(i, { event_id: `big-${i}-${'x'.repeat(60)}` }),
      );
      await p.send(events, { chunkSize: 5_000 });
      let got = 0;
      const result = await replay({
        kafka: big.kafka,
        topic: big.topics.purchases,
        codec: c.purchases,
        from: 0,
        to: T0 + 40_000 * HOUR,
        logger: big.logger,
        idleTimeoutMs: 20_000,
        onRecords: (rs) => {
          got += rs.length;
        },
      });
      expect(result.records).toBe(events.length);
      expect(got).toBe(events.length);
    } finally {
      await own.disconnect();
      await big.cleanup();
    }
  });

  it('refuses a schema change that breaks BACKWARD compatibility with a clear message', async () => {
    const subject = `${ctx.prefix}compat-value`;
    const v1 = {
      type: 'record' as const,
      name: 'Probe',
      fields: [
        { name: 'id', type: 'string' },
        { name: 'price', type: 'double' },
      ],
    };
    await registerSchema(ctx.registry, subject, v1);
    // Compatible: a new optional field with a default.
    const v2 = {
      ...v1,
      fields: [...v1.fields, { name: 'note', type: ['null', 'string'], default: null }],
    };
    const v2id = await registerSchema(ctx.registry, subject, v2);
    expect(v2id).toBeGreaterThan(0);
    // Incompatible: a new required field without a default, and a changed type.
    const bad = {
      ...v1,
      fields: [
        { name: 'id', type: 'int' },
        { name: 'price', type: 'double' },
      ],
    };
    const err = await registerSchema(ctx.registry, subject, bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RecError);
    expect((err as RecError).code).toBe('REC_ERR_SCHEMA_INCOMPATIBLE');
    expect((err as RecError).message).toMatch(
      /not BACKWARD-compatible.*subject "test-streams-.*compat-value"/,
    );
    const config = await ctx.registry.getConfig(subject);
    expect(config.compatibilityLevel ?? config.compatibility).toBe('BACKWARD');
  });
});
