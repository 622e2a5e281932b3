/**
 * Co-buyer similarity, the contract between its batch build (processors/co-buyers.ts) and its
 * readers (state.ts, definitions.ts): for each article, the articles most often bought by the same
 * customers. Two articles' similarity is the cosine of their buyer sets, each set holding the
 * customers whose latest purchase of the article falls within `CO_BUYER_WINDOW_MS` before the
 * build's "now" (customer.lua `a:<article>` last). An article keeps its `CO_BUYER_TOP` most similar
 * (ties by article id), packed into its summary hash (field `CO_BUYER_FIELD`) so serving reads them
 * with the article, in the same command.
 */
import { DAY_MS } from './decay.ts';

/** Buyers counted: those whose latest purchase of the article is at most this old. */
export const CO_BUYER_WINDOW_MS = 365 * DAY_MS;
/** Neighbours kept per article. */
export const CO_BUYER_TOP = 100;
/** The customer's purchases weigh 2^(-age / half-life) in the features (age since the latest). */
export const CO_BUYER_HALF_LIFE_MS = 90 * DAY_MS;
/** The summary hash field of the packed neighbours. */
export const CO_BUYER_FIELD = 'cb';

/** An article's co-buyer neighbours: article id -> cosine in (0, 1]. */
export type CoBuyers = ReadonlyMap<string, number>;

/**
 * Pack neighbours, best first, as `<article> <cosine>` pairs joined by ',' (5 digits). `digits`
 * keeps the text of each cosine met, for a build that packs many lists: cosines are ratios of
 * small buyer counts, so most repeat, and formatting them is most of the packing's cost.
 */
export function packCoBuyers(
  neighbours: readonly (readonly [string, number])[],
  digits: Map<number, string> = new Map(),
): string {
  let packed = '';
  for (const [id, cos] of neighbours) {
    let text = digits.get(cos);
    if (text === undefined) {
      text = String(Number(cos.toPrecision(5)));
      digits.set(cos, text);
    }
    packed += packed === '' ? `${id} ${text}` : `,${id} ${text}`;
  }
  return packed;
}

/** The neighbours of a packed value (an empty map for ''). */
export function parseCoBuyers(packed: string): CoBuyers {
  const out = new Map<string, number>();
  if (packed === '') return out;
  for (const pair of packed.split(',')) {
    const space = pair.indexOf(' ');
    out.set(pair.slice(0, space), Number(pair.slice(space + 1)));
  }
  return out;
}
