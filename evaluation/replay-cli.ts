/**
 * `npm run replay -- --topic purchases|articles|customers --from <time> --to <time>
 * --out <file.parquet|file.csv> [--keep-duplicates] [--no-progress]`: the decoded events of one
 * topic whose event time lies in [from, to), each once (`--keep-duplicates`: every record),
 * written as Parquet or CSV (by extension), with progress on stderr and a one-line summary on
 * stdout. Times are ISO dates (00:00 UTC) or date-times (UTC unless they
 * name an offset). TOPIC_PREFIX applies as everywhere. Columns and formats: see replay-file.ts.
 * Exit codes: 0 done, 2 usage (bad option, topic, time or path), 1 anything else.
 */
import { parseArgs } from 'node:util';
import { connectStreams } from '../streams/bootstrap.ts';
import { loadConfig } from '../common/config.ts';
import { createKafka } from '../streams/kafka.ts';
import { createLogger } from '../common/logger.ts';
import {
  REPLAY_USAGE,
  UsageError,
  checkWritable,
  replayOptions,
  replayToFile,
  summaryLine,
} from './replay-file.ts';
import { topics as makeTopics } from '../streams/topics.ts';

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        topic: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        out: { type: 'string' },
        'no-progress': { type: 'boolean', default: false },
        'keep-duplicates': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)}\n${REPLAY_USAGE}`);
  }
  if (values.help) {
    console.log(REPLAY_USAGE);
    return;
  }
  const opts = replayOptions({
    ...values,
    progress: !values['no-progress'],
    keepDuplicates: values['keep-duplicates'],
  });
  await checkWritable(opts.out);

  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'replay');
  const topicName = makeTopics(config.topicPrefix)[opts.topic].name;

  // Refuse a topic that does not exist rather than create it empty (connectStreams would).
  const admin = createKafka(config, 'rec-replay', logger).admin();
  await admin.connect();
  try {
    const existing = await admin.listTopics();
    if (!existing.includes(topicName)) {
      throw new UsageError(
        `topic ${topicName} does not exist${config.topicPrefix === '' ? '' : ` (TOPIC_PREFIX=${config.topicPrefix})`}: nothing to replay`,
      );
    }
  } finally {
    await admin.disconnect();
  }

  const { kafka, topics, codecs } = await connectStreams(config, 'rec-replay', logger);
  const result = await replayToFile({ kafka, topics, codecs, logger }, opts);
  console.log(summaryLine(topicName, result));
}

main().catch((err: unknown) => {
  const usage = err instanceof UsageError;
  console.error(`replay failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(usage ? 2 : 1);
});
