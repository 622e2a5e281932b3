/**
 * The running A/B experiment of one serving instance (models/experiments.ts): every variant's
 * model loaded in a scorer pool of its own, and each request's variant picked from its customer
 * id (sticky: the same on every instance). Like the live model (live-model.ts) it acts on the
 * registry only: `sync()` re-reads the experiment (at start, on every registry announcement, and
 * periodically), and a new experiment's models are checked exactly as the active one's (fixture
 * policy, then `verifyModel`: signature, features, checksum, ONNX, a worker that loads it). A
 * variant whose model is refused ranks with the heuristic and every answer of it says so
 * (`model_refused`); a version failing a check is marked rejected in the registry. No unchecked
 * model ever ranks.
 *
 * Without an experiment `assign()` returns null and the request is ranked by the live model,
 * exactly as before; a stopped experiment's pools are closed.
 */
import { SerialSync } from './serial-sync.ts';
import type { RedisClient } from '../common/redis.ts';
import type { Logger } from '../common/logger.ts';
import type { KeySpace } from '../features/keys.ts';
import {
  HEURISTIC_MODEL,
  VariantPicker,
  readExperiment,
  type Experiment,
  ExperimentError,
} from '../models/experiments.ts';
import { readModel, rejectModel, verifyModel } from '../models/registry.ts';
import { UNSIGNED_TRUST, type ModelTrust } from '../models/signing.ts';
import { fixtureRefusal } from './live-model.ts';
import { HEURISTIC_VERSION, type NoModel, type Ranker } from './ranking.ts';
import { ScorerPool, type ScorerEvent } from './scoring/pool.ts';

/** Why a variant's answers are ranked by the heuristic (`ranker.reason`). */
export interface VariantNoModel {
  /** `variant_heuristic`: the variant is the heuristic; `model_refused`: its model was refused. */
  readonly reason: NoModel['reason'] | 'variant_heuristic';
  readonly message: string;
}

/** A request's variant: what ranks it, and the names its answer carries. */
export interface VariantAssignment {
  readonly experiment: string;
  readonly variant: string;
  /** The variant's model, or null: the heuristic ranks (`noModel` says why). */
  readonly ranker: Ranker | null;
  readonly noModel: VariantNoModel;
}

/** A variant as this instance serves it (`LiveExperiment.current`). */
export interface ServedVariant {
  readonly name: string;
  /** The model version the experiment names, or `heuristic`. */
  readonly model: string;
  readonly weight: number;
  /** What ranks its answers here: the model version, or `heuristic-v2`. */
  readonly servedBy: string;
  /** Why not the named model (a refusal), else null. */
  readonly refused: string | null;
}

export interface ServedExperiment {
  readonly name: string;
  readonly startedAt: number;
  readonly variants: readonly ServedVariant[];
}

/** What a sync did: `started` (a new experiment loaded), `stopped`, or `unchanged`. */
export interface ExperimentChange {
  readonly outcome: 'started' | 'stopped' | 'unchanged';
  readonly experiment: ServedExperiment | null;
}

export interface LiveExperimentOptions {
  /** Scorer worker threads per variant model (default 2). */
  readonly workers?: number;
  readonly scorerTimeoutMs?: number;
  readonly onScorerEvent?: (e: ScorerEvent) => void;
  /** Serve fixture models (benchmarks, tests), as `LiveModelOptions.allowFixtureModel`. */
  readonly allowFixtureModel?: boolean;
  readonly trust?: ModelTrust;
  /** Called after every sync that started or stopped an experiment here. */
  readonly onChange?: (c: ExperimentChange) => void;
}

/** How long a replaced experiment's pools stay open for the requests that picked them (ms). */
const RETIRE_GRACE_MS = 2_000;

async function closePools(pools: readonly ScorerPool[]): Promise<void> {
  await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
}

interface State {
  readonly served: ServedExperiment;
  readonly picker: VariantPicker;
  /** One per variant, in the experiment's order (frozen: handed to every request). */
  readonly assignments: readonly VariantAssignment[];
  readonly pools: readonly ScorerPool[];
}

export class LiveExperiment {
  #state: State | null = null;
  /** Syncs one at a time; a burst while one runs costs one more. */
  readonly #syncs = new SerialSync<ExperimentChange | null>(() => this.#sync());
  /** Pools of replaced experiments, closed when their timer fires (or by `close()`). */
  readonly #retiring = new Map<NodeJS.Timeout, readonly ScorerPool[]>();
  readonly #opts: LiveExperimentOptions;
  readonly #trust: ModelTrust;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly available: readonly string[],
    private readonly logger: Logger,
    opts: LiveExperimentOptions = {},
  ) {
    this.#opts = opts;
    this.#trust = opts.trust ?? UNSIGNED_TRUST;
  }

  /** The variant of `customerId`'s request, or null when no experiment runs here (hot path). */
  assign(customerId: string): VariantAssignment | null {
    const s = this.#state;
    if (s === null) return null;
    return s.assignments[s.picker.pick(customerId)] ?? null;
  }

  /** The experiment this instance runs, its variants and what ranks each; null when none. */
  get current(): ServedExperiment | null {
    return this.#state?.served ?? null;
  }

  /**
   * Re-read the registry's experiment and follow it: load a new one's models, drop a stopped one.
   * Syncs are serialised; a burst while one runs costs one more. Null when Redis did not answer
   * (nothing changes).
   */
  sync(): Promise<ExperimentChange | null> {
    return this.#syncs.run();
  }

  async #sync(): Promise<ExperimentChange | null> {
    const log = this.logger.child({ module: 'live-experiment' });
    let exp: Experiment | null;
    try {
      exp = await readExperiment(this.redis, this.keys);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      if (!(err instanceof ExperimentError)) {
        log.warn({ err: why }, 'cannot read the experiment; keeping the current one');
        return null;
      }
      log.error({ err: why }, 'the registry holds an invalid experiment; running none');
      exp = null;
    }
    const current = this.#state;
    if (exp === null || exp.status !== 'running') {
      if (current === null) return { outcome: 'unchanged', experiment: null };
      this.#state = null;
      this.#retire(current);
      log.info({ experiment: current.served.name }, 'experiment stopped');
      return this.#changed({ outcome: 'stopped', experiment: null });
    }
    if (current?.served.name === exp.name && current.served.startedAt === exp.startedAt) {
      return { outcome: 'unchanged', experiment: current.served };
    }
    const next = await this.#load(exp);
    this.#state = next;
    if (current !== null) this.#retire(current);
    log.info({ experiment: next.served }, 'experiment started');
    return this.#changed({ outcome: 'started', experiment: next.served });
  }

  #changed(c: ExperimentChange): ExperimentChange {
    this.#opts.onChange?.(c);
    return c;
  }

  /** Every variant's model checked and loaded (one pool per distinct version). */
  async #load(exp: Experiment): Promise<State> {
    const loaded = new Map<string, { pool: ScorerPool | null; refused: string | null }>();
    for (const v of exp.variants) {
      if (v.model === HEURISTIC_MODEL || loaded.has(v.model)) continue;
      loaded.set(v.model, await this.#loadModel(exp.name, v.model));
    }
    const variants: ServedVariant[] = [];
    const assignments: VariantAssignment[] = [];
    for (const v of exp.variants) {
      const m = v.model === HEURISTIC_MODEL ? null : loaded.get(v.model);
      const pool = m?.pool ?? null;
      const refused = m?.refused ?? null;
      variants.push({
        name: v.name,
        model: v.model,
        weight: v.weight,
        servedBy: pool?.version ?? HEURISTIC_VERSION,
        refused,
      });
      const noModel: VariantNoModel =
        refused === null
          ? {
              reason: 'variant_heuristic',
              message: `variant ${v.name} of experiment ${exp.name} is ranked by ${HEURISTIC_VERSION}`,
            }
          : {
              reason: 'model_refused',
              message: `variant ${v.name} of experiment ${exp.name}: ${refused}; ranking with ${HEURISTIC_VERSION}`,
            };
      assignments.push(
        Object.freeze({ experiment: exp.name, variant: v.name, ranker: pool, noModel }),
      );
    }
    return {
      served: Object.freeze({ name: exp.name, startedAt: exp.startedAt, variants }),
      picker: new VariantPicker(exp.salt, exp.variants),
      assignments,
      pools: [...loaded.values()].flatMap((m) => (m.pool === null ? [] : [m.pool])),
    };
  }

  /** One version checked as the live model checks the active one, then loaded; or why not. */
  async #loadModel(
    experiment: string,
    version: string,
  ): Promise<{ pool: ScorerPool | null; refused: string | null }> {
    const log = this.logger.child({ module: 'live-experiment', experiment, version });
    let entry;
    try {
      entry = await readModel(this.redis, this.keys, version);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      log.error({ reason }, 'variant model refused: cannot be read');
      return { pool: null, refused: `model ${version} could not be read from the registry` };
    }
    if (entry === null) {
      const reason = `model ${version} is not in the registry`;
      log.error({ reason }, 'variant model refused');
      return { pool: null, refused: reason };
    }
    const refusal = fixtureRefusal(entry.meta, this.#opts.allowFixtureModel ?? false);
    if (refusal !== null) {
      log.error({ reason: refusal }, 'variant model refused');
      return { pool: null, refused: refusal };
    }
    try {
      const model = await verifyModel(entry, this.available, this.#trust);
      const o = this.#opts;
      const pool = await ScorerPool.create({
        model,
        size: o.workers ?? 2,
        ...(o.scorerTimeoutMs === undefined ? {} : { timeoutMs: o.scorerTimeoutMs }),
        ...(o.onScorerEvent === undefined ? {} : { onEvent: o.onScorerEvent }),
      });
      log.info({ features: model.meta.features.length }, 'variant model loaded');
      return { pool, refused: null };
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      log.error({ reason }, 'variant model refused');
      await rejectModel(this.redis, this.keys, version, reason).catch(() => undefined);
      // Answers carry a fixed sentence, as the live model's: the check's own message (logged
      // above, kept in the registry's `reason`) may name files, keys or library internals.
      return {
        pool: null,
        refused:
          `model ${version} failed this instance's checks and was marked rejected ` +
          '(`npm run model -- list` shows why)',
      };
    }
  }

  /**
   * Close a replaced experiment's pools after `RETIRE_GRACE_MS`, so the requests that picked one
   * just before the change finish on it (a closed pool would fail them into the heuristic).
   */
  #retire(state: State): void {
    if (state.pools.length === 0) return;
    const timer = setTimeout(() => {
      this.#retiring.delete(timer);
      void closePools(state.pools);
    }, RETIRE_GRACE_MS);
    timer.unref();
    this.#retiring.set(timer, state.pools);
  }

  async close(): Promise<void> {
    await this.#syncs.settled();
    const s = this.#state;
    this.#state = null;
    const pending = [...this.#retiring.entries()];
    this.#retiring.clear();
    for (const [timer] of pending) clearTimeout(timer);
    await closePools([...pending.flatMap(([, pools]) => pools), ...(s?.pools ?? [])]);
  }
}
