import { describe, expect, it } from 'vitest';
import { loadConfig } from '../common/config.ts';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { moveBusPorts, redisService } from './redis-server.ts';
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

describe("a cluster node's nodes.conf", () => {
  // As Redis 7 wrote it with its default bus ports (the port + 10000).
  const OLD = [
    'd49a4a6989b1d0619c422a6d9987211e7da3d260 127.0.0.1:27006@37006 slave 10289d5a40e5ba96f12bb87df8a336e1f99a1218 0 1796246113814 3 connected',
    'b86c51bf23e09c46764fc0d71dbd15ff40b957c8 127.0.0.1:27001@37001,,shard-id=ab12 myself,master - 0 1796246113000 1 connected 0-5460',
    '0123456789abcdef0123456789abcdef01234567 127.0.0.1:26000@36000 master - 0 0 4 connected',
    'vars currentEpoch 6 lastVoteEpoch 0',
    '',
  ].join('\n');
  const BUS = new Map([
    [27001, 27101],
    [27006, 27106],
  ]);

  it('gets the bus ports given by port; other nodes and lines stay as they were', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rec-nodes-conf-'));
    try {
      const file = join(dir, 'nodes.conf');
      writeFileSync(file, OLD);
      const logged: string[] = [];
      await moveBusPorts(file, BUS, (l) => logged.push(l));
      const lines = readFileSync(file, 'utf8').split('\n');
      expect(lines[0]).toContain(' 127.0.0.1:27006@27106 slave ');
      expect(lines[1]).toContain(' 127.0.0.1:27001@27101,,shard-id=ab12 myself,master ');
      expect(lines.slice(2)).toEqual(OLD.split('\n').slice(2));
      expect(logged).toHaveLength(1);
      // Already moved: nothing written, nothing said; a missing file (a fresh node): nothing.
      await moveBusPorts(file, BUS, (l) => logged.push(l));
      await moveBusPorts(join(dir, 'missing.conf'), BUS, (l) => logged.push(l));
      expect(logged).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
