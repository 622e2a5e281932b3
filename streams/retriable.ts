/**
 * Which errors are transient (a broker restarting, a coordinator moving or still loading, the
 * schema registry unreachable: a retriable `RecError`), and calling again with backoff while they
 * are. kafkajs marks single errors
 * `retriable`, but once its own retries run out it throws `KafkaJSNumberOfRetriesExceeded` or
 * `KafkaJSNonRetriableError` (both `retriable: false`) around the transient cause, and it throws
 * `KafkaJSGroupCoordinatorNotFound` (not retriable) while a restarted broker has no coordinator
 * yet: a broker restart surfaces as errors that say "not retriable". The cause chain tells.
 */

/** kafkajs errors that mean "the cluster is not reachable or not ready yet", whatever their flag. */
const TRANSIENT_NAMES = new Set([
  'KafkaJSNumberOfRetriesExceeded',
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSRequestTimeoutError',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSBrokerNotFound',
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSMetadataNotLoaded',
  'KafkaJSTopicMetadataNotLoaded',
  'KafkaJSStaleTopicMetadataAssignment',
]);

/**
 * True when `err`, or any error in its `cause` chain, is a kafkajs error marked `retriable` or one
 * of the connection, coordinator and metadata errors a broker restart produces. A `RecError`
 * counts by its own `retriable` flag.
 */
export function isTransient(err: unknown): boolean {
  const seen = new Set<unknown>();
  for (let e = err; e !== null && typeof e === 'object' && !seen.has(e);) {
    seen.add(e);
    const { name, retriable, code, cause } = e as {
      name?: unknown;
      retriable?: unknown;
      code?: unknown;
      cause?: unknown;
    };
    if (typeof code === 'string' && code.startsWith('REC_ERR_')) return retriable === true;
    if (retriable === true) return true;
    if (typeof name === 'string' && TRANSIENT_NAMES.has(name)) return true;
    e = cause;
  }
  return false;
}

/** How a call failing with a transient error is tried again. */
export interface RetryPolicy {
  /** Attempts after the first (default: unbounded, until `forMs`). */
  readonly retries?: number;
  /** Give up after this long in all (ms; default: unbounded, until `retries`). */
  readonly forMs?: number;
  /** Wait before the first retry (ms), doubled after each one up to `maxMs`. */
  readonly initialMs: number;
  readonly maxMs: number;
}

/**
 * `call()`, tried again with backoff while it fails with a transient error (`isTransient`)
 * and the policy allows; any other error, or the last transient one, is thrown. `onRetry` hears
 * about each failure that will be retried.
 */
export async function retryTransient<T>(
  call: () => Promise<T>,
  policy: RetryPolicy,
  onRetry?: (info: { attempt: number; delayMs: number; err: unknown }) => void,
): Promise<T> {
  const started = Date.now();
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const delayMs = Math.min(policy.maxMs, policy.initialMs * 2 ** attempt);
      const outOfTries = policy.retries !== undefined && attempt >= policy.retries;
      const outOfTime = policy.forMs !== undefined && Date.now() + delayMs - started > policy.forMs;
      if (!isTransient(err) || outOfTries || outOfTime) throw err;
      onRetry?.({ attempt: attempt + 1, delayMs, err });
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}
