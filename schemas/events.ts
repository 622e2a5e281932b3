/**
 * Event contracts: the Avro schemas kept as `.avsc` files beside this module, and their zod
 * mirrors. Avro defines the wire format; zod checks the values (ids, ranges) that Avro cannot.
 * A test keeps the two field lists identical.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';

/** Ids are used inside Redis keys and URLs: printable, no spaces, braces or colons. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const id = (what: string) =>
  z.string().regex(ID_PATTERN, `${what} must be 1-128 characters of A-Z a-z 0-9 _ . -`);
const nullableText = z.string().nullable();
/**
 * Categories that become parts of Redis field and key names (affinities, trending segments): no
 * control characters (the scripts join fields with \x1e / \x1f) and no braces (a key's hash tag).
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE_IN_NAMES = /[\u0000-\u001f{}]/;
const nullableCategory = z
  .string()
  .max(200)
  .refine((v) => !UNSAFE_IN_NAMES.test(v), 'must not hold control characters or braces')
  .nullable();
const nullableInt = z.number().int().nullable();
/** Event time in ms since the Unix epoch; 1990..2100 catches seconds-for-ms mistakes. */
const eventTime = z
  .number()
  .int()
  .min(Date.UTC(1990, 0, 1), 'event time must be ms since the epoch, after 1990')
  .max(Date.UTC(2100, 0, 1), 'event time must be ms since the epoch, before 2100');

export const purchaseSchema = z.object({
  event_id: id('event_id'),
  customer_id: id('customer_id'),
  article_id: id('article_id'),
  price: z.number().nonnegative(),
  sales_channel_id: z.number().int().min(0).max(1000),
  quantity: z.number().int().positive(),
  event_time: eventTime,
});
export type Purchase = z.infer<typeof purchaseSchema>;

export const articleSchema = z.object({
  article_id: id('article_id'),
  product_code: nullableText,
  prod_name: nullableText,
  product_type_no: nullableInt,
  product_type_name: nullableText,
  product_group_name: nullableCategory,
  graphical_appearance_no: nullableInt,
  graphical_appearance_name: nullableText,
  colour_group_code: nullableInt,
  colour_group_name: nullableText,
  perceived_colour_value_id: nullableInt,
  perceived_colour_value_name: nullableText,
  perceived_colour_master_id: nullableInt,
  perceived_colour_master_name: nullableText,
  department_no: nullableInt,
  department_name: nullableText,
  index_code: nullableCategory,
  index_name: nullableText,
  index_group_no: nullableInt,
  index_group_name: nullableCategory,
  section_no: nullableInt,
  section_name: nullableText,
  garment_group_no: nullableInt,
  garment_group_name: nullableText,
  detail_desc: nullableText,
  updated_at: eventTime,
});
export type Article = z.infer<typeof articleSchema>;

export const customerSchema = z.object({
  customer_id: id('customer_id'),
  fn: z.boolean().nullable(),
  active: z.boolean().nullable(),
  club_member_status: nullableText,
  fashion_news_frequency: nullableText,
  age: z.number().int().min(0).max(130).nullable(),
  postal_code: nullableText,
  updated_at: eventTime,
});
export type Customer = z.infer<typeof customerSchema>;

/**
 * One answer of `GET /v1/recommendations` as served (topic `recommendations.served`): written by
 * serving, read by the online read-out. Times are ms since the Unix epoch.
 */
export const servedSchema = z.object({
  request_id: z.string().min(1).max(200),
  customer_id: id('customer_id'),
  served_at: eventTime,
  features_now: eventTime,
  model_version: z.string().min(1).max(200),
  ranked_by: z.string().min(1).max(50),
  experiment: z.string().max(200).nullable(),
  variant: z.string().min(1).max(200),
  degraded: z.boolean(),
  cold_start: z.boolean(),
  items: z.array(
    z.object({
      article_id: id('article_id'),
      rank: z.number().int().positive(),
      score: z.number(),
      sources: z.array(z.string()),
    }),
  ),
});
export type Served = z.infer<typeof servedSchema>;

/** An Avro record schema as parsed JSON (enough structure for registration and checks). */
export interface AvroRecordSchema {
  type: 'record';
  name: string;
  namespace?: string;
  fields: { name: string; type: unknown; default?: unknown }[];
}

function loadAvsc(file: string): AvroRecordSchema {
  const text = readFileSync(new URL(file, import.meta.url), 'utf8');
  return JSON.parse(text) as AvroRecordSchema;
}

/** One event kind: its Avro schema, its zod mirror and the field that identifies it. */
export interface EventContract<T> {
  readonly name: 'purchase' | 'article' | 'customer' | 'served';
  readonly avro: AvroRecordSchema;
  readonly zod: z.ZodType<T>;
  /** Field used as the Kafka message key. */
  readonly keyField: keyof T & string;
  /** Field holding the event time (ms), used as the Kafka record timestamp. */
  readonly timeField: keyof T & string;
}

export const purchaseContract: EventContract<Purchase> = {
  name: 'purchase',
  avro: loadAvsc('./purchase.avsc'),
  zod: purchaseSchema,
  keyField: 'customer_id',
  timeField: 'event_time',
};

export const articleContract: EventContract<Article> = {
  name: 'article',
  avro: loadAvsc('./article.avsc'),
  zod: articleSchema,
  keyField: 'article_id',
  timeField: 'updated_at',
};

export const customerContract: EventContract<Customer> = {
  name: 'customer',
  avro: loadAvsc('./customer.avsc'),
  zod: customerSchema,
  keyField: 'customer_id',
  timeField: 'updated_at',
};

export const servedContract: EventContract<Served> = {
  name: 'served',
  avro: loadAvsc('./served.avsc'),
  zod: servedSchema,
  keyField: 'customer_id',
  timeField: 'served_at',
};
