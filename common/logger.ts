/**
 * Structured logging (pino). Entry points create one logger and pass it down; modules take a
 * `logger.child({ module })`. kafkajs log lines are routed through the same logger.
 */
import { pino, type Logger } from 'pino';
import { logLevel, type logCreator } from 'kafkajs';

export type { Logger };

export function createLogger(level: string = 'info', name = 'rec'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}

/** A kafkajs `logCreator` writing to `logger`; kafkajs INFO chatter is demoted to debug. */
export function kafkaLogCreator(logger: Logger): logCreator {
  const log = logger.child({ module: 'kafkajs' });
  return () =>
    ({ level, log: entry }) => {
      const { message, ...rest } = entry;
      // Known, expected notices: our producers are idempotent with bounded retries on purpose
      // (a load fails visibly instead of hanging when Kafka is gone).
      const expected = message.startsWith('Limiting retries for the idempotent producer');
      if (level === logLevel.ERROR) log.error(rest, message);
      else if (level === logLevel.WARN && !expected) log.warn(rest, message);
      else log.debug(rest, message);
    };
}
