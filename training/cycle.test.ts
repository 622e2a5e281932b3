import { describe, expect, it } from 'vitest';
import { promotionDecision } from './cycle.ts';

describe('promotion gate', () => {
  it('refuses a candidate that does not beat the best baseline', () => {
    const d = promotionDecision({ ranker: 0.012, popular: 0.001, repurchase_popular: 0.02 });
    expect(d.promoted).toBe(false);
    expect(d.reason).toMatch(/not above the best baseline \(repurchase_popular\) 0\.02000/);
  });

  it('refuses a candidate worse than the active model on the same rows', () => {
    const d = promotionDecision(
      { ranker: 0.03, popular: 0.01, repurchase_popular: 0.02, active: 0.031 },
      'v1',
    );
    expect(d.promoted).toBe(false);
    expect(d.reason).toMatch(/below the active model v1's 0\.03100/);
  });

  it('promotes a candidate above the baselines and at least as good as the active model', () => {
    expect(
      promotionDecision({ ranker: 0.03, popular: 0.01, repurchase_popular: 0.02, active: 0.03 })
        .promoted,
    ).toBe(true);
    expect(promotionDecision({ ranker: 0.03, popular: 0.01 }).promoted).toBe(true);
  });

  it('refuses a candidate whose MAP is not a number', () => {
    expect(promotionDecision({ ranker: NaN, popular: 0 }).promoted).toBe(false);
  });
});
