/**
 * API keys: bearer parsing, and the constant-time comparison accepting exactly the configured keys.
 */
import { describe, expect, it } from 'vitest';
import { Secret } from '../common/redact.ts';
import { ApiKeys, bearerToken } from './auth.ts';

describe('bearerToken', () => {
  it.each([
    ['Bearer abc', 'abc'],
    ['bearer   abc ', 'abc'],
    ['Basic abc', null],
    ['Bearer', null],
    ['Bearer a b', null],
    [undefined, null],
  ])('%s', (header, token) => {
    expect(bearerToken(header)).toBe(token);
  });
});

describe('ApiKeys', () => {
  const keys = new ApiKeys([
    new Secret('first-key-0123456789'),
    new Secret('second-key-0123456789'),
  ]);

  it('accepts every configured key and nothing else', () => {
    expect(keys.configured).toBe(true);
    expect(keys.accepts('first-key-0123456789')).toBe(true);
    expect(keys.accepts('second-key-0123456789')).toBe(true);
    expect(keys.accepts('first-key-012345678')).toBe(false);
    expect(keys.accepts('first-key-0123456789 ')).toBe(false);
    expect(keys.accepts('')).toBe(false);
    expect(keys.accepts('x'.repeat(10_000))).toBe(false);
  });

  it('with none configured accepts nothing', () => {
    const none = new ApiKeys([]);
    expect(none.configured).toBe(false);
    expect(none.accepts('')).toBe(false);
  });
});
