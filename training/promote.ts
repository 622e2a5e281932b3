/**
 * Promotion of a model the gate passed, as configured (`PROMOTE_AS`, common/config.ts): a switch
 * of the registry's `active` pointer (the default), or an A/B experiment of the new model against
 * the active one (the heuristic when none is active) on `PROMOTE_EXPERIMENT_WEIGHT` percent of
 * the customers, left for a person to stop (`npm run experiment -- stop --promote treatment`).
 * Both verify the model first (models/registry.ts `verifyModel`); an experiment is refused while
 * another runs, and the new model then stays registered, not active.
 */
import type { RedisClient } from '../common/redis.ts';
import { PROMOTE_BY_SWITCH, type PromotionConfig } from '../common/config.ts';
import type { KeySpace } from '../features/keys.ts';
import {
  EXPERIMENT_NAME_PATTERN,
  ExperimentError,
  HEURISTIC_MODEL,
  startExperiment,
  type Experiment,
} from '../models/experiments.ts';
import { activateModel, activeVersion } from '../models/registry.ts';
import { UNSIGNED_TRUST, type ModelTrust } from '../models/signing.ts';

/** The variant names of a promotion experiment. */
export const PROMOTION_VARIANTS = { control: 'control', treatment: 'treatment' } as const;

export type PromotionOutcome =
  { readonly as: 'active' } | { readonly as: 'experiment'; readonly experiment: Experiment };

export interface PromoteOptions {
  /** The features the deployment computes (`featureNames(embeddings)`). */
  readonly available: readonly string[];
  readonly trust?: ModelTrust;
  /** Default: switch. */
  readonly promotion?: PromotionConfig;
  readonly now?: number;
}

/** The experiment name of promoting `version`: `promote-<version>`, fitted to the name pattern. */
export function promotionExperimentName(version: string): string {
  const name = `promote-${version.replace(/[^A-Za-z0-9_.-]/g, '-')}`.slice(0, 64);
  if (!EXPERIMENT_NAME_PATTERN.test(name)) throw new ExperimentError(`bad name ${name}`);
  return name;
}

/** Promote `version` as `opts.promotion` says (see the module comment). */
export async function promoteModel(
  redis: RedisClient,
  keys: KeySpace,
  version: string,
  opts: PromoteOptions,
): Promise<PromotionOutcome> {
  const promotion = opts.promotion ?? PROMOTE_BY_SWITCH;
  const trust = opts.trust ?? UNSIGNED_TRUST;
  if (promotion.as === 'switch') {
    await activateModel(redis, keys, version, { available: opts.available, trust });
    return { as: 'active' };
  }
  const active = await activeVersion(redis, keys);
  const control = active === null || active === version ? HEURISTIC_MODEL : active;
  const name = promotionExperimentName(version);
  try {
    const experiment = await startExperiment(
      redis,
      keys,
      {
        name,
        variants: [
          {
            name: PROMOTION_VARIANTS.control,
            model: control,
            weight: 100 - promotion.experimentWeight,
          },
          {
            name: PROMOTION_VARIANTS.treatment,
            model: version,
            weight: promotion.experimentWeight,
          },
        ],
      },
      { available: opts.available, trust, ...(opts.now === undefined ? {} : { now: opts.now }) },
    );
    return { as: 'experiment', experiment };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new ExperimentError(
      `model ${version} passed the gate but its experiment was not started (PROMOTE_AS=experiment): ` +
        `${why}. It stays registered; start it by hand: npm run experiment -- start --name ${name} ` +
        `--variant control=${control}:${100 - promotion.experimentWeight} ` +
        `--variant treatment=${version}:${promotion.experimentWeight}`,
      { cause: err },
    );
  }
}
