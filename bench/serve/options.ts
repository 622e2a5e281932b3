/**
 * The serving benchmark's command line (see bench/serve.ts) and its fixed settings.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const DEFAULT_DATA = fileURLToPath(new URL('../../../shared/data/hm-sample', import.meta.url));

/** Candidates per request (the API's SERVING_MAX_CANDIDATES) and rows per bare session.run. */
export const CANDIDATES = 100;
/** Scorer worker threads of the API, and of the benchmark's own ScorerPool. */
export const WORKERS = 2;
/** Items asked per recommendation request. */
export const K = 12;
/** The latency target: the headline rate is the highest whose p99 is within it. */
export const P99_TARGET_MS = 10;
/**
 * The p99 a rate must stay within to count as sustainable (`max_rps_p99_25ms`); the overload step
 * offers twice the highest such rate.
 */
export const SUSTAINABLE_P99_MS = 25;
/** The rate whose run gives the per-stage and per-request figures, and the freshness run's load. */
export const STOREFRONT_RATE = 300;

export interface BenchOptions {
  /** The H&M-layout folder loaded. */
  readonly data: string;
  /** Seconds per rate run and of the unthrottled run. */
  readonly duration: number;
  readonly rates: readonly number[];
  readonly connections: number;
  /** Trees of the fixture model. */
  readonly trees: number;
  /** Most known customers requested. */
  readonly known: number;
  /** Share of the requested customers that are cold (never seen). */
  readonly coldShare: number;
  /** One autocannon instance with `overallRate` per rate run, instead of staggered ones. */
  readonly burst: boolean;
  /** API processes on the one port (the API's SERVING_PROCESSES). */
  readonly processes: number;
  /** Run the API under `node --cpu-prof`, its profiles written here (null: not profiled). */
  readonly cpuProf: string | null;
}

/** The options of `process.argv` (not checked: see `checkOptions`). */
export function parseOptions(): BenchOptions {
  const { values } = parseArgs({
    options: {
      data: { type: 'string', default: DEFAULT_DATA },
      duration: { type: 'string', default: '10' },
      rates: { type: 'string', default: '25,50,100,300,600' },
      connections: { type: 'string', default: '16' },
      trees: { type: 'string', default: '500' },
      known: { type: 'string', default: '1000' },
      'cold-share': { type: 'string', default: '0.2' },
      burst: { type: 'boolean', default: false },
      processes: { type: 'string', default: '1' },
      'cpu-prof': { type: 'string' },
    },
  });
  return {
    data: values.data,
    duration: Number(values.duration),
    rates: values.rates
      .split(',')
      .map((r) => Number(r.trim()))
      .filter((r) => Number.isFinite(r) && r > 0),
    connections: Number(values.connections),
    trees: Number(values.trees),
    known: Number(values.known),
    coldShare: Number(values['cold-share']),
    burst: values.burst,
    processes: Number(values.processes),
    cpuProf: values['cpu-prof'] === undefined ? null : resolve(values['cpu-prof']),
  };
}

/** Throw when the dataset is missing or a number is not positive. */
export function checkOptions(o: BenchOptions): void {
  if (!existsSync(o.data)) {
    throw new Error(`no dataset at ${o.data}; pass --data <dir> (H&M layout)`);
  }
  if (
    o.rates.length === 0 ||
    !(o.duration > 0) ||
    !(o.connections >= 1) ||
    !(o.trees >= 1) ||
    !Number.isInteger(o.processes) ||
    o.processes < 1
  ) {
    throw new Error(
      '--rates, --duration, --connections, --trees and --processes must be positive numbers',
    );
  }
}
