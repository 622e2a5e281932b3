/**
 * Posted purchases: element validation and the derived event ids (a retried batch gets the same
 * ids; identical lines of one batch get distinct ones; the loader's derivation).
 */
import { describe, expect, it } from 'vitest';
import { purchaseEventId } from '../streams/loader/convert.ts';
import { postedEventId, purchaseIn, withEventIds } from './ingest.ts';

const p = (article: string, minute: number) =>
  purchaseIn.parse({
    customer_id: 'c1',
    article_id: article,
    price: 0.5,
    sales_channel_id: 2,
    event_time: Date.UTC(2020, 0, 1) + minute * 60_000,
  });

describe('purchaseIn', () => {
  it('defaults quantity to 1 and leaves event_id optional', () => {
    expect(p('a1', 0)).toMatchObject({ quantity: 1 });
    expect(p('a1', 0).event_id).toBeUndefined();
  });

  it('refuses unknown fields and a missing event_time', () => {
    const r = purchaseIn.safeParse({ ...p('a1', 0), customerId: 'c1' });
    expect(r.success).toBe(false);
    const noTime: Record<string, unknown> = { ...p('a1', 0) };
    delete noTime.event_time;
    expect(purchaseIn.safeParse(noTime).success).toBe(false);
  });
});

describe('withEventIds', () => {
  it('derives the same ids for the same batch, whatever it is batched with', () => {
    const batch = [p('a1', 0), p('a2', 1), p('a2', 1)];
    const ids = withEventIds(batch).map((e) => e.event_id);
    expect(new Set(ids).size).toBe(3);
    expect(withEventIds(batch).map((e) => e.event_id)).toEqual(ids);
    const reordered = withEventIds([p('a9', 5), p('a2', 1), p('a1', 0), p('a2', 1)]);
    expect(reordered.map((e) => e.event_id).slice(1)).toEqual([ids[1], ids[0], ids[2]]);
  });

  it("is the loader's id, and keeps a given one", () => {
    const [derived] = withEventIds([p('a1', 0)]);
    expect(derived?.event_id).toBe(purchaseEventId(p('a1', 0), 0));
    expect(withEventIds([{ ...p('a1', 0), event_id: 'mine' }])[0]?.event_id).toBe('mine');
  });
});

describe('postedEventId', () => {
  it('echoes only well-formed ids', () => {
    expect(postedEventId({ event_id: 'ok-1' })).toBe('ok-1');
    expect(postedEventId({ event_id: 'not ok' })).toBeNull();
    expect(postedEventId({ event_id: 3 })).toBeNull();
    expect(postedEventId(null)).toBeNull();
  });
});
