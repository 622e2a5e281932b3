/**
 * The recipe flags shared by `npm run train` and `npm run eval`: each changes its one setting,
 * none changes nothing, and a bad value is a clear error naming the flag.
 */
import { describe, expect, it } from 'vitest';
import { RECIPE } from './recipe.ts';
import { recipeOverrides } from './recipe-flags.ts';

describe('recipeOverrides', () => {
  it('is empty without flags, so both commands run the recipe exactly', () => {
    expect(recipeOverrides({})).toEqual({});
  });

  it('sets what the flags name', () => {
    expect(
      recipeOverrides({ trials: '3', 'min-rounds': '0', 'no-refit': true, seed: '7' }),
    ).toEqual({ trials: 3, minRounds: 0, refit: false, seed: 7 });
    expect(recipeOverrides({ 'label-customers': '500' })).toEqual({ labelCustomers: 500 });
    expect(() => recipeOverrides({ 'label-customers': '0' })).toThrow(
      '--label-customers must be an integer >= 1',
    );
  });

  it('sets the data size, the negatives share and the blend, keeping the rest of `large`', () => {
    expect(recipeOverrides({ negatives: '1' }).large).toEqual({ ...RECIPE.large, negatives: 1 });
    expect(recipeOverrides({ blend: '0' }).large).toEqual({ ...RECIPE.large, blend: 0 });
    expect(recipeOverrides({ 'large-from': '0', blend: '0.3' }).large).toEqual({
      ...RECIPE.large,
      fromQueries: 0,
      blend: 0.3,
    });
    expect(recipeOverrides({ 'max-rounds': '500' })).toEqual({ maxRounds: 500 });
    expect(() => recipeOverrides({ 'max-rounds': '0' })).toThrow('--max-rounds must be');
    expect(() => recipeOverrides({ 'large-from': '-3' })).toThrow(
      '--large-from must be an integer >= 0',
    );
  });

  it('gives exactly the gate weeks asked for, and the weeks each fit learns from', () => {
    expect(recipeOverrides({ 'gate-weeks': '6', 'fit-weeks': '20' })).toEqual({
      gateWeeks: 6,
      gate: { ...RECIPE.gate, maxWeeks: 6 },
      fitWeeks: 20,
    });
  });

  it('refuses values out of range, naming the flag', () => {
    expect(() => recipeOverrides({ negatives: '0' })).toThrow(
      '--negatives must be a number in (0, 1]',
    );
    expect(() => recipeOverrides({ negatives: 'half' })).toThrow('--negatives');
    expect(() => recipeOverrides({ blend: '-0.5' })).toThrow('--blend must be a number >= 0');
    expect(() => recipeOverrides({ blend: 'some' })).toThrow('--blend must be');
    expect(() => recipeOverrides({ 'large-from': '1.5' })).toThrow('--large-from must be');
    expect(() => recipeOverrides({ trials: '0' })).toThrow('--trials must be an integer >= 1');
    expect(() => recipeOverrides({ 'fit-weeks': '0' })).toThrow('--fit-weeks must be');
  });
});
