/**
 * Scoring off the event loop: ONNX Runtime's `session.run` is synchronous under its promise, so
 * the ranker runs in `worker_threads` (worker.ts), one single-threaded session per worker. The
 * pool sends each request to the least busy worker, tagged with the model generation active at
 * dispatch; a worker keeps a generation's session until the pool drops it and the requests it
 * already received for it are done. That is what makes hot swaps lossless:
 *
 *   swap(m): every worker loads m (old and new side by side) → all loaded: the pool switches, new
 *   requests carry the new generation, the old one is dropped (each worker releases it once its
 *   queued old requests finished) | any load failed: the new generation is dropped everywhere,
 *   the old stays active, swap throws ModelError.
 *
 * Crashes: a worker that exits unexpectedly has its in-flight requests rejected with a retriable
 * ScorerError (not retried: their feature buffers were transferred to the dead thread), and is
 * replaced by a fresh worker that loads the active model (backoff on repeated failure). Swaps and
 * restarts are serialised, so a replacement never misses a generation.
 *
 * Watchdog: a scoring request not answered within `timeoutMs` of its dispatch (SCORER_TIMEOUT_MS,
 * default 1 000) is rejected at once with a retriable ScorerError, and its worker is taken as
 * hung: it takes no more requests, its other in-flight requests are rejected (retriable), and it
 * is terminated, so it is replaced as a crashed one is. ORT's run cannot be interrupted; a thread
 * stuck in it would otherwise hold its requests, and a share of every later one, for ever. The
 * request deadline of the API (`rankerTimeoutMs`, 250 ms) answers the user in time; the watchdog,
 * longer, frees the thread. Loads and benchmark runs are not watched.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ModelError, type LoadedModel } from '../../models/model-meta.ts';
import type { FromWorker, ToWorker } from './protocol.ts';
import { RecError } from '../../common/errors.ts';

/** A scoring request failed (worker crash, run error, bad input, pool closed). */
export class ScorerError extends RecError {
  override readonly name: string = 'ScorerError';
  constructor(message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super('REC_ERR_SCORER', message, opts);
  }
}

/** Default watchdog of a scoring request (ms; `SCORER_TIMEOUT_MS`). */
export const DEFAULT_SCORER_TIMEOUT_MS = 1_000;

/** What the watchdog and the crash handling did, for metrics and logs. */
export type ScorerEvent =
  /** A scoring request exceeded `timeoutMs`; its worker is recycled. */
  | { readonly kind: 'timeout'; readonly worker: number; readonly timeoutMs: number }
  /** A worker is being replaced: it hung (`timeout`) or exited on its own (`exit`). */
  | { readonly kind: 'recycled'; readonly worker: number; readonly reason: 'timeout' | 'exit' };

export interface ScorerPoolOptions {
  readonly model: LoadedModel;
  /** Worker threads (default 2). */
  readonly size?: number;
  /** Watchdog of a scoring request (ms from dispatch; 0: none; default 1 000). */
  readonly timeoutMs?: number;
  /** Told of every watchdog timeout and worker replacement. */
  readonly onEvent?: (e: ScorerEvent) => void;
}

export interface ScoreResult {
  readonly scores: Float32Array;
  readonly version: string;
}

const WORKER_URL = new URL('./worker.ts', import.meta.url);

/** tsx's ESM API (tsImport), resolved from this file: import.meta.resolve, else the package. */
function tsxApiUrl(): string {
  try {
    return import.meta.resolve('tsx/esm/api');
  } catch {
    const pkg = createRequire(import.meta.url).resolve('tsx/package.json');
    return pathToFileURL(join(dirname(pkg), 'dist', 'esm', 'api', 'index.mjs')).href;
  }
}

/**
 * The worker is TypeScript and Node 20 cannot run it as is; nor does `--import tsx` in a
 * worker's execArgv apply to the worker's entry module on Node 20. So each worker starts from a
 * tiny eval'd bootstrap that loads worker.ts through tsx's `tsImport` (hooks scoped to that
 * import graph). Works the same under `tsx` (npm scripts), vitest and plain node.
 */
function workerBootstrap(): string {
  const api = JSON.stringify(tsxApiUrl());
  const entry = JSON.stringify(WORKER_URL.href);
  return `import(${api}).then((tsx) => tsx.tsImport(${entry}, ${JSON.stringify(import.meta.url)}));`;
}

interface Active {
  readonly gen: number;
  readonly model: LoadedModel;
}

type Reply = Exclude<FromWorker, { kind: 'failed' }>;

interface Pending {
  readonly resolve: (msg: Reply) => void;
  readonly reject: (err: Error) => void;
  readonly what: string;
  /** The watchdog of a scoring request. */
  timer?: NodeJS.Timeout;
}

class Slot {
  readonly pending = new Map<number, Pending>();
  ready = false;
  lastError: Error | undefined;
  /** Terminated by the watchdog (not a crash). */
  hung = false;

  constructor(
    readonly index: number,
    readonly worker: Worker,
  ) {}
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a === b || (a.length === b.length && a.every((n, i) => n === b[i]));
}

export class ScorerPool {
  readonly #slots: (Slot | undefined)[];
  readonly #bootstrap = workerBootstrap();
  #active: Active;
  #nextId = 1;
  #nextGen = 1;
  #closed = false;
  /** Swaps and restarts run one at a time. */
  #serial: Promise<unknown> = Promise.resolve();
  /** Requests waiting for a ready worker (only while every worker is restarting). */
  #waiting: { resolve: () => void; reject: (err: Error) => void }[] = [];
  #crashes = 0;
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #timeoutMs: number;
  readonly #onEvent: (e: ScorerEvent) => void;

  private constructor(opts: ScorerPoolOptions, size: number) {
    this.#slots = Array.from({ length: size }, () => undefined);
    this.#active = { gen: this.#nextGen++, model: opts.model };
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_SCORER_TIMEOUT_MS;
    this.#onEvent = opts.onEvent ?? (() => undefined);
  }

  static async create(opts: ScorerPoolOptions): Promise<ScorerPool> {
    const size = opts.size ?? 2;
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`ScorerPool size must be a positive integer, got ${size}`);
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_SCORER_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 0) {
      throw new RangeError(`ScorerPool timeoutMs must be >= 0, got ${timeoutMs}`);
    }
    const pool = new ScorerPool(opts, size);
    try {
      await Promise.all(Array.from({ length: size }, (_, i) => pool.#start(i)));
    } catch (err) {
      await pool.close();
      throw err instanceof ModelError
        ? err
        : new ModelError(`scorer pool could not start: ${errorText(err)}`, { cause: err });
    }
    return pool;
  }

  /** Version of the model new requests are scored with. */
  get version(): string {
    return this.#active.model.meta.version;
  }

  /** Workers that are up with the active model (for health checks; < size while restarting). */
  get readyWorkers(): number {
    return this.#slots.filter((s) => s?.ready === true).length;
  }

  /** Feature names, in input order, of the active model: build `score` rows in this order. */
  get features(): readonly string[] {
    return this.#active.model.meta.features;
  }

  /**
   * Scores rows (row-major, rows x features.length) with the active model; resolves with one
   * score per row and the model version that produced them.
   *
   * `opts.features`: the names the rows were built for (normally `pool.features` read before
   * building them). If a swap to a model with a different feature list happened in between, the
   * request is refused (retriable ScorerError) rather than scored with misplaced columns.
   *
   * When `features` spans its whole ArrayBuffer, that buffer is transferred to the worker (the
   * array is detached afterwards); pass a copy to keep it.
   */
  async score(
    features: Float32Array,
    rows: number,
    opts: { features?: readonly string[] } = {},
  ): Promise<ScoreResult> {
    if (this.#closed) throw new ScorerError('scorer pool is closed');
    if (rows === 0 && features.length === 0) {
      return { scores: new Float32Array(0), version: this.version };
    }
    const picked = this.#pick();
    const slot = picked instanceof Slot ? picked : await picked;
    // The generation is the one active when the request leaves for a worker.
    const active = this.#active;
    const { meta } = active.model;
    if (opts.features !== undefined && !sameNames(opts.features, meta.features)) {
      throw new ScorerError(
        `rows were built for other features than model ${meta.version} uses (it was swapped in meanwhile); rebuild them from pool.features`,
        { retriable: true },
      );
    }
    const width = meta.features.length;
    if (!Number.isInteger(rows) || rows < 1 || features.length !== rows * width) {
      throw new ScorerError(
        `score: ${features.length} values are not ${rows} rows of ${width} features (model ${meta.version})`,
      );
    }
    // Transfer, not clone: the caller's buffer when the array spans all of it, else a copy of
    // just the view (cloning a view would copy its whole underlying buffer).
    const payload =
      features.byteOffset === 0 &&
      features.byteLength === features.buffer.byteLength &&
      features.buffer instanceof ArrayBuffer
        ? features
        : features.slice();
    const id = this.#nextId++;
    const reply = await this.#request(
      slot,
      { kind: 'score', id, gen: active.gen, features: payload, rows },
      [payload.buffer as ArrayBuffer],
      `score ${rows} rows`,
      this.#timeoutMs,
    );
    if (reply.kind !== 'scored') throw new ScorerError(`unexpected reply ${reply.kind}`);
    return { scores: reply.scores, version: meta.version };
  }

  /**
   * Hot swap: every worker loads the new model first; only when all have loaded it does the pool
   * switch. Requests already dispatched finish on the old model; none fails. If any worker fails
   * to load the new model, the swap is refused (throws ModelError) and the old model stays active
   * everywhere.
   */
  swap(model: LoadedModel): Promise<void> {
    return this.#exclusive(async () => {
      if (this.#closed) throw new ModelError('scorer pool is closed');
      const gen = this.#nextGen++;
      const slots = this.#slots.filter((s): s is Slot => s?.ready === true);
      if (slots.length === 0) {
        throw new ModelError(
          `swap to model ${model.meta.version} refused, ${this.version} stays active: no scorer worker is running to load it`,
        );
      }
      const results = await Promise.allSettled(slots.map((s) => this.#load(s, gen, model)));
      const failed = results.flatMap((r, i) =>
        r.status === 'rejected' ? [`worker ${slots[i]?.index ?? i}: ${errorText(r.reason)}`] : [],
      );
      if (failed.length > 0) {
        for (const s of slots) this.#post(s, { kind: 'drop', gen });
        throw new ModelError(
          `swap to model ${model.meta.version} refused, ${this.version} stays active: ${failed.join('; ')}`,
          { cause: results.find((r) => r.status === 'rejected')?.reason },
        );
      }
      const old = this.#active;
      this.#active = { gen, model };
      for (const s of this.#slots) if (s) this.#post(s, { kind: 'drop', gen: old.gen });
    });
  }

  /**
   * Bare session.run timing for the benchmark's ceiling: runs the active model on `rows` random
   * rows `iterations` times inside one worker and returns per-run milliseconds.
   */
  async benchRun(rows: number, iterations: number): Promise<number[]> {
    if (this.#closed) throw new ScorerError('scorer pool is closed');
    if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(iterations) || iterations < 1) {
      throw new ScorerError(`benchRun: rows and iterations must be positive integers`);
    }
    const picked = this.#pick();
    const slot = picked instanceof Slot ? picked : await picked;
    const active = this.#active;
    const id = this.#nextId++;
    const reply = await this.#request(
      slot,
      { kind: 'bench', id, gen: active.gen, rows, iterations },
      [],
      'bench',
    );
    if (reply.kind !== 'benched') throw new ScorerError(`unexpected reply ${reply.kind}`);
    return reply.times;
  }

  /** Test hook: make worker `index` throw an uncaught error (it exits and is replaced). */
  simulateCrash(index: number): void {
    const slot = this.#slots[index];
    if (slot) this.#post(slot, { kind: 'crash' });
  }

  /**
   * Test hook: make worker `index` busy-wait `ms` (as a run that never returns would); requests
   * sent to it meanwhile are not answered, so the watchdog recycles it.
   */
  simulateHang(index: number, ms: number): void {
    const slot = this.#slots[index];
    if (slot) this.#post(slot, { kind: 'hang', ms });
  }

  /** Stop every worker; requests still pending are rejected. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    this.#wake(new ScorerError('scorer pool closed'));
    await Promise.all(
      this.#slots.map(async (s) => {
        if (!s) return;
        this.#rejectAll(s, new ScorerError('scorer pool closed'));
        await s.worker.terminate();
      }),
    );
  }

  // --- internals -------------------------------------------------------------------------------

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(fn, fn);
    this.#serial = run.catch(() => undefined);
    return run;
  }

  /**
   * The ready worker with the fewest requests in flight; ties go to the lowest index, so a lightly
   * loaded pool keeps one worker (and its caches) hot. Synchronous when a worker is ready, so the
   * caller registers its request before the next pick counts them (a burst spreads evenly);
   * waits while no worker is ready (all restarting).
   */
  #pick(): Slot | Promise<Slot> {
    if (this.#closed) throw new ScorerError('scorer pool is closed');
    let best: Slot | undefined;
    for (const s of this.#slots) {
      if (s?.ready === true && (!best || s.pending.size < best.pending.size)) best = s;
    }
    if (best) return best;
    return new Promise<void>((resolve, reject) => this.#waiting.push({ resolve, reject })).then(
      () => this.#pick(),
    );
  }

  #post(slot: Slot, msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    slot.worker.postMessage(msg, transfer);
  }

  /** Send `msg` and wait for its reply; with `timeoutMs` > 0, under the watchdog. */
  #request(
    slot: Slot,
    msg: ToWorker & { id: number },
    transfer: ArrayBuffer[],
    what: string,
    timeoutMs = 0,
  ) {
    return new Promise<Reply>((resolve, reject) => {
      const pending: Pending = { resolve, reject, what };
      slot.pending.set(msg.id, pending);
      try {
        this.#post(slot, msg, transfer);
      } catch (err) {
        slot.pending.delete(msg.id);
        reject(new ScorerError(`${what}: cannot post to worker ${slot.index}`, { cause: err }));
        return;
      }
      if (timeoutMs > 0) {
        pending.timer = setTimeout(() => {
          this.#hung(slot, msg.id, timeoutMs);
        }, timeoutMs);
      }
    });
  }

  /**
   * The watchdog fired for request `id` of `slot`: fail it and the worker's other requests
   * (retriable), take the worker out of the pool and terminate it; its exit handler replaces it.
   */
  #hung(slot: Slot, id: number, timeoutMs: number): void {
    const p = slot.pending.get(id);
    if (!p || slot.hung) return;
    slot.pending.delete(id);
    slot.hung = true;
    slot.ready = false;
    this.#onEvent({ kind: 'timeout', worker: slot.index, timeoutMs });
    p.reject(
      new ScorerError(
        `${p.what}: no answer from scorer worker ${slot.index} within ${timeoutMs} ms (SCORER_TIMEOUT_MS); the worker is replaced`,
        { retriable: true },
      ),
    );
    this.#rejectAll(
      slot,
      new ScorerError(
        `scorer worker ${slot.index} hung (a request took over ${timeoutMs} ms) and is replaced`,
        { retriable: true },
      ),
    );
    // The 'exit' event follows (onExit: replacement with the active model).
    void slot.worker.terminate();
  }

  async #load(slot: Slot, gen: number, model: LoadedModel): Promise<void> {
    const id = this.#nextId++;
    // Copied (structured clone), not transferred: the model's bytes stay usable for restarts.
    await this.#request(
      slot,
      {
        kind: 'load',
        id,
        gen,
        bytes: model.bytes,
        input: model.meta.onnx_input,
        output: model.meta.onnx_output,
        width: model.meta.features.length,
      },
      [],
      `load model ${model.meta.version}`,
    );
  }

  #rejectAll(slot: Slot, err: Error): void {
    const pending = [...slot.pending.values()];
    slot.pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  /** Start (or restart) worker `index` with the active model; it takes requests once loaded. */
  async #start(index: number): Promise<void> {
    const worker = new Worker(this.#bootstrap, { eval: true });
    const slot = new Slot(index, worker);
    this.#slots[index] = slot;
    worker.on('message', (msg: FromWorker) => {
      const p = slot.pending.get(msg.id);
      if (!p) return;
      slot.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.kind === 'failed') {
        p.reject(new ScorerError(`${p.what} failed in worker ${index}: ${msg.message}`));
      } else {
        p.resolve(msg);
      }
    });
    worker.on('error', (err) => {
      slot.lastError = err;
    });
    worker.on('exit', (code) => {
      this.#onExit(slot, code);
    });
    await this.#load(slot, this.#active.gen, this.#active.model);
    slot.ready = true;
    this.#crashes = 0;
    this.#wake();
  }

  /** Let requests waiting for a worker go on (or fail with `err`). */
  #wake(err?: Error): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  #onExit(slot: Slot, code: number): void {
    slot.ready = false;
    const why = slot.lastError ? `: ${slot.lastError.message}` : '';
    this.#rejectAll(
      slot,
      new ScorerError(`scorer worker ${slot.index} exited (code ${code})${why}`, {
        retriable: true,
        cause: slot.lastError,
      }),
    );
    if (this.#closed || this.#slots[slot.index] !== slot) return;
    this.#slots[slot.index] = undefined;
    this.#onEvent({ kind: 'recycled', worker: slot.index, reason: slot.hung ? 'timeout' : 'exit' });
    const delay = Math.min(5_000, 50 * 2 ** this.#crashes);
    this.#crashes += 1;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      void this.#exclusive(async () => {
        if (this.#closed) return;
        try {
          await this.#start(slot.index);
        } catch (err) {
          // Requests waiting for a worker fail now rather than hang; the exit handler of the
          // failed replacement schedules the next attempt (with a longer backoff).
          if (this.readyWorkers === 0) {
            this.#wake(
              new ScorerError(`no scorer worker is running: ${errorText(err)}`, {
                retriable: true,
                cause: err,
              }),
            );
          }
          await this.#slots[slot.index]?.worker.terminate();
        }
      });
    }, delay);
    this.#timers.add(timer);
  }
}
