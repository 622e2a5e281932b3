/**
 * The request's filters on article metadata (index group, section, product group):
 * case-insensitive equality.
 */
import type { Filters } from './types.ts';

const same = (a: string | undefined, b: string): boolean =>
  a !== undefined && a.localeCompare(b, undefined, { sensitivity: 'accent' }) === 0;

/** Whether an article's metadata passes the filters (case-insensitive equality). */
export function passesFilters(meta: Record<string, string>, f: Filters): boolean {
  if (f.indexGroup !== undefined && !same(meta.index_group_name, f.indexGroup)) return false;
  if (f.section !== undefined && !same(meta.section_name, f.section)) return false;
  if (f.productGroup !== undefined && !same(meta.product_group_name, f.productGroup)) return false;
  return true;
}

export const hasFilters = (f: Filters): boolean =>
  f.indexGroup !== undefined || f.section !== undefined || f.productGroup !== undefined;
