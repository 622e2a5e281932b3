import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import {
  articleContract,
  articleSchema,
  customerContract,
  purchaseContract,
  servedContract,
} from './events.ts';

describe('event contracts', () => {
  for (const c of [purchaseContract, articleContract, customerContract, servedContract]) {
    it(`keeps the zod mirror of ${c.name} field for field equal to its Avro schema`, () => {
      const avroFields = c.avro.fields.map((f) => f.name).sort();
      const shape = (c.zod as unknown as { shape: Record<string, unknown> }).shape;
      expect(Object.keys(shape).sort()).toEqual(avroFields);
    });

    it(`parses the ${c.name} Avro schema and names its key and time fields`, () => {
      expect(() => avro.Type.forSchema(c.avro as avro.Schema)).not.toThrow();
      const names = c.avro.fields.map((f) => f.name);
      expect(names).toContain(c.keyField);
      expect(names).toContain(c.timeField);
    });
  }

  it('makes every optional Avro field nullable with a null default (BACKWARD-safe evolution)', () => {
    for (const c of [articleContract, customerContract]) {
      for (const f of c.avro.fields) {
        if (Array.isArray(f.type)) {
          expect(f.type[0]).toBe('null');
          expect(f.default).toBeNull();
        }
      }
    }
  });

  it('refuses article categories that would break out of a Redis field or key name', () => {
    const base = articleSchema.parse({
      ...Object.fromEntries(Object.keys(articleSchema.shape).map((k) => [k, null])),
      article_id: 'a1',
      updated_at: Date.UTC(2020, 0, 1),
    });
    const ok = {
      ...base,
      product_group_name: 'Garment Upper body',
      index_group_name: 'Baby/Children',
    };
    expect(articleSchema.safeParse(ok).success).toBe(true);
    for (const bad of ['Shoes\u001fn', 'Shoes\u001e_total', 'x}{t}', 'line\nbreak']) {
      expect(articleSchema.safeParse({ ...ok, product_group_name: bad }).success).toBe(false);
      expect(articleSchema.safeParse({ ...ok, index_group_name: bad }).success).toBe(false);
      expect(articleSchema.safeParse({ ...ok, index_code: bad }).success).toBe(false);
    }
  });
});
