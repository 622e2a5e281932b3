/**
 * The project's error base class, as kafkajs's `KafkaJSError`: every error the project throws is a
 * `RecError` (or a subclass) with a stable `REC_ERR_*` code, a `retriable` flag and a `cause`.
 * Callers branch on the code and the flag, never on message text. Poison input (a record that
 * cannot be decoded or validated) is not retriable and goes to a dead-letter queue; anything
 * retriable is retried, never dropped.
 *
 * | code                          | thrown by                                                     |
 * | ----------------------------- | ------------------------------------------------------------- |
 * | `REC_ERR_DECODE`              | streams/avro.ts: bytes that are not a framed Avro record      |
 * | `REC_ERR_UNKNOWN_SCHEMA`      | streams/avro.ts: a schema id the registry does not know       |
 * | `REC_ERR_VALIDATION`          | streams/avro.ts: a record that fails its zod contract         |
 * | `REC_ERR_SCHEMA_INCOMPATIBLE` | streams/avro.ts: a schema the registry refuses                |
 * | `REC_ERR_SCHEMA_REGISTRY`     | streams/avro.ts: the registry cannot be reached (retriable)   |
 * | `REC_ERR_DLQ_WRITE`           | streams/consumer.ts: a dead letter could not be written       |
 * | `REC_ERR_REPLAY`              | streams/replay.ts, streams/dlq.ts (reading made no progress)  |
 * | `REC_ERR_REDRIVE`             | streams/dlq.ts: dead letters could not be re-published        |
 * | `REC_ERR_CONFIG`              | common/config.ts (`ConfigError`), invalid settings            |
 * | `REC_ERR_USAGE`               | a command line that cannot be run (`UsageError`)              |
 * | `REC_ERR_DATASET`             | streams/loader (`DatasetError`, `CellError`)                  |
 * | `REC_ERR_STACK`               | stack/ (`StackError`, `CommandError`)                         |
 * | `REC_ERR_MODEL`               | models/ (`ModelError`): a model that cannot be read or used   |
 * | `REC_ERR_EXPERIMENT`          | models/experiments.ts: an A/B experiment refused or not found |
 * | `REC_ERR_SCORER`              | serving/scoring (`ScorerError`)                               |
 * | `REC_ERR_RANKER`              | serving/ranking.ts (`RankerFailure`): the heuristic answers   |
 * | `REC_ERR_BAD_REQUEST` …       | serving/http-errors.ts (`ServingError`): the API's answers    |
 * | `REC_ERR_UNAUTHORIZED`        | serving/auth.ts: a write route without a valid API key (401)  |
 * | `REC_ERR_FORBIDDEN`           | serving/auth.ts: write routes while API_KEYS is empty (403)   |
 * | `REC_ERR_PAYLOAD_TOO_LARGE`   | serving/routes/events.ts: a body over INGEST_MAX_BYTES (413)  |
 * | `REC_ERR_UNAVAILABLE`         | the feature store did not answer (`StoreUnavailableError`)    |
 * | `REC_ERR_APPLY`               | streams/consumer.ts: a record its handler fails on every time |
 * | `REC_ERR_KEY_MISMATCH`        | processors/admit.ts: a purchase not keyed by its customer     |
 * | `REC_ERR_FUTURE_EVENT`        | processors/admit.ts: an event dated past now + the skew       |
 * | `REC_ERR_LATE_EVENT`          | processors/purchases.ts: an event dated before the dedup      |
 * |                               | horizon's cut of its customer's newest (serving's ingest      |
 * |                               | refuses it up front, routes/events.ts)                        |
 * | `REC_ERR_STORE_LAYOUT`        | features/state.ts (`StoreLayoutError`): a namespace written   |
 * |                               | by a build with another key layout                           |
 * | `REC_ERR_DEPLOY`              | deploy/validate.ts (`DeployError`): a validator tool failed   |
 */

export type ServingErrorCode =
  | 'REC_ERR_BAD_REQUEST'
  | 'REC_ERR_UNAUTHORIZED'
  | 'REC_ERR_FORBIDDEN'
  | 'REC_ERR_NOT_FOUND'
  | 'REC_ERR_PAYLOAD_TOO_LARGE'
  | 'REC_ERR_UNAVAILABLE'
  | 'REC_ERR_INTERNAL';

export type ErrorCode =
  | 'REC_ERR_DECODE'
  | 'REC_ERR_UNKNOWN_SCHEMA'
  | 'REC_ERR_VALIDATION'
  | 'REC_ERR_SCHEMA_INCOMPATIBLE'
  | 'REC_ERR_SCHEMA_REGISTRY'
  | 'REC_ERR_DLQ_WRITE'
  | 'REC_ERR_REPLAY'
  | 'REC_ERR_REDRIVE'
  | 'REC_ERR_CONFIG'
  | 'REC_ERR_USAGE'
  | 'REC_ERR_DATASET'
  | 'REC_ERR_STACK'
  | 'REC_ERR_MODEL'
  | 'REC_ERR_EXPERIMENT'
  | 'REC_ERR_SCORER'
  | 'REC_ERR_RANKER'
  | 'REC_ERR_STORE_LAYOUT'
  | 'REC_ERR_KEY_MISMATCH'
  | 'REC_ERR_APPLY'
  | 'REC_ERR_FUTURE_EVENT'
  | 'REC_ERR_LATE_EVENT'
  | 'REC_ERR_DEPLOY'
  | ServingErrorCode;

export interface RecErrorOptions {
  /** Whether trying again may succeed (default false). */
  readonly retriable?: boolean;
  readonly cause?: unknown;
}

export class RecError extends Error {
  override readonly name: string = 'RecError';
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, opts: RecErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retriable = opts.retriable ?? false;
  }
}

/** A mistake in a command line (option, value, path): reported as one line, no stack. */
export class UsageError extends RecError {
  override readonly name: string = 'UsageError';
  constructor(message: string, opts: RecErrorOptions = {}) {
    super('REC_ERR_USAGE', message, opts);
  }
}

/** The message of any thrown value, for logs and DLQ headers. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
