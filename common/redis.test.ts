import { describe, expect, it } from 'vitest';
import { createRedis, isCluster, keySlot } from './redis.ts';

describe('keySlot', () => {
  it('maps keys to the slots Redis Cluster computes (CRC16/XMODEM mod 16384)', () => {
    // CRC16/XMODEM check value of "123456789" is 0x31C3; "foo" is slot 12182 (CLUSTER KEYSLOT foo).
    expect(keySlot('123456789')).toBe(0x31c3 % 16384);
    expect(keySlot('foo')).toBe(12182);
  });

  it('hashes only the hash tag, so the keys of one customer share a slot', () => {
    expect(keySlot('rec:{u:42}:state')).toBe(keySlot('u:42'));
    expect(keySlot('other:{u:42}:seen')).toBe(keySlot('rec:{u:42}:state'));
    // An empty tag `{}` is no tag: the whole key is hashed.
    expect(keySlot('a{}b')).not.toBe(keySlot(''));
  });
});

describe('createRedis', () => {
  it('builds a Cluster client when cluster nodes are named, one Redis otherwise', () => {
    const single = createRedis({ redisUrl: 'redis://127.0.0.1:9' }, { lazyConnect: true });
    const cluster = createRedis(
      { redisUrl: 'redis://127.0.0.1:9', redisClusterNodes: ['127.0.0.1:9', '127.0.0.1:10'] },
      { lazyConnect: true },
    );
    try {
      expect(isCluster(single)).toBe(false);
      expect(isCluster(cluster)).toBe(true);
    } finally {
      single.disconnect();
      cluster.disconnect();
    }
  });
});
