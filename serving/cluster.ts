/**
 * Several API processes on one port (`npm run serve` with SERVING_PROCESSES=N, node:cluster): one
 * event loop cannot use more than one core for candidates, feature rows and HTTP, so N processes
 * share the listening socket (the primary accepts and hands connections round robin) and each
 * runs a whole instance, `startServing` (server.ts): its own Redis clients, scorer pool of
 * SCORER_WORKERS threads, trending cache and subscription to model activations, so a hot swap
 * reaches every process.
 *
 * The primary serves nothing itself. It forks the N processes and:
 *  - is ready when all N say they serve; one that exits before (Redis unreachable, a bad setting)
 *    stops the others and fails the start;
 *  - replaces a process that exits once serving, after a backoff growing with the exits of the
 *    last minute;
 *  - on stop (SIGINT / SIGTERM, serve-cli.ts) sends SIGTERM to each process, which closes as a
 *    single instance does, and SIGKILL to one still there after the grace period;
 *  - answers `/metrics` for all: a process asked for `/metrics` asks the primary, which collects
 *    every serving process's series, adds its own process figures (CPU, memory) and sums them
 *    (prom-client's aggregation; the model version gauge takes the max), so one scrape of the
 *    port sees the whole instance whichever process answers it.
 * A process whose primary disappears exits at once (node:cluster).
 */
import cluster, { type Worker } from 'node:cluster';
import {
  AggregatorRegistry,
  Registry,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';
import type { Logger } from '../common/logger.ts';
import { collectServingDefaults } from './metrics.ts';

/** What a process says once it serves. */
export interface ProcessReady {
  /** Its base URL (the port all processes share). */
  readonly url: string;
  /** The model it ranks with, or null (the heuristic). */
  readonly model: string | null;
  /** Why the heuristic ranks, when `model` is null. */
  readonly noModel: string | null;
}

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** Messages from a serving process to the primary. */
type ToPrimary =
  | ({ kind: 'rec:ready' } & ProcessReady)
  | { kind: 'rec:metrics-ask'; id: number }
  | { kind: 'rec:metrics-json'; id: number; metrics: MetricsJson };

/** Messages from the primary to a serving process. */
type ToProcess =
  | { kind: 'rec:metrics-collect'; id: number }
  | { kind: 'rec:metrics-text'; id: number; text: string }
  | { kind: 'rec:metrics-text'; id: number; error: string };

/** How long the primary waits for one process's series, and a process for the sum (ms). */
const METRICS_TIMEOUT_MS = 2_000;

const isMessage = (m: unknown): m is { kind: string; id?: number } =>
  typeof m === 'object' && m !== null && typeof (m as { kind?: unknown }).kind === 'string';

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

// --- the primary -------------------------------------------------------------------------------

export interface PrimaryOptions {
  /** Serving processes to run (≥ 1). */
  readonly processes: number;
  readonly logger: Logger;
  /** Grace between SIGTERM and SIGKILL when stopping (ms; default 15 s). */
  readonly stopGraceMs?: number;
}

export interface Primary {
  /** Resolves when every process serves (with what the first one said); rejects if one failed. */
  readonly ready: Promise<ProcessReady>;
  /** Stop every process; resolves once all have exited. */
  stop(): Promise<void>;
}

interface Slot {
  readonly index: number;
  readonly worker: Worker;
  ready: boolean;
  /** Metric collections waiting for this process's answer. */
  readonly pending: Map<number, (metrics: MetricsJson | null) => void>;
}

/** Fork `processes` serving processes of the running entry point and supervise them. */
export function startPrimary(opts: PrimaryOptions): Primary {
  if (!cluster.isPrimary) throw new Error('startPrimary runs in the primary process only');
  if (!Number.isInteger(opts.processes) || opts.processes < 1) {
    throw new RangeError(`processes must be a positive integer, got ${opts.processes}`);
  }
  const log = opts.logger.child({ module: 'serving-primary' });
  const grace = opts.stopGraceMs ?? 15_000;
  const own = new Registry();
  collectServingDefaults(own);
  const slots = new Map<number, Slot>();
  const timers = new Set<NodeJS.Timeout>();
  const exits: number[] = [];
  let started = false;
  let stopping: Promise<void> | null = null;
  let nextId = 1;
  let first: ProcessReady | null = null;
  let settle: { resolve: (r: ProcessReady) => void; reject: (e: Error) => void } | undefined;
  const ready = new Promise<ProcessReady>((resolve, reject) => {
    settle = { resolve, reject };
  });

  /** Every serving process's series and the primary's own process figures, summed. */
  async function clusterMetrics(): Promise<string> {
    const serving = [...slots.values()].filter((s) => s.ready && s.worker.isConnected());
    const parts = await Promise.all(serving.map(collectFrom));
    const mine = (await own.getMetricsAsJSON()).filter((m) =>
      m.name.startsWith('rec_serving_process_'),
    );
    const all = [...parts.filter((p): p is MetricsJson => p !== null), mine];
    return AggregatorRegistry.aggregate(all).metrics();
  }

  /** One process's series, or null when it does not answer in time (it is left out). */
  function collectFrom(slot: Slot): Promise<MetricsJson | null> {
    const id = nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        slot.pending.delete(id);
        resolve(null);
      }, METRICS_TIMEOUT_MS);
      slot.pending.set(id, (metrics) => {
        clearTimeout(timer);
        slot.pending.delete(id);
        resolve(metrics);
      });
      send(slot.worker, { kind: 'rec:metrics-collect', id });
    });
  }

  function send(worker: Worker, msg: ToProcess): void {
    if (!worker.isConnected()) return;
    try {
      worker.send(msg);
    } catch (err) {
      log.warn({ pid: worker.process.pid, err: errorText(err) }, 'message to a process lost');
    }
  }

  function onMessage(slot: Slot, msg: unknown): void {
    if (!isMessage(msg)) return;
    const m = msg as ToPrimary;
    if (m.kind === 'rec:ready') {
      slot.ready = true;
      log.info({ process: slot.index, pid: slot.worker.process.pid, url: m.url }, 'process ready');
      first ??= { url: m.url, model: m.model, noModel: m.noModel };
      if (!started && [...slots.values()].every((s) => s.ready)) {
        started = true;
        settle?.resolve(first);
      }
    } else if (m.kind === 'rec:metrics-json') {
      slot.pending.get(m.id)?.(m.metrics);
    } else {
      clusterMetrics().then(
        (text) => {
          send(slot.worker, { kind: 'rec:metrics-text', id: m.id, text });
        },
        (err: unknown) => {
          send(slot.worker, { kind: 'rec:metrics-text', id: m.id, error: errorText(err) });
        },
      );
    }
  }

  function fork(index: number): void {
    const worker = cluster.fork();
    const slot: Slot = { index, worker, ready: false, pending: new Map() };
    slots.set(index, slot);
    worker.on('message', (msg: unknown) => {
      onMessage(slot, msg);
    });
    worker.on('exit', (code, signal) => {
      onExit(slot, code, signal);
    });
  }

  function onExit(slot: Slot, code: number | null, signal: string | null): void {
    for (const answer of slot.pending.values()) answer(null);
    if (slots.get(slot.index) === slot) slots.delete(slot.index);
    const how = signal === null ? `code ${code ?? '?'}` : `signal ${signal}`;
    if (stopping !== null) return;
    if (!started) {
      const err = new Error(
        `API process ${slot.index + 1} of ${opts.processes} (pid ${slot.worker.process.pid ?? '?'}) exited (${how}) before serving; its error is above`,
      );
      void stop().then(() => settle?.reject(err));
      return;
    }
    const now = Date.now();
    exits.push(now);
    while (exits.length > 0 && (exits[0] ?? now) < now - 60_000) exits.shift();
    const delay = Math.min(10_000, 100 * 2 ** (exits.length - 1));
    log.error(
      { process: slot.index, pid: slot.worker.process.pid, exit: how, restart_in_ms: delay },
      'API process exited; starting another',
    );
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (stopping === null) fork(slot.index);
    }, delay);
    timers.add(timer);
  }

  function stop(): Promise<void> {
    stopping ??= (async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await Promise.all(
        [...slots.values()].map(async ({ worker }) => {
          if (worker.isDead()) return;
          const exited = new Promise<void>((resolve) =>
            worker.once('exit', () => {
              resolve();
            }),
          );
          worker.process.kill('SIGTERM');
          const kill = setTimeout(() => {
            log.warn({ pid: worker.process.pid, grace_ms: grace }, 'process did not stop; SIGKILL');
            worker.process.kill('SIGKILL');
          }, grace);
          await exited;
          clearTimeout(kill);
        }),
      );
    })();
    return stopping;
  }

  for (let i = 0; i < opts.processes; i++) fork(i);
  return { ready, stop };
}

// --- a serving process -------------------------------------------------------------------------

export interface ProcessLink {
  /** The text of `/metrics`: every serving process's series, summed by the primary. */
  metricsText(): Promise<string>;
  /** Tell the primary this process serves. */
  ready(info: ProcessReady): void;
}

/**
 * In a serving process of a primary (`cluster.isWorker`): answer the primary's collections from
 * `registry`, and get the sum of all processes for `/metrics`.
 */
export function linkToPrimary(registry: Registry): ProcessLink {
  if (!cluster.isWorker || process.send === undefined) {
    throw new Error('linkToPrimary runs in a process forked by startPrimary only');
  }
  const toPrimary = (msg: ToPrimary) => process.send?.(msg);
  const asked = new Map<number, { resolve: (t: string) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  process.on('message', (msg: unknown) => {
    if (!isMessage(msg)) return;
    const m = msg as ToProcess;
    if (m.kind === 'rec:metrics-collect') {
      registry.getMetricsAsJSON().then(
        (metrics) => toPrimary({ kind: 'rec:metrics-json', id: m.id, metrics }),
        () => toPrimary({ kind: 'rec:metrics-json', id: m.id, metrics: [] }),
      );
    } else {
      const waiting = asked.get(m.id);
      asked.delete(m.id);
      if ('error' in m) waiting?.reject(new Error(`metrics of the processes: ${m.error}`));
      else waiting?.resolve(m.text);
    }
  });
  return {
    metricsText() {
      const id = nextId++;
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          asked.delete(id);
          reject(
            new Error(`the primary did not send the metrics within ${METRICS_TIMEOUT_MS * 2} ms`),
          );
        }, METRICS_TIMEOUT_MS * 2);
        asked.set(id, {
          resolve: (t) => {
            clearTimeout(timer);
            resolve(t);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        toPrimary({ kind: 'rec:metrics-ask', id });
      });
    },
    ready(info) {
      toPrimary({ kind: 'rec:ready', ...info });
    },
  };
}
