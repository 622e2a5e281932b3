/**
 * The live model of one serving instance: the scorer pool of the active version, replaced by a
 * hot swap when the registry's `active` pointer moves. The instance acts on that pointer only:
 * `sync()` re-reads it (at start, on every activation announcement whatever version the message
 * names, and periodically to catch a missed one; serving/server.ts) and loads the version it
 * names, so a spoofed `PUBLISH` cannot make it load anything else. A version that fails any check
 * (signature under `trust`, features serving cannot produce, checksum, ONNX that does not load, a
 * worker that cannot load it) is rejected: the current model keeps serving, and the version is
 * marked `rejected` in the registry. A refused `active` version is not checked again by later
 * syncs unless it is registered anew.
 *
 * An untrained fixture ranker (`kind: "fixture"` in its metadata, models/fixture.ts) is
 * refused unless the instance was started with `allowFixtureModel` (`npm run serve`:
 * SERVING_ALLOW_FIXTURE_MODEL=true), which only benchmarks and tests set: users must never be
 * ranked by random trees. That refusal is this instance's policy, not a defect of the model, so
 * the registry status is left alone (an instance started with the opt-in serves the same
 * version); the reason is logged, kept here and reported in every answer the heuristic ranks.
 */
import { SerialSync } from './serial-sync.ts';
import type { RedisClient } from '../common/redis.ts';
import type { KeySpace } from '../features/keys.ts';
import type { Logger } from '../common/logger.ts';
import { HEURISTIC_VERSION, NO_MODEL, type NoModel, type Ranker } from './ranking.ts';
import { ScorerPool, type ScorerEvent } from './scoring/pool.ts';
import type { ModelMeta } from '../models/model-meta.ts';
import { activeVersion, readModel, rejectModel, verifyModel } from '../models/registry.ts';
import { UNSIGNED_TRUST, type ModelTrust } from '../models/signing.ts';

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
  /** Watchdog of a scoring request (ms; `SCORER_TIMEOUT_MS`; 0: none; default 1 000). */
  readonly scorerTimeoutMs?: number;
  /** Told of the scorer pool's watchdog timeouts and worker replacements. */
  readonly onScorerEvent?: (e: ScorerEvent) => void;
  /** Called after every activation attempt with its outcome. */
  readonly onSwap?: (o: SwapOutcome) => void;
  /**
   * Serve models whose metadata says `kind: "fixture"` (untrained, random trees). For benchmarks
   * and tests only; default false: such a version is refused and the current model (or the
   * heuristic) keeps ranking.
   */
  readonly allowFixtureModel?: boolean;
  /**
   * Which signatures to require (config `models.trust`: MODEL_SIGNING_KEY,
   * MODEL_ALLOW_UNSIGNED). Default: no key, unsigned models accepted.
   */
  readonly trust?: ModelTrust;
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
  /** Syncs one at a time; a burst while one runs costs one more. */
  readonly #syncs = new SerialSync<SwapOutcome | null>(() => this.#sync());
  /**
   * The latest version this instance refused or rejected, and why (cleared by an activation);
   * `registeredAt` and `outcome` let a later sync skip it without checking it again.
   */
  #refused: {
    version: string;
    reason: string;
    registeredAt: string | null;
    out: SwapOutcome;
  } | null = null;
  readonly #workers: number;
  readonly #scorerTimeoutMs: number | undefined;
  readonly #onScorerEvent: ((e: ScorerEvent) => void) | undefined;
  readonly #onSwap: ((o: SwapOutcome) => void) | undefined;
  readonly #allowFixture: boolean;
  readonly #trust: ModelTrust;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly available: readonly string[],
    private readonly logger: Logger,
    opts: LiveModelOptions = {},
  ) {
    this.#workers = opts.workers ?? 2;
    this.#scorerTimeoutMs = opts.scorerTimeoutMs;
    this.#onScorerEvent = opts.onScorerEvent;
    this.#onSwap = opts.onSwap;
    this.#allowFixture = opts.allowFixtureModel ?? false;
    this.#trust = opts.trust ?? UNSIGNED_TRUST;
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

  /** Load whatever the registry marks active (at start-up): `sync()`. */
  loadActive(): Promise<SwapOutcome | null> {
    return this.sync();
  }

  /**
   * Re-read the registry's `active` pointer and switch to the version it names (null: no active
   * version, or Redis did not answer; the current model stays). Syncs are serialised, and a
   * burst of calls while one runs costs one more. Nothing else loads a model.
   */
  sync(): Promise<SwapOutcome | null> {
    return this.#syncs.run();
  }

  async #sync(): Promise<SwapOutcome | null> {
    let version: string | null;
    try {
      version = await activeVersion(this.redis, this.keys);
    } catch (err) {
      this.logger.warn(
        { module: 'live-model', err: err instanceof Error ? err.message : String(err) },
        'cannot read the active model version; keeping the current model',
      );
      return null;
    }
    return version === null ? null : this.#activate(version);
  }

  async #activate(version: string): Promise<SwapOutcome> {
    if (this.#pool?.version === version) return { version, outcome: 'unchanged' };
    const refused = this.#refused;
    if (refused?.version === version) {
      // Refused already: check again only when the version was registered anew.
      const at = await this.redis
        .hget(this.keys.models.model(version), 'registered_at')
        .catch(() => refused.registeredAt);
      if (at === refused.registeredAt) return refused.out;
    }
    const log = this.logger.child({ module: 'live-model', version });
    const keeping = () => this.#pool?.version ?? HEURISTIC_VERSION;
    let registeredAt: string | null = null;
    try {
      const entry = await readModel(this.redis, this.keys, version);
      if (entry === null) throw new Error(`model ${version} is not in the registry`);
      registeredAt = String(entry.registeredAt);
      const refusal = fixtureRefusal(entry.meta, this.#allowFixture);
      if (refusal !== null) {
        log.error({ reason: refusal, keeping: keeping() }, 'model refused');
        const out: SwapOutcome = { version, outcome: 'refused', reason: refusal };
        this.#refused = { version, reason: refusal, registeredAt, out };
        this.#onSwap?.(out);
        return out;
      }
      const model = await verifyModel(entry, this.available, this.#trust);
      if (this.#pool === null) {
        this.#pool = await ScorerPool.create({
          model,
          size: this.#workers,
          ...(this.#scorerTimeoutMs === undefined ? {} : { timeoutMs: this.#scorerTimeoutMs }),
          ...(this.#onScorerEvent === undefined ? {} : { onEvent: this.#onScorerEvent }),
        });
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
      const out: SwapOutcome = { version, outcome: 'rejected', reason };
      // Answers carry a fixed sentence; the check's own message (logged above, kept in the
      // registry's `reason`) may name files, keys or library internals.
      this.#refused = {
        version,
        reason:
          `model ${version} failed this instance's checks and was marked rejected ` +
          '(`npm run model -- list` shows why)',
        registeredAt,
        out,
      };
      await rejectModel(this.redis, this.keys, version, reason).catch(() => undefined);
      this.#onSwap?.(out);
      return out;
    }
  }

  async close(): Promise<void> {
    await this.#syncs.settled();
    await this.#pool?.close();
    this.#pool = null;
  }
}
