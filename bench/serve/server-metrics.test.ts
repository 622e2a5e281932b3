import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { EVENT_LOOP_SAMPLE_MS, createServingMetrics } from '../../serving/metrics.ts';
import { histogramQuantile, parseExposition, serverDelta, type Sample } from './server-metrics.ts';

/** The samples of a registry's exposition, parsed as `scrape` parses the API's. */
async function samples(registry: Registry): Promise<Sample[]> {
  return parseExposition(await registry.metrics());
}

describe('histogramQuantile', () => {
  it("estimates quantiles of the observations between two scrapes, as Prometheus' histogram_quantile", async () => {
    const registry = new Registry();
    const h = new Histogram({
      name: 'x_seconds',
      help: 'x',
      labelNames: ['stage'],
      buckets: [0.001, 0.002, 0.004],
      registers: [registry],
    });
    // Before: observations that must not count.
    for (let i = 0; i < 50; i++) h.observe({ stage: 'a' }, 0.0035);
    const before = await samples(registry);
    // 100 between the scrapes: 40 in (0, 1 ms], 40 in (1, 2], 19 in (2, 4], 1 above 4 ms.
    for (let i = 0; i < 40; i++) h.observe({ stage: 'a' }, 0.0005);
    for (let i = 0; i < 40; i++) h.observe({ stage: 'a' }, 0.0015);
    for (let i = 0; i < 19; i++) h.observe({ stage: 'a' }, 0.003);
    h.observe({ stage: 'a' }, 0.5);
    h.observe({ stage: 'b' }, 0.0001);
    const after = await samples(registry);
    const q = (p: number, stage = 'a') =>
      histogramQuantile(before, after, 'x_seconds', { stage }, p);
    // rank 50: the 10th of 40 in (1, 2] ms -> 1 + 10/40
    expect(q(0.5)).toBeCloseTo(1.25, 6);
    // rank 99: the 19th of 19 in (2, 4] -> 4
    expect(q(0.99)).toBeCloseTo(4, 6);
    // rank 99.5 falls in +Inf: the highest finite bound
    expect(q(0.995)).toBeCloseTo(4, 6);
    expect(q(0.5, 'b')).toBeCloseTo(0.5, 6);
    expect(q(0.5, 'c')).toBeNull();
  });
});

describe('serverDelta', () => {
  it("reports the API's event-loop delay, not the default metrics' sampling interval", async () => {
    const { registry } = createServingMetrics({ defaults: true });
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    const gaugeMs = (s: Sample[], name: string) =>
      (s.find((x) => x.name === `rec_serving_nodejs_eventloop_lag_${name}_seconds`)?.value ?? NaN) *
      1000;
    // A loop that is mostly idle: the gauges hold the intervals between samples, so even their
    // median reads about the sampling interval; the delay is the p99 less that interval.
    let before = await samples(registry);
    await sleep(300);
    let after = await samples(registry);
    expect(gaugeMs(after, 'p50')).toBeGreaterThanOrEqual(EVENT_LOOP_SAMPLE_MS - 1);
    const idle = serverDelta(before, after, 0.3).server_eventloop_delay_p99_ms;
    expect(idle).toBeCloseTo(Math.max(0, gaugeMs(after, 'p99') - EVENT_LOOP_SAMPLE_MS), 1);
    // A loop blocked for 60 ms at a time: a delay of about that.
    before = await samples(registry);
    for (let i = 0; i < 4; i++) {
      await sleep(20);
      const until = performance.now() + 60;
      while (performance.now() < until);
    }
    after = await samples(registry);
    const blocked = serverDelta(before, after, 0.3).server_eventloop_delay_p99_ms;
    expect(blocked).toBeGreaterThan(45);
    expect(blocked).toBeLessThan(gaugeMs(after, 'p99'));
  });
});
