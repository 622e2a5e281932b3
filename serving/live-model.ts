/**
 * The live model of one serving instance: the scorer pool of the active version, replaced by a
 * hot swap when another version is activated. A version that fails any check (features serving
 * cannot produce, checksum, ONNX that does not load, a worker that cannot load it) is rejected:
 * the current model keeps serving, and the version is marked `rejected` in the registry.
 *
 * An untrained fixture ranker (`kind: "fixture"` in its metadata, models/fixture.ts) is
 * refused unless the instance was started with `allowFixtureModel` (`npm run serve`:
 * SERVING_ALLOW_FIXTURE_MODEL=true), which only benchmarks and tests set: users must never be
 * ranked by random trees. That refusal is this instance's policy, not a defect of the model, so
 * the registry status is left alone (an instance started with the opt-in serves the same
 * version); the reason is logged, kept here and reported in every answer the heuristic ranks.
 */
import type { Redis } from 'ioredis';
import type { KeySpace } from '../features/keys.ts';
import type { Logger } from '../common/logger.ts';
import { HEURISTIC_VERSION, NO_MODEL, type NoModel, type Ranker } from './ranking.ts';
import { ScorerPool } from './scoring/pool.ts';
import { checkModel, type ModelMeta } from '../models/model-meta.ts';
import { activeVersion, readModel, rejectModel } from '../models/registry.ts';

/** The `npm run serve` setting that lets an instance serve fixture models (benchmarks, tests). */
export const ALLOW_FIXTURE_SETTING = 'SERVING_ALLOW_FIXTURE_MODEL';

/**
 * What an activation did: `activated`, `unchanged` (already serving it), `rejected` (the model
 * failed a check; marked in the registry) or `refused` (a fixture without the opt-in; the
 * registry is not touched).
 */
export interface SwapOutcome {
  version: string;
  outcome: 'activated' | 'unchanged' | 'rejected' | 'refused';
  reason?: string;
}

export interface LiveModelOptions {
  /** Scorer worker threads (one ONNX session each); default 2. */
  readonly workers?: number;
  /** Called after every activation attempt with its outcome. */
  readonly onSwap?: (o: SwapOutcome) => void;
  /**
   * Serve models whose metadata says `kind: "fixture"` (untrained, random trees). For benchmarks
   * and tests only; default false: such a version is refused and the current model (or the
   * heuristic) keeps ranking.
   */
  readonly allowFixtureModel?: boolean;
}

/**
 * Why a fixture is refused, or null when `meta` may be served. Exported for the model CLI, which
 * prints the same sentence when it activates a fixture.
 */
export function fixtureRefusal(meta: ModelMeta, allowFixtureModel: boolean): string | null {
  if (meta.kind !== 'fixture' || allowFixtureModel) return null;
  return (
    `model ${meta.version} is an untrained fixture ranker (kind "fixture", for benchmarks and ` +
    `tests only); serving instances refuse it unless started with ${ALLOW_FIXTURE_SETTING}=true ` +
    `(allowFixtureModel)`
  );
}

export class LiveModel {
  #pool: ScorerPool | null = null;
  #chain: Promise<unknown> = Promise.resolve();
  /** The latest version this instance refused or rejected, and why (cleared by an activation). */
  #refused: { version: string; reason: string } | null = null;
  readonly #workers: number;
  readonly #onSwap: ((o: SwapOutcome) => void) | undefined;
  readonly #allowFixture: boolean;

  constructor(
    private readonly redis: Redis,
    private readonly keys: KeySpace,
    private readonly available: readonly string[],
    private readonly logger: Logger,
    opts: LiveModelOptions = {},
  ) {
    this.#workers = opts.workers ?? 2;
    this.#onSwap = opts.onSwap;
    this.#allowFixture = opts.allowFixtureModel ?? false;
  }

  /** The ranker for a request: the pool of the active model, or null (heuristic). */
  ranker(): Ranker | null {
    return this.#pool;
  }

  get version(): string | null {
    return this.#pool?.version ?? null;
  }

  /** Whether this instance serves fixture models (`allowFixtureModel`). */
  get allowsFixtureModel(): boolean {
    return this.#allowFixture;
  }

  /**
   * Why the heuristic ranks, when `ranker()` is null: the registry's active version was refused
   * or rejected here (with the reason), or no model has been activated at all.
   */
  noModel(): NoModel {
    if (this.#refused !== null) {
      return {
        reason: 'model_refused',
        message: `${this.#refused.reason}; ranking with ${HEURISTIC_VERSION}`,
      };
    }
    return NO_MODEL;
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
    const keeping = () => this.#pool?.version ?? HEURISTIC_VERSION;
    try {
      const entry = await readModel(this.redis, this.keys, version);
      if (entry === null) throw new Error(`model ${version} is not in the registry`);
      const refusal = fixtureRefusal(entry.meta, this.#allowFixture);
      if (refusal !== null) {
        log.error({ reason: refusal, keeping: keeping() }, 'model refused');
        this.#refused = { version, reason: refusal };
        const out: SwapOutcome = { version, outcome: 'refused', reason: refusal };
        this.#onSwap?.(out);
        return out;
      }
      const model = await checkModel(entry.meta, entry.bytes, this.available, {
        onnx: `registry:${version}:onnx`,
        meta: `registry:${version}:meta`,
      });
      if (this.#pool === null) {
        this.#pool = await ScorerPool.create({ model, size: this.#workers });
      } else {
        await this.#pool.swap(model);
      }
      this.#refused = null;
      log.info({ features: model.meta.features.length, kind: model.meta.kind }, 'model activated');
      const out: SwapOutcome = { version, outcome: 'activated' };
      this.#onSwap?.(out);
      return out;
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      log.error({ reason, keeping: keeping() }, 'model refused');
      this.#refused = { version, reason: `model ${version} was rejected: ${reason}` };
      await rejectModel(this.redis, this.keys, version, reason).catch(() => undefined);
      const out: SwapOutcome = { version, outcome: 'rejected', reason };
      this.#onSwap?.(out);
      return out;
    }
  }

  async close(): Promise<void> {
    await this.#chain;
    await this.#pool?.close();
    this.#pool = null;
  }
}
