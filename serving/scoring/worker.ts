/**
 * One scorer thread: holds one ONNX Runtime session per loaded model generation (normally one;
 * two during a hot swap) and runs `session.run` for the pool. ORT's run is synchronous under its
 * promise, so it blocks this thread, not the server's event loop. Sessions are single-threaded
 * (intra/inter-op 1, sequential): the pool's parallelism is its number of workers.
 *
 * Depends on onnxruntime-node and models/onnx.ts only (the protocol import is types-only).
 */
import { parentPort } from 'node:worker_threads';
import { Tensor, type InferenceSession } from 'onnxruntime-node';
import { createSession } from '../../models/onnx.ts';
import type { FromWorker, ToWorker } from './protocol.ts';

interface Loaded {
  readonly session: InferenceSession;
  readonly input: string;
  readonly output: string;
  readonly width: number;
  /** Requests for this generation that started and have not finished. */
  busy: number;
  /** The pool no longer sends work for it: release once `busy` drops to 0. */
  dropped: boolean;
}

const port = parentPort;
if (!port) throw new Error('serving/scoring/worker.ts must run in a worker thread');

const models = new Map<number, Loaded>();
/** Loads in progress, and those of them dropped before they finished. */
const loading = new Set<number>();
const droppedEarly = new Set<number>();

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function reply(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(msg, transfer);
}

function release(gen: number, m: Loaded): void {
  models.delete(gen);
  void m.session.release().catch(() => undefined);
}

function finish(gen: number, m: Loaded): void {
  m.busy -= 1;
  if (m.dropped && m.busy === 0) release(gen, m);
}

function model(gen: number): Loaded {
  const m = models.get(gen);
  if (!m) throw new Error(`model generation ${gen} is not loaded in this worker`);
  return m;
}

/** The scores as a Float32Array this thread owns alone, so its buffer can be transferred. */
function ownedScores(data: unknown, rows: number): Float32Array {
  if (!(data instanceof Float32Array) || data.length !== rows) {
    throw new Error(`model output is not ${rows} float32 scores`);
  }
  const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  return whole && data.buffer instanceof ArrayBuffer ? data : data.slice();
}

async function run(m: Loaded, features: Float32Array, rows: number): Promise<Float32Array> {
  const input = new Tensor('float32', features, [rows, m.width]);
  const out = await m.session.run({ [m.input]: input }, [m.output]);
  const scores = ownedScores(out[m.output]?.data, rows);
  input.dispose();
  return scores;
}

async function load(msg: Extract<ToWorker, { kind: 'load' }>): Promise<void> {
  loading.add(msg.gen);
  try {
    const session = await createSession(msg.bytes);
    if (droppedEarly.delete(msg.gen)) {
      await session.release();
    } else {
      models.set(msg.gen, {
        session,
        input: msg.input,
        output: msg.output,
        width: msg.width,
        busy: 0,
        dropped: false,
      });
    }
    reply({ kind: 'loaded', id: msg.id });
  } catch (err) {
    droppedEarly.delete(msg.gen);
    reply({ kind: 'failed', id: msg.id, message: message(err) });
  } finally {
    loading.delete(msg.gen);
  }
}

/** Run `work` on a loaded generation, counted busy meanwhile; a failure is replied to the pool. */
async function withModel(
  msg: { readonly id: number; readonly gen: number },
  work: (m: Loaded) => Promise<void>,
): Promise<void> {
  let m: Loaded;
  try {
    m = model(msg.gen);
  } catch (err) {
    reply({ kind: 'failed', id: msg.id, message: message(err) });
    return;
  }
  m.busy += 1;
  try {
    await work(m);
  } catch (err) {
    reply({ kind: 'failed', id: msg.id, message: message(err) });
  } finally {
    finish(msg.gen, m);
  }
}

function score(msg: Extract<ToWorker, { kind: 'score' }>): Promise<void> {
  return withModel(msg, async (m) => {
    const scores = await run(m, msg.features, msg.rows);
    reply({ kind: 'scored', id: msg.id, scores }, [scores.buffer as ArrayBuffer]);
  });
}

/** Time `iterations` runs on `rows` random rows (the benchmark's worker ceiling). */
function bench(msg: Extract<ToWorker, { kind: 'bench' }>): Promise<void> {
  return withModel(msg, async (m) => {
    const features = new Float32Array(msg.rows * m.width);
    for (let i = 0; i < features.length; i++) features[i] = Math.random() * 10;
    const input = new Tensor('float32', features, [msg.rows, m.width]);
    const times: number[] = [];
    for (let i = 0; i < msg.iterations; i++) {
      const t0 = performance.now();
      await m.session.run({ [m.input]: input }, [m.output]);
      times.push(performance.now() - t0);
    }
    reply({ kind: 'benched', id: msg.id, times });
  });
}

function drop(msg: Extract<ToWorker, { kind: 'drop' }>): void {
  const m = models.get(msg.gen);
  if (!m) {
    if (loading.has(msg.gen)) droppedEarly.add(msg.gen);
    return;
  }
  m.dropped = true;
  if (m.busy === 0) release(msg.gen, m);
}

async function handle(msg: Exclude<ToWorker, { kind: 'crash' | 'hang' }>): Promise<void> {
  switch (msg.kind) {
    case 'load':
      return load(msg);
    case 'score':
      return score(msg);
    case 'bench':
      return bench(msg);
    case 'drop':
      drop(msg);
      return;
  }
}

port.on('message', (msg: ToWorker) => {
  // Uncaught on purpose: the thread dies with the requests it holds (crash-handling tests).
  if (msg.kind === 'crash') throw new Error('scorer worker crash requested (test hook)');
  if (msg.kind === 'hang') {
    // Blocks the thread like a run that never returns (watchdog tests); terminate() stops it.
    const end = performance.now() + msg.ms;
    while (performance.now() < end) {
      // busy
    }
    return;
  }
  void handle(msg);
});
