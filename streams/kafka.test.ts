import { describe, expect, it } from 'vitest';
import { loadConfig } from '../common/config.ts';
import { createLogger } from '../common/logger.ts';
import { kafkaConfig, registryClientConfig } from './kafka.ts';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const logger = createLogger('silent');
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('kafkaConfig (what createKafka builds)', () => {
  it('plaintext, no SASL by default', () => {
    const k = kafkaConfig(loadConfig({ KAFKA_BROKERS: 'b1:9092,b2:9092' }), 'c', logger);
    expect(k.brokers).toEqual(['b1:9092', 'b2:9092']);
    expect(k.ssl).toBeUndefined();
    expect(k.sasl).toBeUndefined();
  });

  it.each(['plain', 'scram-sha-256', 'scram-sha-512'] as const)('SASL %s over TLS', (mechanism) => {
    const config = loadConfig({
      KAFKA_BROKERS: 'b1:9093',
      KAFKA_SASL_MECHANISM: mechanism,
      KAFKA_SASL_USERNAME: 'svc',
      KAFKA_SASL_PASSWORD: 'hunter2',
      KAFKA_SSL: 'true',
    });
    const k = kafkaConfig(config, 'c', logger);
    expect(k.sasl).toEqual({ mechanism, username: 'svc', password: 'hunter2' });
    expect(k.ssl).toBe(true);
  });

  it('the CA file becomes ssl.ca', () => {
    const ca = join(mkdtempSync(join(tmpdir(), 'rec-kafka-')), 'ca.pem');
    writeFileSync(ca, PEM);
    const k = kafkaConfig(loadConfig({ KAFKA_SSL_CA_FILE: ca }), 'c', logger);
    expect(k.ssl).toEqual({ ca: [PEM] });
  });
});

describe('registryClientConfig (what createRegistryClient builds)', () => {
  it('no credentials by default', () => {
    const r = registryClientConfig(loadConfig({}));
    expect(r.basicAuthCredentials).toBeUndefined();
  });

  it('basic auth from SCHEMA_REGISTRY_USERNAME / _PASSWORD', () => {
    const r = registryClientConfig(
      loadConfig({ SCHEMA_REGISTRY_USERNAME: 'reg', SCHEMA_REGISTRY_PASSWORD: 'hunter2' }),
    );
    expect(r.basicAuthCredentials).toEqual({
      credentialsSource: 'USER_INFO',
      userInfo: 'reg:hunter2',
    });
  });
});
