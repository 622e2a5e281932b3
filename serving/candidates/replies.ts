/**
 * Reading Redis replies: sorted-set replies, pipelines that fail as a whole when one command
 * fails, and the replies of a pipeline several sources queued their commands on.
 */
import type { ChainableCommander } from 'ioredis';

/** A raw entry of a sorted set: log-space decayed score, read at no particular "now". */
export interface LogScored {
  readonly articleId: string;
  readonly logScore: number;
}

/** Parse a `ZREVRANGE … WITHSCORES` reply. */
export function parseScored(flat: readonly string[]): LogScored[] {
  const out: LogScored[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) {
    out.push({ articleId: flat[i] as string, logScore: Number(flat[i + 1]) });
  }
  return out;
}

type PipelineResult = [Error | null, unknown][] | null;

function values(results: PipelineResult): unknown[] {
  if (results === null) throw new Error('redis pipeline aborted');
  return results.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

/** Send a pipeline; its replies in order, or the first command's error. */
export async function execPipeline(pipe: ChainableCommander): Promise<unknown[]> {
  return values(await pipe.exec());
}

/**
 * The replies of a shared pipeline, taken in the order the commands were queued: each source
 * queues its commands, then takes back as many replies, sources in the same order.
 */
export class Replies {
  #pos = 0;

  constructor(private readonly replies: readonly unknown[]) {}

  /** The next reply. */
  next(): unknown {
    return this.replies[this.#pos++];
  }
}
