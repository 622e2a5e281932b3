import { describe, expect, it } from 'vitest';
import { loadConfig } from '../common/config.ts';
import { createTrainingRedis } from './rows-redis.ts';

describe("the training rows' Redis", () => {
  it('opens no client without TRAINING_REDIS_URL: the rows go to the live Redis', () => {
    expect(createTrainingRedis(loadConfig({}))).toBeUndefined();
  });

  it('refuses TRAINING_REDIS_URL with EMBEDDINGS=on (the article vectors are in the live Redis)', () => {
    expect(() =>
      createTrainingRedis(
        loadConfig({ TRAINING_REDIS_URL: 'redis://rows.example:6379', EMBEDDINGS: 'on' }),
      ),
    ).toThrow(/TRAINING_REDIS_URL with EMBEDDINGS=on/);
  });
});
