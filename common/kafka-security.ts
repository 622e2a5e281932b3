/**
 * The kafkajs options for the configured SASL and TLS settings, shared by every kafkajs client
 * the project builds (streams/kafka.ts, the stack launcher's probe).
 */
import type { ConnectionOptions } from 'node:tls';
import type { SASLOptions } from 'kafkajs';
import type { KafkaSecurity } from './config.ts';

/** `ssl` and `sasl` for a kafkajs `KafkaConfig`; empty for plaintext without authentication. */
export function kafkaSecurityOptions(security: KafkaSecurity): {
  ssl?: boolean | ConnectionOptions;
  sasl?: SASLOptions;
} {
  const out: { ssl?: boolean | ConnectionOptions; sasl?: SASLOptions } = {};
  if (security.ssl) out.ssl = security.ca === undefined ? true : { ca: [security.ca] };
  if (security.sasl !== undefined) {
    const username = security.sasl.username;
    const password = security.sasl.password.reveal();
    switch (security.sasl.mechanism) {
      case 'plain':
        out.sasl = { mechanism: 'plain', username, password };
        break;
      case 'scram-sha-256':
        out.sasl = { mechanism: 'scram-sha-256', username, password };
        break;
      case 'scram-sha-512':
        out.sasl = { mechanism: 'scram-sha-512', username, password };
        break;
    }
  }
  return out;
}
