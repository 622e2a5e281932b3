import { describe, expect, it } from 'vitest';
import { loadConfig } from '../common/config.ts';
import { freePort } from '../test/helpers.ts';
import { openTrainingRedis } from './rows-redis.ts';

describe("the training rows' Redis", () => {
  it('opens no client without TRAINING_REDIS_URL: the rows go to the live Redis', async () => {
    expect(await openTrainingRedis(loadConfig({}))).toBeUndefined();
  });

  it("opens a connected client of TRAINING_REDIS_URL (here the test stack's Redis)", async () => {
    const client = await openTrainingRedis(
      loadConfig({ TRAINING_REDIS_URL: loadConfig().redisUrl }),
    );
    try {
      expect(await client?.ping()).toBe('PONG');
    } finally {
      client?.disconnect();
    }
  });

  it('refuses a URL that does not answer, naming it with its password masked', async () => {
    const url = `redis://:hunter2@127.0.0.1:${await freePort()}`;
    const refused = openTrainingRedis(loadConfig({ TRAINING_REDIS_URL: url }));
    await expect(refused).rejects.toMatchObject({ code: 'REC_ERR_UNAVAILABLE' });
    await expect(refused).rejects.toThrow(
      /TRAINING_REDIS_URL redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ does not answer/,
    );
    await expect(refused).rejects.not.toThrow(/hunter2/);
  });

  it('refuses TRAINING_REDIS_URL with EMBEDDINGS=on (the article vectors are in the live Redis)', async () => {
    await expect(
      openTrainingRedis(
        loadConfig({ TRAINING_REDIS_URL: 'redis://rows.example:6379', EMBEDDINGS: 'on' }),
      ),
    ).rejects.toThrow(/TRAINING_REDIS_URL with EMBEDDINGS=on/);
  });
});
