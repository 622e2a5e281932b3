import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { articleContract, customerContract, purchaseContract } from './events.ts';

describe('event contracts', () => {
  for (const c of [purchaseContract, articleContract, customerContract]) {
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
});
