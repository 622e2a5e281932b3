import { describe, expect, it } from 'vitest';
import { loadConfig } from '../common/config.ts';
import { redisService } from './redis-server.ts';
import { describeStatus, endpointLines, stackStatus } from './stack.ts';

const WITH_PASSWORDS = {
  KAFKA_BROKERS: '127.0.0.1:9',
  SCHEMA_REGISTRY_URL: 'http://127.0.0.1:9/apis/ccompat/v7',
  REDIS_URL: 'rediss://default:hunter2@127.0.0.1:9',
  STACK_DIR: '/nonexistent-rec-stack',
};

describe('printed endpoints', () => {
  it('stack:up lines show no password', () => {
    const lines = endpointLines(loadConfig(WITH_PASSWORDS)).join('\n');
    expect(lines).not.toContain('hunter2');
    expect(lines).toContain('REDIS_URL=rediss://default:***@127.0.0.1:9');
  });

  it('stack:status lines show no password', async () => {
    const statuses = await stackStatus(loadConfig(WITH_PASSWORDS));
    const redis = statuses.find((s) => s.service === 'redis');
    expect(redis?.owner.kind).toBe('external');
    const printed = statuses.map(describeStatus).join('\n');
    expect(printed).not.toContain('hunter2');
    expect(printed).toContain('rediss://default:***@127.0.0.1:9');
  });

  it('a rediss:// URL given is external: the launcher never starts a Redis for it', () => {
    expect(redisService.isExternal(loadConfig(WITH_PASSWORDS))).toBe(true);
  });
});
