import { describe, expect, it } from 'vitest';
import { OverlappedWrites } from './overlapped.ts';

/** A write that resolves (or rejects) when told to. */
function controlled() {
  let settle: (err?: Error) => void = () => undefined;
  const promise = new Promise<void>((resolve, reject) => {
    settle = (err) => {
      if (err) reject(err);
      else resolve();
    };
  });
  return {
    promise,
    settle: (err?: Error) => {
      settle(err);
    },
  };
}

describe('OverlappedWrites', () => {
  it('keeps at most `limit` writes in flight and drains them all', async () => {
    const writes = new OverlappedWrites(2);
    const a = controlled();
    const b = controlled();
    let started = 0;
    await writes.add(() => (started++, a.promise));
    // The second add reaches the limit: it waits until one of the two settles.
    let second = false;
    const adding = writes.add(() => (started++, b.promise)).then(() => (second = true));
    await Promise.resolve();
    expect(started).toBe(2);
    expect(second).toBe(false);
    a.settle();
    await adding;
    expect(second).toBe(true);
    let drained = false;
    const draining = writes.drain().then(() => (drained = true));
    await Promise.resolve();
    expect(drained).toBe(false);
    b.settle();
    await draining;
    expect(drained).toBe(true);
  });

  it('throws the first failure at the next add and at drain', async () => {
    const writes = new OverlappedWrites(4);
    const a = controlled();
    await writes.add(() => a.promise);
    a.settle(new Error('redis said no'));
    await a.promise.catch(() => undefined);
    await expect(writes.add(() => Promise.resolve())).rejects.toThrow('redis said no');
    await expect(writes.drain()).rejects.toThrow('redis said no');
  });
});
