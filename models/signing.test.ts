import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../common/config.ts';
import {
  canonicalJson,
  checkSignature,
  signModel,
  signatureValid,
  SigningKey,
  UNSIGNED_TRUST,
} from './signing.ts';

const SECRET = 'k'.repeat(40);
const key = new SigningKey(SECRET);
const meta = { version: 'v1', features: ['a', 'b'], nested: { z: 1, a: [2, { y: 3, b: 4 }] } };
const bytes = Buffer.from('onnx bytes');

describe('model signatures', () => {
  it('cover the canonical metadata (key order does not matter) and the bytes', () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: undefined, b: 3 } })).toBe(
      '{"a":{"b":3,"d":2},"b":1}',
    );
    const sig = signModel(key, meta, bytes);
    expect(sig).toMatch(/^[0-9a-f]{64}$/);
    const reordered = {
      nested: { a: [2, { b: 4, y: 3 }], z: 1 },
      features: ['a', 'b'],
      version: 'v1',
    };
    expect(signatureValid(key, reordered, bytes, sig)).toBe(true);
    expect(signatureValid(key, { ...meta, version: 'v2' }, bytes, sig)).toBe(false);
    expect(signatureValid(key, { ...meta, features: ['b', 'a'] }, bytes, sig)).toBe(false);
    expect(signatureValid(key, meta, Buffer.from('onnx bytez'), sig)).toBe(false);
    expect(signatureValid(new SigningKey('x'.repeat(40)), meta, bytes, sig)).toBe(false);
    expect(signatureValid(key, meta, bytes, sig.slice(0, 62))).toBe(false);
    expect(signatureValid(key, meta, bytes, 'zz' + sig.slice(2))).toBe(false);
  });

  it('are required with a key unless unsigned models are allowed; a bad one is always refused', () => {
    const sig = signModel(key, meta, bytes);
    const strict = { key, allowUnsigned: false };
    const lenient = { key, allowUnsigned: true };
    expect(() => {
      checkSignature('v1', meta, bytes, sig, strict);
    }).not.toThrow();
    expect(() => {
      checkSignature('v1', meta, bytes, null, strict);
    }).toThrow(/not signed/);
    expect(() => {
      checkSignature('v1', meta, bytes, null, lenient);
    }).not.toThrow();
    expect(() => {
      checkSignature('v1', meta, Buffer.from('x'), sig, lenient);
    }).toThrow(/signature does not match/);
    expect(() => {
      checkSignature('v1', meta, bytes, null, UNSIGNED_TRUST);
    }).not.toThrow();
  });

  it('come from MODEL_SIGNING_KEY, which is never printed; unsigned is allowed only without a key by default', () => {
    const none = loadConfig({});
    expect(none.models).toMatchObject({ activeCheckMs: 30_000, keepVersions: 10 });
    expect(none.models.trust).toEqual({ key: undefined, allowUnsigned: true });
    const keyed = loadConfig({ MODEL_SIGNING_KEY: SECRET });
    expect(keyed.models.trust.allowUnsigned).toBe(false);
    expect(keyed.models.trust.key).toBeInstanceOf(SigningKey);
    expect(JSON.stringify(keyed)).not.toContain(SECRET);
    expect(inspect(keyed, { depth: 10 })).not.toContain(SECRET);
    expect(String(keyed.models.trust.key)).not.toContain(SECRET);
    expect(
      loadConfig({ MODEL_SIGNING_KEY: SECRET, MODEL_ALLOW_UNSIGNED: 'true' }).models.trust
        .allowUnsigned,
    ).toBe(true);
    expect(() => loadConfig({ MODEL_ALLOW_UNSIGNED: 'false' })).toThrow(ConfigError);
    const short = 'short-secret-value';
    let message = '';
    try {
      loadConfig({ MODEL_SIGNING_KEY: short });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('MODEL_SIGNING_KEY');
    expect(message).not.toContain(short);
  });
});
