import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.ts';
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
