/**
 * The project's error hierarchy: one class with a stable `REC_ERR_*` code, a `retriable` flag and
 * a `cause`. Poison input (a record that cannot be decoded or validated) is not retriable and goes
 * to a dead-letter queue; anything retriable is retried, never dropped.
 */

export type ErrorCode =
  | 'REC_ERR_DECODE'
  | 'REC_ERR_UNKNOWN_SCHEMA'
  | 'REC_ERR_VALIDATION'
  | 'REC_ERR_SCHEMA_INCOMPATIBLE'
  | 'REC_ERR_SCHEMA_REGISTRY'
  | 'REC_ERR_DLQ_WRITE'
  | 'REC_ERR_REPLAY'
  | 'REC_ERR_CONFIG';

export class RecError extends Error {
  override readonly name = 'RecError';
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { retriable?: boolean; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retriable = opts.retriable ?? false;
  }
}

/** The message of any thrown value, for logs and DLQ headers. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
