import { describe, expect, it } from 'vitest';
import { republishCheck } from './republish.ts';

describe('republishCheck', () => {
  const DATA = '/repo/.stack/data';
  it('lets a load into empty topics through', () => {
    expect(republishCheck(0, false, DATA)).toBeNull();
    expect(republishCheck(0, true, DATA)).toBeNull();
  });

  it('refuses to publish into topics that hold purchases, naming why and the clean start', () => {
    expect(() => republishCheck(30_542, false, DATA)).toThrow(
      /holds 30542 records.*dead-letter every purchase older than that.*mixed with the first's\. For a clean start: npm run stack:down && rm -rf \/repo\/\.stack\/data && npm run demo .*--reload publishes anyway/,
    );
  });

  it('publishes anyway with --reload, with the warning', () => {
    expect(republishCheck(30_542, true, DATA)).toMatch(
      /holds 30542 records.*mixed with the first's \(--reload\)$/,
    );
  });
});
