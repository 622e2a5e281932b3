import { describe, expect, it } from 'vitest';
import { republishCheck } from './republish.ts';

describe('republishCheck', () => {
  it('lets a load into empty topics through', () => {
    expect(republishCheck(0, false)).toBeNull();
    expect(republishCheck(0, true)).toBeNull();
  });

  it('refuses to publish into topics that hold purchases, naming why and the clean start', () => {
    expect(() => republishCheck(30_542, false)).toThrow(
      /holds 30542 records.*a second time\. For a clean start: npm run stack:down && rm -rf \.stack\/data && npm run demo .*--reload publishes anyway/,
    );
  });

  it('publishes anyway with --reload, with the warning', () => {
    expect(republishCheck(30_542, true)).toMatch(
      /holds 30542 records.*a second time \(--reload\)$/,
    );
  });
});
