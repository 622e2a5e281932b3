import {
  KafkaJSConnectionError,
  KafkaJSError,
  KafkaJSGroupCoordinatorNotFound,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
} from 'kafkajs';
import { describe, expect, it, vi } from 'vitest';
import { RecError } from '../common/errors.ts';
import { isTransient, retryTransient } from './retriable.ts';

/** kafkajs's runtime constructors take more than its typings declare (a `cause`, a message). */
const build = (C: unknown, ...args: unknown[]): Error =>
  new (C as new (...a: unknown[]) => Error)(...args);

const refused = () =>
  new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092');

describe('isTransient', () => {
  it('sees a broker restart through the errors kafkajs wraps it in after its own retries', () => {
    const inner = refused();
    // What kafkajs threw in this suite's broker restart: nested retriers rewrap the cause.
    const exhausted = new KafkaJSNumberOfRetriesExceeded(inner, { retryCount: 8, retryTime: 30 });
    const rewrapped = build(KafkaJSNonRetriableError, exhausted, { cause: inner });
    expect(exhausted.retriable).toBe(false);
    expect((rewrapped as { retriable?: boolean }).retriable).toBe(false);
    expect(isTransient(exhausted)).toBe(true);
    expect(isTransient(rewrapped)).toBe(true);
  });

  it('counts a missing group coordinator (a broker still loading) as transient', () => {
    const err = build(KafkaJSGroupCoordinatorNotFound, 'Failed to find group coordinator');
    expect((err as { retriable?: boolean }).retriable).toBe(false);
    expect(isTransient(err)).toBe(true);
  });

  it('does not retry what cannot succeed', () => {
    expect(isTransient(new KafkaJSNonRetriableError('bad group'))).toBe(false);
    expect(isTransient(new KafkaJSError('x', { retriable: false }))).toBe(false);
    expect(isTransient(new TypeError('x is undefined'))).toBe(false);
    expect(isTransient(undefined)).toBe(false);
  });

  it('takes a RecError by its own flag, whatever its cause', () => {
    expect(isTransient(new RecError('REC_ERR_SCHEMA_REGISTRY', 'down', { retriable: true }))).toBe(
      true,
    );
    expect(isTransient(new RecError('REC_ERR_DECODE', 'bad bytes', { cause: refused() }))).toBe(
      false,
    );
  });
});

describe('retryTransient', () => {
  it('calls again while the error is transient, then answers', async () => {
    const call = vi.fn().mockRejectedValueOnce(refused()).mockResolvedValue('ok');
    const retried: number[] = [];
    await expect(
      retryTransient(call, { retries: 3, initialMs: 1, maxMs: 2 }, ({ attempt }) => {
        retried.push(attempt);
      }),
    ).resolves.toBe('ok');
    expect(retried).toEqual([1]);
  });

  it('gives up after `retries`, or once `forMs` would pass, with the last error', async () => {
    const call = vi.fn().mockRejectedValue(refused());
    await expect(retryTransient(call, { retries: 2, initialMs: 1, maxMs: 1 })).rejects.toThrow(
      /ECONNREFUSED/,
    );
    expect(call).toHaveBeenCalledTimes(3);
    const timed = vi.fn().mockRejectedValue(refused());
    await expect(retryTransient(timed, { forMs: 50, initialMs: 20, maxMs: 20 })).rejects.toThrow(
      /ECONNREFUSED/,
    );
    expect(timed.mock.calls.length).toBeGreaterThan(1);
    expect(timed.mock.calls.length).toBeLessThan(5);
  });

  it('throws an error that is not transient at once', async () => {
    const call = vi.fn().mockRejectedValue(new KafkaJSNonRetriableError('bad group'));
    await expect(retryTransient(call, { retries: 5, initialMs: 1, maxMs: 1 })).rejects.toThrow(
      /bad group/,
    );
    expect(call).toHaveBeenCalledTimes(1);
  });
});
