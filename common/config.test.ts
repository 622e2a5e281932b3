import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, basicAuthHeader, loadConfig } from './config.ts';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function pemFile(text = PEM): string {
  const path = join(mkdtempSync(join(tmpdir(), 'rec-config-')), 'ca.pem');
  writeFileSync(path, text);
  return path;
}

function configError(env: NodeJS.ProcessEnv): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig: Kafka security', () => {
  it('is plaintext without authentication by default', () => {
    expect(loadConfig({}).kafkaSecurity).toEqual({ sasl: undefined, ssl: false, ca: undefined });
    expect(loadConfig({}).schemaRegistryAuth).toBeUndefined();
  });

  it('reads SASL credentials, TLS and the CA file', () => {
    const c = loadConfig({
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: 'svc',
      KAFKA_SASL_PASSWORD: 'hunter2',
      KAFKA_SSL_CA_FILE: pemFile(),
    });
    expect(c.kafkaSecurity.sasl?.mechanism).toBe('scram-sha-512');
    expect(c.kafkaSecurity.sasl?.username).toBe('svc');
    expect(c.kafkaSecurity.sasl?.password.reveal()).toBe('hunter2');
    expect(c.kafkaSecurity.ssl).toBe(true); // a CA file implies TLS
    expect(c.kafkaSecurity.ca).toBe(PEM);
    // Printing the configuration shows no password.
    expect(JSON.stringify(c)).not.toContain('hunter2');
  });

  it('KAFKA_SSL=true without a CA uses the system CAs', () => {
    expect(loadConfig({ KAFKA_SSL: 'true' }).kafkaSecurity).toEqual({
      sasl: undefined,
      ssl: true,
      ca: undefined,
    });
  });

  it('a mechanism without username or password names the missing variable', () => {
    const msg = configError({ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'svc' });
    expect(msg).toContain('KAFKA_SASL_PASSWORD');
    expect(msg).not.toContain('KAFKA_SASL_USERNAME:');
    expect(configError({ KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_PASSWORD: 'x' })).toContain(
      'KAFKA_SASL_USERNAME',
    );
  });

  it('credentials without a mechanism, an unknown mechanism, a bad flag are errors', () => {
    expect(configError({ KAFKA_SASL_USERNAME: 'svc', KAFKA_SASL_PASSWORD: 'x' })).toContain(
      'KAFKA_SASL_MECHANISM',
    );
    expect(configError({ KAFKA_SASL_MECHANISM: 'gssapi' })).toContain('KAFKA_SASL_MECHANISM');
    expect(configError({ KAFKA_SSL: 'yes' })).toContain('KAFKA_SSL');
  });

  it('an unreadable or non-PEM CA file is a ConfigError naming KAFKA_SSL_CA_FILE', () => {
    const missing = configError({ KAFKA_SSL_CA_FILE: '/nonexistent/ca.pem' });
    expect(missing).toMatch(/KAFKA_SSL_CA_FILE: cannot read \/nonexistent\/ca\.pem/);
    expect(configError({ KAFKA_SSL_CA_FILE: pemFile('not a cert') })).toContain(
      'KAFKA_SSL_CA_FILE',
    );
    expect(configError({ KAFKA_SSL: 'false', KAFKA_SSL_CA_FILE: pemFile() })).toContain(
      'KAFKA_SSL_CA_FILE',
    );
  });
});

describe('loadConfig: registry basic auth', () => {
  it('reads username and password', () => {
    const c = loadConfig({ SCHEMA_REGISTRY_USERNAME: 'reg', SCHEMA_REGISTRY_PASSWORD: 'hunter2' });
    expect(c.schemaRegistryAuth?.username).toBe('reg');
    expect(basicAuthHeader(c.schemaRegistryAuth!)).toBe(
      `Basic ${Buffer.from('reg:hunter2').toString('base64')}`,
    );
    expect(JSON.stringify(c)).not.toContain('hunter2');
  });

  it('one without the other, or credentials in the URL, are errors', () => {
    expect(configError({ SCHEMA_REGISTRY_USERNAME: 'reg' })).toContain('SCHEMA_REGISTRY_PASSWORD');
    expect(configError({ SCHEMA_REGISTRY_PASSWORD: 'x' })).toContain('SCHEMA_REGISTRY_USERNAME');
    const msg = configError({ SCHEMA_REGISTRY_URL: 'https://reg:hunter2@registry.example' });
    expect(msg).toContain('SCHEMA_REGISTRY_URL');
    expect(msg).not.toContain('hunter2');
  });
});

describe('loadConfig: Redis over TLS with credentials', () => {
  it('takes a rediss:// URL as given and marks Redis external', () => {
    const c = loadConfig({ REDIS_URL: 'rediss://default:hunter2@cache.example:6380' });
    expect(c.redisUrl).toBe('rediss://default:hunter2@cache.example:6380');
    expect(c.external.redis).toBe(true);
  });
});

describe('loadConfig: Redis Cluster and topic replication', () => {
  it('reads REDIS_CLUSTER_NODES (Redis then external) and KAFKA_REPLICATION_FACTOR', () => {
    const c = loadConfig({
      REDIS_CLUSTER_NODES: '127.0.0.1:27001, 127.0.0.1:27002',
      KAFKA_REPLICATION_FACTOR: '3',
    });
    expect(c.redisClusterNodes).toEqual(['127.0.0.1:27001', '127.0.0.1:27002']);
    expect(c.external.redis).toBe(true);
    expect(c.kafkaReplicationFactor).toBe(3);
  });

  it('defaults to one Redis and one copy per partition; refuses malformed values', () => {
    const c = loadConfig({});
    expect(c.redisClusterNodes).toBeUndefined();
    expect(c.kafkaReplicationFactor).toBe(1);
    expect(() => loadConfig({ REDIS_CLUSTER_NODES: 'host-without-port' })).toThrow(
      /REDIS_CLUSTER_NODES/,
    );
    expect(() => loadConfig({ KAFKA_REPLICATION_FACTOR: '0' })).toThrow(/KAFKA_REPLICATION_FACTOR/);
  });
});

describe("loadConfig: the training rows' Redis", () => {
  it('reads TRAINING_REDIS_URL (default: none, the rows go to the live Redis); refuses another scheme', () => {
    expect(loadConfig({}).trainingRedisUrl).toBeUndefined();
    const c = loadConfig({ TRAINING_REDIS_URL: 'redis://rows.example:6379' });
    expect(c.trainingRedisUrl).toBe('redis://rows.example:6379');
    // The live Redis is not moved by it.
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.external.redis).toBe(false);
    expect(() => loadConfig({ TRAINING_REDIS_URL: 'http://rows.example' })).toThrow(
      /TRAINING_REDIS_URL/,
    );
  });
});

describe('loadConfig: API keys, ingest and served-list logging', () => {
  const key = 'k'.repeat(24);

  it('has no API key by default, ingest bounds and logging on', () => {
    const c = loadConfig({});
    expect(c.apiKeys).toEqual([]);
    expect(c.ingest).toEqual({ maxEvents: 500, maxBytes: 1024 * 1024, timeoutMs: 5_000 });
    expect(c.servedLog).toEqual({
      enabled: true,
      bufferSize: 10_000,
      batchSize: 500,
      flushMs: 100,
    });
    expect(loadConfig({ SERVED_LOG: 'OFF' }).servedLog.enabled).toBe(false);
  });

  it('reads comma-separated keys, trimmed, and never prints them', () => {
    const c = loadConfig({ API_KEYS: ` ${key}1, ,${key}2 ` });
    expect(c.apiKeys.map((k) => k.reveal())).toEqual([`${key}1`, `${key}2`]);
    expect(JSON.stringify(c)).not.toContain(key);
    expect(String(c.apiKeys[0])).toBe('[redacted]');
  });

  it('refuses short or blank-holding keys without echoing them', () => {
    const message = configError({ API_KEYS: `${key},short-secret` });
    expect(message).toMatch(/API_KEYS\.1: every key must be at least 16 characters/);
    expect(message).not.toContain('short-secret');
    expect(configError({ API_KEYS: `${key} x${key}` })).toMatch(/API_KEYS\.0: keys may hold only/);
    expect(configError({ INGEST_MAX_EVENTS: '0', SERVED_LOG: 'maybe' })).toMatch(
      /INGEST_MAX_EVENTS[\s\S]*SERVED_LOG: must be on or off/,
    );
  });
});
