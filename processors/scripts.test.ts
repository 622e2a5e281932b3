import { describe, expect, it } from 'vitest';
import { loadScript } from './scripts.ts';

const SCRIPTS = ['customer', 'article', 'copurchase', 'trending', 'metadata', 'taste'] as const;

describe('processor scripts', () => {
  it('resolve every include, each helper defined once, the same text on every load', () => {
    for (const name of SCRIPTS) {
      const text = loadScript(name);
      expect(text, name).not.toMatch(/@include/);
      for (const helper of [
        'fmt',
        'logadd',
        'applied_offset',
        'save_offsets',
        'pack_sales',
        'call_chunked',
        'trim_top',
      ]) {
        const defined = text.split(`local function ${helper}(`).length - 1;
        const used = new RegExp(`\\b${helper}\\(`).test(text.replaceAll(`function ${helper}(`, ''));
        expect(defined, `${name}: ${helper}`).toBe(used ? 1 : 0);
      }
      expect(loadScript(name)).toBe(text);
    }
  });
});
