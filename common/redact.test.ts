import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { redact, Secret } from './redact.ts';

describe('redact', () => {
  it('masks the password of a URL, keeping user, host and path', () => {
    expect(redact('redis://user:hunter2@host:6379/0')).toBe('redis://user:***@host:6379/0');
    expect(redact('rediss://default:s3cr%40t@cache.example:6380')).toBe(
      'rediss://default:***@cache.example:6380',
    );
    expect(redact('https://u:p@reg.example/apis/ccompat/v7')).toBe(
      'https://u:***@reg.example/apis/ccompat/v7',
    );
  });

  it('masks a lone userinfo (ioredis takes it as the password) and an empty user', () => {
    expect(redact('redis://hunter2@host:6379')).toBe('redis://***@host:6379');
    expect(redact('redis://:hunter2@host:6379')).toBe('redis://:***@host:6379');
  });

  it('masks every URL in a line and password-like query parameters', () => {
    const line =
      'redis: REDIS_URL=rediss://a:one@h1 does not answer; also http://b:two@h2/x?token=three&k=1';
    const out = redact(line);
    for (const secret of ['one', 'two', 'three']) expect(out).not.toContain(secret);
    expect(out).toContain('k=1');
  });

  it('leaves strings without credentials alone', () => {
    for (const s of [
      '127.0.0.1:9092,127.0.0.1:9093',
      'redis://127.0.0.1:6379',
      'http://127.0.0.1:8081/apis/ccompat/v7',
      'user@example.com',
    ]) {
      expect(redact(s)).toBe(s);
    }
  });
});

describe('Secret', () => {
  it('reveals its value only on request', () => {
    const s = new Secret('hunter2');
    expect(s.reveal()).toBe('hunter2');
    expect(JSON.stringify({ s })).not.toContain('hunter2');
    expect(String(s)).not.toContain('hunter2');
    expect(inspect({ s })).not.toContain('hunter2');
  });
});
