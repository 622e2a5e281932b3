/**
 * Structured logging (pino). Entry points create one logger and pass it down; modules take a
 * `logger.child({ module })`. kafkajs log lines are routed through the same logger.
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import { logLevel, type logCreator } from 'kafkajs';

export type { Logger };

/** Field names whose values are never logged, at the top of a logged object or nested two deep. */
const SECRET_FIELDS = [
  'password',
  'passwd',
  'secret',
  'token',
  'authorization',
  'apiKey',
  'api_key',
  'secretKey',
  'privateKey',
  'accessKey',
  'signingKey',
  'clientSecret',
];

/**
 * pino `redact` paths: each secret field as `f`, `*.f` and `*.*.f` (e.g. `{ sasl: { password } }`,
 * `{ req: { headers: { authorization } } }`). Bare `key` is not among them: records and Redis
 * keys are logged as `key` and must stay readable.
 */
export const REDACT_PATHS: readonly string[] = SECRET_FIELDS.flatMap((f) => [
  f,
  `*.${f}`,
  `*.*.${f}`,
]);

/** A pino options object's `redact`: the paths above, masked as `[redacted]`. */
export const LOG_REDACT = { paths: [...REDACT_PATHS], censor: '[redacted]' };

/** The project's logger (stdout unless `destination` is given); secret fields are redacted. */
export function createLogger(
  level: string = 'info',
  name = 'rec',
  destination?: DestinationStream,
): Logger {
  const options = { name, level, base: { pid: process.pid }, redact: LOG_REDACT };
  return destination === undefined ? pino(options) : pino(options, destination);
}

/**
 * Error responses that kafkajs logs at ERROR for every request although it retries the request: a
 * broker that has just started is still loading its group coordinator or electing partition
 * leaders (kafkajs's GROUP_LOAD_IN_PROGRESS, GROUP_COORDINATOR_NOT_AVAILABLE,
 * NOT_COORDINATOR_FOR_GROUP, LEADER_NOT_AVAILABLE). A request that keeps failing ends in an
 * error its caller raises; one that recovers needs no error line.
 */
const RETRIED_RESPONSE_ERRORS: readonly string[] = [
  "The coordinator is loading and hence can't process requests for this group",
  'The group coordinator is not available',
  'This is not the correct coordinator for this group',
  'There is no leader for this topic-partition as we are in the middle of a leadership election',
];

/**
 * A kafkajs `logCreator` writing to `logger`; kafkajs INFO chatter and the error responses it
 * retries while a broker starts are demoted to debug.
 */
export function kafkaLogCreator(logger: Logger): logCreator {
  const log = logger.child({ module: 'kafkajs' });
  return () =>
    ({ level, log: entry }) => {
      const { message, ...rest } = entry;
      // Known, expected notices: our producers are idempotent with bounded retries on purpose
      // (a load fails visibly instead of hanging when Kafka is gone).
      const expected = message.startsWith('Limiting retries for the idempotent producer');
      const retried =
        message.startsWith('Response ') &&
        typeof rest.error === 'string' &&
        RETRIED_RESPONSE_ERRORS.includes(rest.error);
      if (level === logLevel.ERROR && !retried) log.error(rest, message);
      else if (level === logLevel.WARN && !expected) log.warn(rest, message);
      else log.debug(rest, message);
    };
}
