/**
 * The retraining schedule with fake cycles and fake timers: a cycle at start and every interval,
 * on-demand triggers, no overlap, failures logged and survived, a clean stop.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runSchedule, type CycleReason } from './schedule.ts';

const HOUR = 3_600_000;

/** A fake cycle taking `ms` of (fake) time; records starts, ends and the peak concurrency. */
function fakeCycle(ms: number, fail: (n: number) => boolean = () => false) {
  const log: { n: number; reason: CycleReason; start: number; end?: number }[] = [];
  let active = 0;
  let peak = 0;
  const cycle = async (run: { n: number; reason: CycleReason }) => {
    active++;
    peak = Math.max(peak, active);
    const entry: (typeof log)[number] = { ...run, start: Date.now() };
    log.push(entry);
    try {
      await new Promise((r) => setTimeout(r, ms));
      if (fail(run.n)) throw new Error(`cycle ${run.n} broke`);
    } finally {
      entry.end = Date.now();
      active--;
    }
  };
  return { cycle, log, peak: () => peak };
}

describe('retraining schedule', () => {
  const t0 = Date.UTC(2024, 0, 1);
  let stop: AbortController;

  beforeEach(() => {
    vi.useFakeTimers({ now: t0 });
    stop = new AbortController();
  });

  afterEach(() => {
    stop.abort();
    vi.useRealTimers();
  });

  it('runs a cycle at start, then one every interval from the previous start', async () => {
    const f = fakeCycle(10 * 60_000);
    const s = runSchedule({ everyMs: HOUR, cycle: f.cycle, signal: stop.signal });
    await vi.advanceTimersByTimeAsync(3 * HOUR + 1);
    expect(f.log.map((e) => [e.n, e.reason, e.start - t0])).toEqual([
      [1, 'start', 0],
      [2, 'interval', HOUR],
      [3, 'interval', 2 * HOUR],
      [4, 'interval', 3 * HOUR],
    ]);
    stop.abort();
    await vi.advanceTimersByTimeAsync(HOUR);
    await s.done;
    expect(f.log).toHaveLength(4);
  });

  it('can wait an interval before the first cycle', async () => {
    const f = fakeCycle(1000);
    runSchedule({ everyMs: HOUR, cycle: f.cycle, signal: stop.signal, runAtStart: false });
    await vi.advanceTimersByTimeAsync(HOUR - 1);
    expect(f.log).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(f.log.map((e) => e.reason)).toEqual(['interval']);
  });

  it('runs a triggered cycle at once when idle, and counts the next interval from it', async () => {
    const f = fakeCycle(60_000);
    const s = runSchedule({ everyMs: HOUR, cycle: f.cycle, signal: stop.signal });
    await vi.advanceTimersByTimeAsync(20 * 60_000);
    s.trigger();
    await vi.advanceTimersByTimeAsync(0);
    expect(f.log.map((e) => [e.reason, e.start - t0])).toEqual([
      ['start', 0],
      ['trigger', 20 * 60_000],
    ]);
    // Due one interval after the triggered cycle's start, not after the first one's.
    await vi.advanceTimersByTimeAsync(HOUR);
    expect(f.log.map((e) => [e.reason, e.start - t0])).toEqual([
      ['start', 0],
      ['trigger', 20 * 60_000],
      ['interval', 20 * 60_000 + HOUR],
    ]);
  });

  it('never overlaps cycles: triggers during a cycle collapse into one run right after it', async () => {
    const f = fakeCycle(30 * 60_000);
    const s = runSchedule({ everyMs: HOUR, cycle: f.cycle, signal: stop.signal });
    await vi.advanceTimersByTimeAsync(5 * 60_000);
    expect(s.running).toBe(true);
    s.trigger();
    s.trigger();
    s.trigger();
    await vi.advanceTimersByTimeAsync(HOUR);
    expect(f.log.map((e) => [e.reason, e.start - t0, e.end! - t0])).toEqual([
      ['start', 0, 30 * 60_000],
      ['trigger', 30 * 60_000, HOUR],
    ]);
    expect(f.peak()).toBe(1);
  });

  it('runs late ticks right after a cycle longer than the interval, once, without overlap', async () => {
    const f = fakeCycle(2.5 * HOUR);
    runSchedule({ everyMs: HOUR, cycle: f.cycle, signal: stop.signal });
    await vi.advanceTimersByTimeAsync(5 * HOUR);
    expect(f.log.map((e) => [e.reason, e.start - t0])).toEqual([
      ['start', 0],
      ['interval', 2.5 * HOUR],
      ['interval', 5 * HOUR],
    ]);
    expect(f.peak()).toBe(1);
  });

  it('logs a failed cycle and keeps the schedule going', async () => {
    const f = fakeCycle(1000, (n) => n === 1 || n === 3);
    const errors: string[] = [];
    const s = runSchedule({
      everyMs: HOUR,
      cycle: f.cycle,
      signal: stop.signal,
      onError: (err, run) => errors.push(`${run.n}/${run.reason}: ${(err as Error).message}`),
    });
    await vi.advanceTimersByTimeAsync(2 * HOUR + 1000);
    s.trigger();
    await vi.advanceTimersByTimeAsync(1000);
    expect(f.log.map((e) => e.reason)).toEqual(['start', 'interval', 'interval', 'trigger']);
    expect(errors).toEqual(['1/start: cycle 1 broke', '3/interval: cycle 3 broke']);
    expect(f.log.every((e) => e.end !== undefined)).toBe(true);
  });

  it('stops between cycles: a running cycle finishes, then nothing more runs', async () => {
    const f = fakeCycle(10 * 60_000);
    const s = runSchedule({ everyMs: HOUR, cycle: f.cycle, signal: stop.signal });
    let stopped = false;
    void s.done.then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(60_000);
    s.trigger(); // queued behind the running cycle, dropped by the stop
    stop.abort();
    await vi.advanceTimersByTimeAsync(0);
    expect(stopped).toBe(false);
    await vi.advanceTimersByTimeAsync(9 * 60_000);
    expect(stopped).toBe(true);
    await vi.advanceTimersByTimeAsync(3 * HOUR);
    expect(f.log).toHaveLength(1);
    expect(f.log[0]!.end! - t0).toBe(10 * 60_000);

    // Stopping while idle wakes the wait at once.
    const idle = new AbortController();
    const g = fakeCycle(1000);
    const t = runSchedule({ everyMs: HOUR, cycle: g.cycle, signal: idle.signal });
    await vi.advanceTimersByTimeAsync(2000);
    idle.abort();
    await t.done;
    expect(g.log).toHaveLength(1);
  });

  it('refuses a non-positive interval', () => {
    expect(() => runSchedule({ everyMs: 0, cycle: () => Promise.resolve() })).toThrow(/> 0/);
    expect(() => runSchedule({ everyMs: NaN, cycle: () => Promise.resolve() })).toThrow(/> 0/);
  });
});
