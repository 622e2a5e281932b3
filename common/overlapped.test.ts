import { describe, expect, it } from 'vitest';
import { OverlappedWrites, startAhead } from './overlapped.ts';

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

describe('startAhead', () => {
  const tick = () => new Promise((r) => setTimeout(r, 0));

  it('starts tasks in order, at most `limit` at once, each as one before it ends', async () => {
    const tasks = Array.from({ length: 4 }, () => controlled());
    const started: number[] = [];
    const ahead = startAhead(4, 2, (i) => {
      started.push(i);
      return tasks[i]!.promise.then(() => i * 10);
    });
    await tick();
    expect(started).toEqual([0, 1]);
    tasks[1]!.settle(); // a later task ending first frees its place too
    await tick();
    expect(started).toEqual([0, 1, 2]);
    tasks[0]!.settle();
    tasks[2]!.settle();
    tasks[3]!.settle();
    expect(await Promise.all([0, 1, 2, 3].map((i) => ahead.take(i)))).toEqual([0, 10, 20, 30]);
    expect(started).toEqual([0, 1, 2, 3]);
  });

  it("gives a task's failure to whoever awaits its result, and goes on with the others", async () => {
    const ahead = startAhead(3, 1, (i) =>
      i === 1 ? Promise.reject(new Error('trainer 1 failed')) : Promise.resolve(i),
    );
    expect(await ahead.take(0)).toBe(0);
    await expect(ahead.take(1)).rejects.toThrow('trainer 1 failed');
    expect(await ahead.take(2)).toBe(2);
    // handed over once: not kept after
    expect(() => ahead.take(2)).toThrow('task 2: no such task, or taken already');
  });

  it('starts nothing more once stopped, and waits for the running tasks', async () => {
    const first = controlled();
    const started: number[] = [];
    const ahead = startAhead(3, 1, (i) => {
      started.push(i);
      return i === 0 ? first.promise : Promise.resolve();
    });
    await tick();
    let stopped = false;
    const stopping = ahead.stop().then(() => (stopped = true));
    await tick();
    expect(stopped).toBe(false); // task 0 still runs
    first.settle(new Error('cut short'));
    await stopping;
    expect(started).toEqual([0]);
    await expect(ahead.take(0)).rejects.toThrow('cut short');
  });

  it('refuses a limit below one', () => {
    expect(() => startAhead(1, 0, () => Promise.resolve())).toThrow('limit must be >= 1');
  });
});
