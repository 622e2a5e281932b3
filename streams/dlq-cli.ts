/**
 * `npm run dlq -- --topic <t> [--code REC_ERR_...] [--limit N] [--redrive] [--json]`: the dead
 * letters of one topic (`<topic>.dlq`, read from its start to the end offsets at the start of the
 * run): per record the DLQ position, the source partition/offset and time, when it failed, the
 * code, reason and consumer group, the key and a preview of the value (decoded through the
 * registry when it decodes), then one summary line with the count per code. `--code` keeps one
 * code, `--limit` caps the records listed. `--redrive` re-publishes the selected dead letters not
 * yet redriven to the source topic (original key, value and timestamp; see streams/dlq.ts) and
 * lists only those; listing alone moves nothing. `--json`: one JSON line per record and a final
 * summary line. `<t>` is the logical name (purchases, articles, customers; TOPIC_PREFIX applies
 * as everywhere), or the full `<prefix><t>` / `<prefix><t>.dlq`.
 * Exit codes: 0 done, 2 usage (bad option or topic), 1 anything else.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../common/config.ts';
import { UsageError } from '../common/errors.ts';
import { createLogger } from '../common/logger.ts';
import { AvroCodec } from './avro.ts';
import {
  alreadyRedriven,
  previewValue,
  readDeadLetters,
  redrive,
  redriveGroup,
  redrivePositions,
  type DeadLetter,
  type ValuePreview,
} from './dlq.ts';
import { createKafka, createRegistryClient } from './kafka.ts';
import { createIdempotentProducer } from './producer.ts';
import { topics as makeTopics, type TopicDescriptor, type Topics } from './topics.ts';

const USAGE =
  'usage: npm run dlq -- --topic <purchases|articles|customers> [--code REC_ERR_...] [--limit N] [--redrive] [--json]';

/** The logical topic named by `--topic`: `t`, `<prefix>t`, or either with `.dlq`. */
function resolveTopic(all: Topics, prefix: string, given: string): keyof Topics {
  const names = Object.keys(all) as (keyof Topics)[];
  let t = given.endsWith('.dlq') ? given.slice(0, -'.dlq'.length) : given;
  if (
    prefix !== '' &&
    t.startsWith(prefix) &&
    names.includes(t.slice(prefix.length) as keyof Topics)
  ) {
    t = t.slice(prefix.length);
  }
  if (!names.includes(t as keyof Topics)) {
    throw new UsageError(
      `unknown topic "${given}": known topics are ${names.join(', ')}\n${USAGE}`,
    );
  }
  return t as keyof Topics;
}

function parse() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        topic: { type: 'string' },
        code: { type: 'string' },
        limit: { type: 'string' },
        redrive: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
  }
  if (values.help) return null;
  if (values.topic === undefined) throw new UsageError(`--topic is required\n${USAGE}`);
  if (values.code !== undefined && !/^REC_ERR_[A-Z0-9_]+$/.test(values.code)) {
    throw new UsageError(`--code "${values.code}" is not an error code (REC_ERR_...)\n${USAGE}`);
  }
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    throw new UsageError(
      `--limit must be a positive whole number (got "${values.limit}")\n${USAGE}`,
    );
  }
  return {
    topic: values.topic,
    code: values.code,
    limit,
    redrive: values.redrive,
    json: values.json,
  };
}

function recordJson(d: DeadLetter, preview: ValuePreview) {
  return {
    dlq_topic: d.dlqTopic,
    dlq_partition: d.dlqPartition,
    dlq_offset: d.dlqOffset,
    source_topic: d.sourceTopic,
    source_partition: d.sourcePartition,
    source_offset: d.sourceOffset,
    source_timestamp: d.sourceTimestamp === null ? null : new Date(d.sourceTimestamp).toISOString(),
    failed_at: d.failedAt,
    code: d.code,
    reason: d.reason,
    group: d.group,
    key: d.key?.toString('utf8') ?? null,
    value_decoded: preview.decoded,
    value: preview.text,
    value_bytes: preview.bytes,
  };
}

function recordText(d: DeadLetter, preview: ValuePreview): string {
  const src =
    d.sourcePartition === null
      ? '?'
      : `p${d.sourcePartition}@${d.sourceOffset ?? '?'}${d.sourceTimestamp === null ? '' : ` (${new Date(d.sourceTimestamp).toISOString()})`}`;
  const value = preview.decoded
    ? preview.text
    : `does not decode, ${preview.bytes} bytes (${preview.text})`;
  return [
    `${d.dlqTopic} p${d.dlqPartition}@${d.dlqOffset}  ${d.code}  source ${src}  failed ${d.failedAt ?? '?'}  group ${d.group ?? '?'}  key ${d.key === null ? '(none)' : JSON.stringify(d.key.toString('utf8'))}`,
    `  reason: ${d.reason ?? '(none)'}`,
    `  value:  ${value}`,
  ].join('\n');
}

async function main(): Promise<void> {
  const args = parse();
  if (args === null) {
    console.log(USAGE);
    return;
  }
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'dlq');
  const all = makeTopics(config.topicPrefix);
  const logical = resolveTopic(all, config.topicPrefix, args.topic);
  const topic = all[logical] as TopicDescriptor<unknown>;
  const kafka = createKafka(config, 'rec-dlq', logger);

  // Refuse a DLQ that does not exist rather than create it empty.
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic.dlq)) {
      throw new UsageError(
        `topic ${topic.dlq} does not exist${config.topicPrefix === '' ? '' : ` (TOPIC_PREFIX=${config.topicPrefix})`}: run npm run setup, or check the prefix`,
      );
    }
  } finally {
    await admin.disconnect();
  }

  const letters = await readDeadLetters(kafka, topic.dlq, logger);
  const groupOf = (code: string) => redriveGroup(config.topicPrefix, logical, code);
  const positions = args.redrive
    ? await redrivePositions(
        kafka,
        topic.dlq,
        groupOf,
        letters.map((d) => d.code),
      )
    : new Map<string, Map<number, bigint>>();
  const byCode: Record<string, number> = {};
  for (const d of letters) byCode[d.code] = (byCode[d.code] ?? 0) + 1;
  const matching = letters.filter(
    (d) => (args.code === undefined || d.code === args.code) && !alreadyRedriven(d, positions),
  );
  const selected = matching.slice(0, args.limit ?? matching.length);

  const codec = await AvroCodec.forTopic(createRegistryClient(config), topic);
  for (const d of selected) {
    const preview = await previewValue(codec, d.value);
    console.log(args.json ? JSON.stringify(recordJson(d, preview)) : recordText(d, preview));
  }

  let redriven: number | null = null;
  if (args.redrive) {
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    try {
      redriven = await redrive({ kafka, producer, topic, selected, groupOf, logger });
    } finally {
      await producer.disconnect();
    }
  }

  const summary = {
    summary: true,
    topic: topic.name,
    dlq: topic.dlq,
    dead_letters: letters.length,
    by_code: byCode,
    ...(args.redrive
      ? { already_redriven: letters.filter((d) => alreadyRedriven(d, positions)).length }
      : {}),
    matching: matching.length,
    listed: selected.length,
    redriven,
  };
  if (args.json) {
    console.log(JSON.stringify(summary));
  } else {
    const codes = Object.entries(byCode).sort(([a], [b]) => a.localeCompare(b));
    const width = Math.max(0, ...codes.map(([c]) => c.length));
    for (const [c, n] of codes) console.log(`${c.padEnd(width)}  ${n}`);
    const before = summary.already_redriven;
    console.log(
      [
        `${topic.dlq}: ${letters.length} dead letters`,
        ...(before === undefined ? [] : [`${before} redriven before`]),
        `${matching.length} ${args.redrive ? 'to redrive' : 'matching'}${args.code === undefined ? '' : ` ${args.code}`}`,
        `${selected.length} listed`,
      ].join(', '),
    );
    if (redriven !== null) {
      console.log(
        `re-published ${redriven} to ${topic.name} (records that fail again go back to ${topic.dlq})`,
      );
    }
  }
}

main().catch((err: unknown) => {
  const usage = err instanceof UsageError;
  console.error(`dlq failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(usage ? 2 : 1);
});
