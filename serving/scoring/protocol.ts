/**
 * Messages between the scorer pool (main thread) and its workers. Types only: the worker imports
 * this file with `import type`, so the worker thread loads nothing but onnxruntime-node and
 * models/onnx.ts.
 *
 * A model is addressed by a generation number the pool assigns per load (not by its version
 * string, which two loads may share). Every request carries an id; every reply names it.
 */

export type ToWorker =
  | {
      readonly kind: 'load';
      readonly id: number;
      readonly gen: number;
      readonly bytes: Uint8Array;
      readonly input: string;
      readonly output: string;
      readonly width: number;
    }
  | {
      readonly kind: 'score';
      readonly id: number;
      readonly gen: number;
      readonly features: Float32Array;
      readonly rows: number;
    }
  | {
      readonly kind: 'bench';
      readonly id: number;
      readonly gen: number;
      readonly rows: number;
      readonly iterations: number;
    }
  /** Release a generation once the requests already sent for it are done (no reply). */
  | { readonly kind: 'drop'; readonly gen: number }
  /** Test hook: throw an uncaught error in the worker (it exits), to exercise crash handling. */
  | { readonly kind: 'crash' }
  /** Test hook: busy-wait `ms` on the thread (a hung run), to exercise the pool's watchdog. */
  | { readonly kind: 'hang'; readonly ms: number };

export type FromWorker =
  | { readonly kind: 'loaded'; readonly id: number }
  | { readonly kind: 'scored'; readonly id: number; readonly scores: Float32Array }
  | { readonly kind: 'benched'; readonly id: number; readonly times: number[] }
  | { readonly kind: 'failed'; readonly id: number; readonly message: string };
