/**
 * A dataset folder's own set of topics (prefix `eval-<name>-<hash>.`, from the folder's content:
 * loaded.ts), loaded once and reused: what `npm run eval` and `npm run bench:replay` read.
 */
import type { Config } from '../../common/config.ts';
import type { Logger } from '../../common/logger.ts';
import type { RedisClient } from '../../common/redis.ts';
import { runLoad } from './load.ts';
import { datasetFingerprint, writeLoadedMarker } from './loaded.ts';

/** The topic prefix naming this folder's content. */
function datasetPrefix(dir: string): string {
  const { slug, hash } = datasetFingerprint(dir);
  return `eval-${slug}-${hash}.`;
}

/**
 * The prefix of the folder's topics, after publishing it there unless a complete load of the same
 * content is marked in Redis; `reload` publishes it again into fresh topics. Progress lines on
 * stderr start with `tag`.
 */
export async function datasetTopics(
  config: Config,
  logger: Logger,
  redis: RedisClient,
  dir: string,
  reload: boolean,
  tag: string,
): Promise<string> {
  let prefix = datasetPrefix(dir);
  const marker = `eval:loaded:${prefix}`;
  if (reload) prefix = `${prefix.slice(0, -1)}-${Date.now().toString(36)}.`;
  else if ((await redis.exists(marker)) === 1) {
    console.error(`${tag} reusing topics ${prefix}* (loaded before; --reload to publish again)`);
    return prefix;
  }
  console.error(`${tag} loading ${dir} into topics ${prefix}*`);
  const report = await runLoad({
    config: { ...config, topicPrefix: prefix },
    logger,
    dataDir: dir,
  });
  console.error(
    `${tag} published ${report.published.purchases} purchases, ${report.published.articles} articles, ${report.published.customers} customers`,
  );
  if (!reload) await writeLoadedMarker(redis, marker, prefix, report.published);
  return prefix;
}
