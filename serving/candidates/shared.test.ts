/**
 * The shared reads' staleness bound and size bound, with a hand-driven clock (their use by the
 * recommendations route against the real Redis: test/integration/serving-app.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { emptyArticleState } from '../../features/state.ts';
import { SharedReads } from './shared.ts';

describe('SharedReads', () => {
  it('gives a value for at most maxAgeMs after its read was sent', () => {
    let clock = 1_000;
    const shared = new SharedReads({ maxAgeMs: 500, clock: () => clock });
    const sent = shared.now();
    clock += 40; // the read's round trip
    shared.keepArticles([emptyArticleState('a')], sent);
    shared.keepTop('set', 10, [{ articleId: 'a', logScore: 1 }], sent);
    expect(shared.article('a')?.articleId).toBe('a');
    expect(shared.top('set', 10)).toEqual([{ articleId: 'a', logScore: 1 }]);
    expect(shared.top('set', 20)).toBeUndefined(); // another length is another read
    expect(shared.article('b')).toBeUndefined();
    clock = sent + 500;
    expect(shared.article('a')).toBeDefined();
    clock = sent + 501;
    expect(shared.article('a')).toBeUndefined();
    expect(shared.top('set', 10)).toBeUndefined();
  });

  it('keeps nothing with maxAgeMs 0, and stays within maxArticles', () => {
    let clock = 0;
    const none = new SharedReads({ maxAgeMs: 0, clock: () => clock });
    none.keepArticles([emptyArticleState('a')], 0);
    expect(none.article('a')).toBeUndefined();

    const small = new SharedReads({ maxAgeMs: 100, maxArticles: 3, clock: () => clock });
    small.keepArticles(['a', 'b'].map(emptyArticleState), 0);
    clock = 150; // a and b expired: dropped to make room
    small.keepArticles(['c', 'd'].map(emptyArticleState), 150);
    expect(['a', 'b', 'c', 'd'].map((id) => small.article(id) !== undefined)).toEqual([
      false,
      false,
      true,
      true,
    ]);
    small.keepArticles(['e', 'f'].map(emptyArticleState), 150); // none expired: start over
    expect(['c', 'd', 'e', 'f'].map((id) => small.article(id) !== undefined)).toEqual([
      false,
      false,
      true,
      true,
    ]);
  });
});
