/**
 * An article's display fields as the answers name them (`ArticleDetails` in api-schemas.ts), from
 * its metadata record (features/state.ts `ArticleState.meta`).
 */
import type { ArticleDetailsBody } from '../api-schemas.ts';

const text = (v: string | undefined): string | null => (v === undefined || v === '' ? null : v);

export function articleDetails(
  articleId: string,
  meta: Readonly<Record<string, string>>,
): ArticleDetailsBody {
  return {
    article_id: articleId,
    name: text(meta.prod_name),
    colour: text(meta.colour_group_name),
    section: text(meta.section_name),
    product_type: text(meta.product_type_name),
    index_group: text(meta.index_group_name),
  };
}
