/**
 * The text embedded for an article and its content hash. Text = name + product type + colour +
 * section + description (H&M `articles` columns); the hash covers the text and the model id, so
 * an article is re-embedded exactly when one of them changes.
 */
import { createHash } from 'node:crypto';

/** Article metadata fields the text is made of (hash fields of `{a}:meta`). */
export const TEXT_FIELDS = [
  'prod_name',
  'product_type_name',
  'colour_group_name',
  'section_name',
  'detail_desc',
] as const;

const clean = (v: string | null | undefined): string => (v ?? '').replace(/\s+/g, ' ').trim();

/**
 * `<name>, <type>, <colour>, <section>. <description>` with empty parts left out; '' when the
 * article has none of them (nothing to embed).
 */
export function articleText(meta: Readonly<Record<string, string | null | undefined>>): string {
  const head = [meta.prod_name, meta.product_type_name, meta.colour_group_name, meta.section_name]
    .map(clean)
    .filter((s) => s !== '')
    .join(', ');
  const desc = clean(meta.detail_desc);
  if (head === '') return desc;
  return desc === '' ? head : `${head}. ${desc}`;
}

/** Content hash of an article's text under a model (16 hex digits). */
export function contentHash(text: string, modelId: string): string {
  return createHash('sha256').update(`${modelId}\u001f${text}`).digest('hex').slice(0, 16);
}
