import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { logLevel } from 'kafkajs';
import { createLogger, kafkaLogCreator } from './logger.ts';
import { redact } from './redact.ts';

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

describe('createLogger', () => {
  it('masks password-like fields of logged objects, top level and nested', () => {
    const out = capture();
    const log = createLogger('info', 'test', out.stream);
    log.info(
      {
        password: 'p-top',
        sasl: { mechanism: 'plain', username: 'svc', password: 'p-nested' },
        req: { headers: { authorization: 'Basic czNjcmV0' } },
        token: 't-top',
        registry: { secret: 's-nested', apiKey: 'k-nested' },
        key: 'rec:{u:42}:state',
      },
      'connecting',
    );
    const line = out.text();
    for (const secret of ['p-top', 'p-nested', 'czNjcmV0', 't-top', 's-nested', 'k-nested']) {
      expect(line).not.toContain(secret);
    }
    // Not everything is hidden: user names and keys stay readable.
    expect(line).toContain('"username":"svc"');
    expect(line).toContain('rec:{u:42}:state');
    expect(line).toContain('[redacted]');
  });

  it('a log line with a redacted URL shows no password', () => {
    const out = capture();
    createLogger('info', 'test', out.stream).info(
      { redis: redact('rediss://default:hunter2@cache:6380') },
      'redis connected',
    );
    expect(out.text()).not.toContain('hunter2');
    expect(out.text()).toContain('rediss://default:***@cache:6380');
  });
});

describe('kafkaLogCreator', () => {
  const entry = (message: string, fields: Record<string, unknown> = {}) => ({
    namespace: 'Connection',
    level: logLevel.ERROR,
    label: 'ERROR',
    log: { timestamp: '2026-12-04T00:00:00.000Z', logger: 'kafkajs', message, ...fields },
  });

  it('keeps kafkajs errors, and leaves the responses it retries while a broker starts at debug', () => {
    const out = capture();
    const logger = createLogger('info', 'test', out.stream);
    const write = kafkaLogCreator(logger)(logLevel.DEBUG);
    write(
      entry('Response GroupCoordinator(key: 10, version: 2)', {
        error: 'The group coordinator is not available',
      }),
    );
    write(
      entry('Response InitProducerId(key: 22, version: 1)', {
        error: "The coordinator is loading and hence can't process requests for this group",
      }),
    );
    expect(out.text()).toBe('');
    write(
      entry('Response Heartbeat(key: 12, version: 3)', {
        error: 'The coordinator is not aware of this member',
      }),
    );
    write(entry('Connection error: connect ECONNREFUSED 127.0.0.1:9092'));
    const lines = out
      .text()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [50, 'Response Heartbeat(key: 12, version: 3)'],
      [50, 'Connection error: connect ECONNREFUSED 127.0.0.1:9092'],
    ]);
  });
});
