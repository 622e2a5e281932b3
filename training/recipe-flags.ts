/**
 * Command-line overrides of the recipe, shared by `npm run train` and `npm run eval`: the same
 * flags mean the same settings in both, and without them both run `RECIPE` exactly.
 */
import { RECIPE, type Recipe } from './recipe.ts';

/** `parseArgs` options of the recipe flags. */
export const RECIPE_FLAGS = {
  trials: { type: 'string' },
  'train-weeks': { type: 'string' },
  'fit-weeks': { type: 'string' },
  'gate-weeks': { type: 'string' },
  'min-rounds': { type: 'string' },
  'max-rounds': { type: 'string' },
  'large-from': { type: 'string' },
  negatives: { type: 'string' },
  blend: { type: 'string' },
  'label-customers': { type: 'string' },
  'no-refit': { type: 'boolean', default: false },
  k: { type: 'string' },
  seed: { type: 'string' },
} as const;

type Values = Partial<Record<keyof typeof RECIPE_FLAGS, string | boolean | undefined>>;

function int(name: string, v: string | boolean | undefined, min: number): number | undefined {
  if (v === undefined || typeof v === 'boolean') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`--${name} must be an integer >= ${min} (got "${v}")`);
  }
  return n;
}

function share(name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined || typeof v === 'boolean') return undefined;
  const n = Number(v);
  if (!(n > 0 && n <= 1)) throw new Error(`--${name} must be a number in (0, 1] (got "${v}")`);
  return n;
}

function weight(name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined || typeof v === 'boolean') return undefined;
  const n = Number(v);
  if (!(n >= 0 && Number.isFinite(n))) {
    throw new Error(`--${name} must be a number >= 0 (got "${v}")`);
  }
  return n;
}

/** The recipe settings the flags change (empty when none is given). */
export function recipeOverrides(values: Values): Partial<Recipe> {
  const out: { -readonly [K in keyof Recipe]?: Recipe[K] } = {};
  const set = <K extends keyof Recipe>(key: K, v: Recipe[K] | undefined) => {
    if (v !== undefined) out[key] = v;
  };
  set('trials', int('trials', values.trials, 1));
  set('trainWeeks', int('train-weeks', values['train-weeks'], 1));
  set('fitWeeks', int('fit-weeks', values['fit-weeks'], 1));
  // N gate weeks, as many as the flag says: not extended for customers.
  const gateWeeks = int('gate-weeks', values['gate-weeks'], 1);
  if (gateWeeks !== undefined) {
    out.gateWeeks = gateWeeks;
    out.gate = { ...RECIPE.gate, maxWeeks: gateWeeks };
  }
  set('minRounds', int('min-rounds', values['min-rounds'], 0));
  set('maxRounds', int('max-rounds', values['max-rounds'], 1));
  const large = {
    fromQueries: int('large-from', values['large-from'], 0),
    negatives: share('negatives', values.negatives),
    blend: weight('blend', values.blend),
  };
  if (Object.values(large).some((v) => v !== undefined)) {
    out.large = {
      ...RECIPE.large,
      fromQueries: large.fromQueries ?? RECIPE.large.fromQueries,
      negatives: large.negatives ?? RECIPE.large.negatives,
      blend: large.blend ?? RECIPE.large.blend,
    };
  }
  set('labelCustomers', int('label-customers', values['label-customers'], 1));
  set('k', int('k', values.k, 1));
  set('seed', int('seed', values.seed, 0));
  if (values['no-refit'] === true) out.refit = false;
  return out;
}
