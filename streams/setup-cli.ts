/**
 * `npm run setup`: create topics and register schemas against the configured services
 * (docker compose runs this as its one-shot `setup` service).
 */
import { loadConfig } from '../common/config.ts';
import { connectStreams } from './bootstrap.ts';
import { createLogger } from '../common/logger.ts';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, 'setup');
  const { topicsResult, codecs } = await connectStreams(config, 'rec-setup', logger);
  console.log(
    `topics created: ${topicsResult.created.join(', ') || '(none)'}; already present: ${topicsResult.existing.join(', ') || '(none)'}`,
  );
  console.log(
    `schema ids: purchases ${codecs.purchases.schemaId}, articles ${codecs.articles.schemaId}, customers ${codecs.customers.schemaId}`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
