/**
 * The live model of one serving instance: the scorer pool of the active version, replaced by a
 * hot swap when another version is activated. A version that fails any check (features serving
 * cannot produce, checksum, ONNX that does not load, a worker that cannot load it) is refused:
 * the current model keeps serving, and the version is marked `rejected` in the registry.
 */
import type { Redis } from 'ioredis';
import type { KeySpace } from '../../streams/features/keys.ts';
import type { Logger } from '../../streams/logger.ts';
import type { Ranker } from '../ranking.ts';
import { ScorerPool } from '../scoring/pool.ts';
import { checkModel } from './metadata.ts';
import { activeVersion, readModel, rejectModel } from './registry.ts';

export interface SwapOutcome {
  version: string;
  outcome: 'activated' | 'unchanged' | 'rejected';
  reason?: string;
}

export class LiveModel {
  #pool: ScorerPool | null = null;
  #chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly redis: Redis,
    private readonly keys: KeySpace,
    private readonly available: readonly string[],
    private readonly logger: Logger,
    private readonly workers = 2,
    private readonly onSwap?: (o: SwapOutcome) => void,
  ) {}

  /** The ranker for a request: the pool of the active model, or null (heuristic). */
  ranker(): Ranker | null {
    return this.#pool;
  }

  get version(): string | null {
    return this.#pool?.version ?? null;
  }

  /** Load whatever the registry marks active (at start-up). */
  async loadActive(): Promise<SwapOutcome | null> {
    const v = await activeVersion(this.redis, this.keys);
    return v === null ? null : this.activate(v);
  }

  /** Switch to `version`; swaps are serialised, so announcements in a burst apply in order. */
  activate(version: string): Promise<SwapOutcome> {
    const next = this.#chain.then(() => this.#activate(version));
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async #activate(version: string): Promise<SwapOutcome> {
    if (this.#pool?.version === version) return { version, outcome: 'unchanged' };
    const log = this.logger.child({ module: 'live-model', version });
    try {
      const entry = await readModel(this.redis, this.keys, version);
      if (entry === null) throw new Error(`model ${version} is not in the registry`);
      const model = await checkModel(entry.meta, entry.bytes, this.available, {
        onnx: `registry:${version}:onnx`,
        meta: `registry:${version}:meta`,
      });
      if (this.#pool === null) {
        this.#pool = await ScorerPool.create({ model, size: this.workers });
      } else {
        await this.#pool.swap(model);
      }
      log.info({ features: model.meta.features.length }, 'model activated');
      const out: SwapOutcome = { version, outcome: 'activated' };
      this.onSwap?.(out);
      return out;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      log.error({ reason, keeping: this.#pool?.version ?? 'heuristic' }, 'model refused');
      await rejectModel(this.redis, this.keys, version, reason).catch(() => undefined);
      const out: SwapOutcome = { version, outcome: 'rejected', reason };
      this.onSwap?.(out);
      return out;
    }
  }

  async close(): Promise<void> {
    await this.#chain;
    await this.#pool?.close();
    this.#pool = null;
  }
}
