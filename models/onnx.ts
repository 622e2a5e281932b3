/**
 * ONNX Runtime sessions for the ranking model, made in one place with the project's session
 * options: the scorer workers, the model checks, training's in-process scoring and the serving
 * benchmark all run the model alike. Depends on onnxruntime-node only (the scorer workers load
 * it in their own threads).
 */
import { InferenceSession } from 'onnxruntime-node';

export interface SessionOptions {
  /** Intra-op threads (default 1: serving's parallelism is its number of scorer workers). */
  readonly threads?: number;
}

/**
 * A session over ONNX bytes: `threads` intra-op threads, sequential execution (so one inter-op
 * thread), every graph optimisation. The caller releases it.
 */
export function createSession(
  bytes: Uint8Array,
  options: SessionOptions = {},
): Promise<InferenceSession> {
  return InferenceSession.create(bytes, {
    intraOpNumThreads: options.threads ?? 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
}
