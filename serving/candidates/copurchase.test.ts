import { describe, expect, it } from 'vitest';
import { addCopurchase, setCopurchaseShares } from './copurchase.ts';
import { CandidatePool } from './pool.ts';

describe('co-purchase share', () => {
  it('is the mean over seeds of the article’s share of each seed’s neighbours, whatever proposed it', () => {
    const pool = new CandidatePool();
    pool.add('s1', 'repurchase', 0);
    const ln = Math.log;
    const shares = addCopurchase(
      pool,
      [
        // seed s1: x 3 of 4, y 1 of 4
        {
          seed: 's1',
          entries: [
            { articleId: 'x', logScore: ln(3) },
            { articleId: 'y', logScore: ln(1) },
          ],
        },
        // seed s2: x 1 of 2, s1 1 of 2 (a seed: never a co-purchase candidate, but it has a share)
        {
          seed: 's2',
          entries: [
            { articleId: 'x', logScore: ln(1) },
            { articleId: 's1', logScore: ln(1) },
          ],
        },
      ],
      () => false,
      1,
    );
    pool.add('y', 'trending_global', 0);
    setCopurchaseShares(pool, shares);
    const share = (id: string) => pool.byId.get(id)?.copurchaseShare;
    expect(share('x')).toBeCloseTo((3 / 4 + 1 / 2) / 2, 12);
    expect(share('y')).toBeCloseTo(1 / 4 / 2, 12);
    expect(share('s1')).toBeCloseTo(1 / 2 / 2, 12);
    // Only the top neighbour (quota 1) came from co-purchase.
    expect(pool.byId.get('x')?.sources).toEqual(['copurchase']);
    expect(pool.byId.get('y')?.sources).toEqual(['trending_global']);
    expect(pool.byId.get('s1')?.sources).toEqual(['repurchase']);
  });
});
