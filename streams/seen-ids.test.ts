import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SeenEventIds } from './seen-ids.ts';

describe('SeenEventIds', () => {
  it('tells a new id from one seen before, through its table growing', () => {
    const seen = new SeenEventIds();
    const ids = Array.from({ length: 50_000 }, (_, i) =>
      createHash('sha256').update(String(i)).digest('hex').slice(0, 32),
    );
    expect(ids.every((id) => seen.add(id))).toBe(true);
    expect(ids.some((id) => seen.add(id))).toBe(false);
    expect(seen.add('f'.repeat(32))).toBe(true);
  });

  it('takes any string: short, empty, non-hex, ids that differ in one character', () => {
    const seen = new SeenEventIds();
    for (const id of ['', 'a', 'b', 'ab', 'ba', 'order-1', 'order-2', 'ünï', '0'.repeat(32)]) {
      expect(seen.add(id)).toBe(true);
      expect(seen.add(id)).toBe(false);
    }
  });
});
