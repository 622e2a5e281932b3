import { KafkaJSNonRetriableError, KafkaJSProtocolError, type Admin } from 'kafkajs';
import { describe, expect, it, vi } from 'vitest';
import { consumerLag } from './admin.ts';

/** What kafkajs throws while the broker's group coordinator is still loading. */
const notCoordinator = () =>
  new KafkaJSProtocolError(
    Object.assign(new Error('This is not the correct coordinator for this group'), {
      type: 'NOT_COORDINATOR',
      code: 16,
      retriable: true,
    }),
  );

const FAST = { retries: 3, initialMs: 1, maxMs: 2 };

function fakeAdmin(fetchOffsets: () => Promise<unknown>): Admin {
  return {
    fetchTopicOffsets: () =>
      Promise.resolve([
        { partition: 0, offset: '10', high: '10', low: '0' },
        { partition: 1, offset: '7', high: '7', low: '2' },
      ]),
    fetchOffsets,
  } as unknown as Admin;
}

const committed = [
  {
    topic: 't',
    partitions: [
      { partition: 0, offset: '4', metadata: null },
      { partition: 1, offset: '-1', metadata: null },
    ],
  },
];

describe('consumerLag', () => {
  it('retries the offset read while the group coordinator is not ready', async () => {
    const fetchOffsets = vi
      .fn()
      .mockRejectedValueOnce(notCoordinator())
      .mockRejectedValueOnce(notCoordinator())
      .mockResolvedValue(committed);
    const lag = await consumerLag(fakeAdmin(fetchOffsets), 'g', 't', FAST);
    expect(lag).toEqual([
      { partition: 0, lag: 6 },
      { partition: 1, lag: 5 },
    ]);
    expect(fetchOffsets).toHaveBeenCalledTimes(3);
  });

  it('gives up after the bounded retries, with the last error', async () => {
    const fetchOffsets = vi.fn().mockRejectedValue(notCoordinator());
    await expect(consumerLag(fakeAdmin(fetchOffsets), 'g', 't', FAST)).rejects.toThrow(
      /not the correct coordinator/,
    );
    expect(fetchOffsets).toHaveBeenCalledTimes(FAST.retries + 1);
  });

  it('does not retry an error that is not retriable', async () => {
    const fetchOffsets = vi.fn().mockRejectedValue(new KafkaJSNonRetriableError('bad group'));
    await expect(consumerLag(fakeAdmin(fetchOffsets), 'g', 't', FAST)).rejects.toThrow(/bad group/);
    expect(fetchOffsets).toHaveBeenCalledTimes(1);
  });
});
