/**
 * `npm run eval:online -- --from <time> --to <time> [--report <dir>] [--window-days 7] [--k 12]
 * [--experiment NAME] [--baseline VARIANT] [--time served|features] [--confidence 0.95]
 * [--iterations 2000] [--seed 7] [--no-progress]`: the online read-out for analysts. Replays the
 * served lists (`recommendations.served`), the purchases and the articles, and prints per variant
 * the lists served, customers, hit rate@k and MAP@k against the purchases within the window after
 * serving, catalogue coverage, with bootstrap intervals, and each variant's difference to the
 * baseline; `--report <dir>` writes report.md, summary.json and plots. One JSON line last on
 * stdout. TOPIC_PREFIX applies as everywhere. Exit codes: 0 done, 2 usage (bad option or time,
 * a topic missing), 1 anything else. Definitions: docs/evaluation.md, "Online read-out".
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../common/config.ts';
import { UsageError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { AvroCodec } from '../../streams/avro.ts';
import { connectStreams } from '../../streams/bootstrap.ts';
import { createKafka, createRegistryClient } from '../../streams/kafka.ts';
import { topics as makeTopics } from '../../streams/topics.ts';
import {
  ONLINE_USAGE,
  checkTopics,
  onlineOptions,
  runOnline,
  summaryLine,
  tableLines,
} from './online.ts';

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        from: { type: 'string' },
        to: { type: 'string' },
        report: { type: 'string' },
        'window-days': { type: 'string' },
        k: { type: 'string' },
        experiment: { type: 'string' },
        baseline: { type: 'string' },
        time: { type: 'string' },
        confidence: { type: 'string' },
        iterations: { type: 'string' },
        seed: { type: 'string' },
        'no-progress': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)}\n${ONLINE_USAGE}`);
  }
  if (values.help) {
    console.log(ONLINE_USAGE);
    return;
  }
  const opts = onlineOptions({ ...values, progress: !values['no-progress'] });

  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, 'eval-online');
  // Refuse missing topics rather than create them empty (connectStreams would).
  await checkTopics(
    createKafka(config, 'rec-eval-online', logger),
    makeTopics(config.topicPrefix),
    config.topicPrefix,
  );
  const { kafka, topics, codecs } = await connectStreams(config, 'rec-eval-online', logger);
  const served = await AvroCodec.forTopic(createRegistryClient(config), topics.served);
  const result = await runOnline({ kafka, topics, codecs: { ...codecs, served }, logger }, opts);
  for (const line of tableLines(result)) console.log(line);
  const summary = summaryLine(result);
  if (opts.report !== undefined) {
    // Loaded only when asked for: vega is large.
    const { writeOnlineReport } = await import('./report.ts');
    const out = await writeOnlineReport(opts.report, result, summary);
    console.log(`report: ${join(opts.report, 'report.md')} (${out.images.length} images)`);
  }
  console.log(JSON.stringify(summary));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    const usage = err instanceof UsageError;
    console.error(`eval:online failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(usage ? 2 : 1);
  },
);
