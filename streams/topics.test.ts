import { describe, expect, it } from 'vitest';
import { allTopics, topics } from './topics.ts';

describe('topics: replication', () => {
  it('one copy and the broker default min.insync.replicas by default', () => {
    for (const t of allTopics(topics('p.'))) {
      expect(t.replicationFactor).toBe(1);
      expect(t.configs['min.insync.replicas']).toBeUndefined();
    }
  });

  it('three copies need two in sync (acks=all survives one broker down)', () => {
    for (const t of allTopics(topics('p.', 3, 3))) {
      expect(t.replicationFactor).toBe(3);
      expect(t.configs['min.insync.replicas']).toBe('2');
    }
  });
});
