import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../common/config.ts';
import {
  ExperimentError,
  VariantPicker,
  assignVariant,
  checkExperimentSpec,
  parseVariantArg,
} from './experiments.ts';

const VARIANTS = [
  { name: 'control', model: 'heuristic', weight: 70 },
  { name: 'b', model: 'v-b', weight: 20 },
  { name: 'c', model: 'v-c', weight: 10 },
];
const ids = (n: number, prefix = 'cust') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('variant assignment', () => {
  it('is sticky: the same salt and customer give the same variant, whatever picker computes it', () => {
    const a = new VariantPicker('s1', VARIANTS);
    const b = new VariantPicker('s1', VARIANTS);
    for (const id of ids(500)) {
      expect(a.pick(id)).toBe(b.pick(id));
      expect(VARIANTS[a.pick(id)]).toBe(assignVariant('s1', VARIANTS, id));
    }
  });

  it('is the documented function: the first 8 bytes of sha256(salt:id) times the total weight, over 2^64', () => {
    for (const id of ids(200)) {
      const x = createHash('sha256').update(`salty:${id}`).digest().readBigUInt64BE(0);
      const point = Number((x * 100n) >> 64n);
      const expected = point < 70 ? 'control' : point < 90 ? 'b' : 'c';
      expect(assignVariant('salty', VARIANTS, id).name).toBe(expected);
    }
  });

  it('follows the weights over many customers (within 1.5 points of each share)', () => {
    const n = 40_000;
    const counts = new Map<string, number>();
    const picker = new VariantPicker('exp-weights', VARIANTS);
    for (const id of ids(n)) {
      const v = VARIANTS[picker.pick(id)]?.name ?? '?';
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    for (const v of VARIANTS) {
      expect(Math.abs((counts.get(v.name) ?? 0) / n - v.weight / 100)).toBeLessThan(0.015);
    }
  });

  it('reshuffles with another salt, and gives nobody a variant of weight 0', () => {
    const n = 10_000;
    let moved = 0;
    for (const id of ids(n)) {
      if (assignVariant('one', VARIANTS, id) !== assignVariant('two', VARIANTS, id)) moved++;
    }
    // Independent assignments differ with probability 1 - (0.7² + 0.2² + 0.1²) = 0.46.
    expect(moved / n).toBeGreaterThan(0.42);
    expect(moved / n).toBeLessThan(0.5);
    const zero = [
      { name: 'a', model: 'heuristic', weight: 0 },
      { name: 'b', model: 'v', weight: 3 },
    ];
    expect(ids(2000).every((id) => assignVariant('z', zero, id).name === 'b')).toBe(true);
  });
});

describe('experiment specs', () => {
  it('parses --variant name=model:weight, a version may hold colons', () => {
    expect(parseVariantArg('control=heuristic:50')).toEqual({
      name: 'control',
      model: 'heuristic',
      weight: 50,
    });
    expect(parseVariantArg('t=lgbm:2026-11-30:7')).toEqual({
      name: 't',
      model: 'lgbm:2026-11-30',
      weight: 7,
    });
    for (const bad of ['control', 'control=heuristic', '=heuristic:1', 'c=:1', 'c=h:', 'c=h:1.5']) {
      expect(() => parseVariantArg(bad)).toThrow(ExperimentError);
    }
    expect(() => parseVariantArg('c=h:x')).toThrow(/"x" is not a whole number/);
  });

  it('names every problem at once, and salts by the name by default', () => {
    expect(checkExperimentSpec({ name: 'e1', variants: VARIANTS }).salt).toBe('e1');
    expect(checkExperimentSpec({ name: 'e1', salt: 's', variants: VARIANTS }).salt).toBe('s');
    const err = (() => {
      try {
        checkExperimentSpec({
          name: 'bad name',
          variants: [
            { name: 'a', model: 'heuristic', weight: 0 },
            { name: 'a', model: 'v', weight: 0 },
          ],
        });
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ExperimentError);
    expect((err as ExperimentError).code).toBe('REC_ERR_EXPERIMENT');
    const message = (err as Error).message;
    expect(message).toContain('an experiment name is');
    expect(message).toContain('variant a twice');
    expect(message).toContain('the weights sum to 0');
    expect(() =>
      checkExperimentSpec({ name: 'one', variants: [{ name: 'a', model: 'v', weight: 1 }] }),
    ).toThrow(/at least two variants/);
    expect(() =>
      checkExperimentSpec({
        name: 'w',
        variants: [
          { name: 'a', model: 'v', weight: -1 },
          { name: 'b', model: 'v', weight: 1.5 },
        ],
      }),
    ).toThrow(/0 or more.*integer/);
  });
});

describe('promotion settings', () => {
  it('default to a switch; PROMOTE_AS=experiment takes a weight from 1 to 99', () => {
    expect(loadConfig({}).promotion).toEqual({ as: 'switch', experimentWeight: 10 });
    expect(
      loadConfig({ PROMOTE_AS: 'Experiment', PROMOTE_EXPERIMENT_WEIGHT: '25' }).promotion,
    ).toEqual({ as: 'experiment', experimentWeight: 25 });
    expect(() => loadConfig({ PROMOTE_AS: 'canary' })).toThrow(ConfigError);
    expect(() => loadConfig({ PROMOTE_EXPERIMENT_WEIGHT: '100' })).toThrow(
      /PROMOTE_EXPERIMENT_WEIGHT: must be from 1 to 99/,
    );
  });
});
