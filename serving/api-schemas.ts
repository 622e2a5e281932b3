/**
 * Request and response schemas of the serving API (zod, with OpenAPI metadata: `/openapi.json` is
 * generated from them). Query objects are strict: an unknown parameter is a 400 naming it, rather
 * than a typo silently ignored.
 */
import { z } from '@hono/zod-openapi';
import { ID_PATTERN } from '../schemas/events.ts';
import { segmentValue } from '../features/segments.ts';
import type { SegmentKind } from '../features/keys.ts';

const idParam = (name: string, example: string) =>
  z
    .string()
    .regex(
      ID_PATTERN,
      `${name} must be 1-128 characters of A-Z a-z 0-9 _ . - (starting alphanumeric)`,
    )
    .openapi({ param: { name, in: 'path' }, example });

const kParam = z.coerce
  .number({ error: 'k must be an integer from 1 to 100' })
  .int()
  .min(1)
  .max(100)
  .default(12)
  .openapi({ description: 'Number of items (1-100)', example: 12 });

const boolParam = (name: string, description: string) =>
  z
    .enum(['true', 'false', '1', '0'], { error: `${name} must be true, false, 1 or 0` })
    .transform((v) => v === 'true' || v === '1')
    .optional()
    .openapi({ description });

const filterParam = (name: string, description: string, example: string) =>
  z
    .string()
    .min(1, `${name} must not be empty`)
    .max(100, `${name} must be at most 100 characters`)
    .optional()
    .openapi({ description, example });

export const RecommendationParams = z.object({ customerId: idParam('customerId', 'cust000001') });

export const RecommendationQuery = z.strictObject({
  k: kParam,
  index_group: filterParam(
    'index_group',
    'Only articles of this index group (index_group_name, case-insensitive)',
    'Ladieswear',
  ),
  section: filterParam(
    'section',
    'Only articles of this section (section_name, case-insensitive)',
    'Womens Everyday Collection',
  ),
  product_group: filterParam(
    'product_group',
    'Only articles of this product group (product_group_name, case-insensitive)',
    'Garment Upper body',
  ),
  allow_repurchase: boolParam(
    'allow_repurchase',
    'Include articles the customer already bought (default false)',
  ),
  explain: boolParam('explain', 'Add feature values and reasons to each item (default false)'),
});

export const SOURCE_VALUES = [
  'repurchase',
  'siblings',
  'copurchase',
  'similar', // EMBEDDINGS=on only (issue 7)
  'trending_segment',
  'trending_global',
] as const;

const itemBase = {
  article_id: z.string().openapi({ example: '0706016001' }),
  name: z.string().nullable().openapi({ description: 'prod_name, null without metadata' }),
  score: z.number(),
  rank: z.number().int().min(1),
};

export const RecommendationItem = z
  .object({
    ...itemBase,
    colour: z.string().nullable().optional().openapi({
      description: 'colour_group_name, null without it (absent in degraded answers)',
    }),
    section: z.string().nullable().optional().openapi({
      description: 'section_name, null without it (absent in degraded answers)',
    }),
    sources: z.array(z.enum(SOURCE_VALUES)),
    features: z
      .record(z.string(), z.number().nullable())
      .optional()
      .openapi({ description: 'Feature values by name (explain only); null = missing' }),
    reasons: z.array(z.string()).optional().openapi({ description: 'explain only' }),
  })
  .openapi('RecommendationItem');

export const DEGRADED_REASONS = [
  'store_unavailable',
  'ranker_error',
  'ranker_timeout',
  'ranker_incompatible',
] as const;

export const RANKER_KINDS = ['model', 'heuristic', 'trending_cache'] as const;

/** Why the model did not rank: no model, a refused one, or a failure of this request. */
export const RANKER_REASONS = [
  'no_model',
  'model_refused',
  'variant_heuristic',
  ...DEGRADED_REASONS,
] as const;

export const RankedBy = z
  .object({
    kind: z.enum(RANKER_KINDS).openapi({
      description:
        "'model': the registry's active model, or the model of the answer's A/B variant, named by " +
        'model_version (a trained one; untrained ' +
        'fixture-* models only on instances started with SERVING_ALLOW_FIXTURE_MODEL=true, for ' +
        "benchmarks and tests); 'heuristic': the documented heuristic " +
        "heuristic-v2 (serving/ranking.ts); 'trending_cache': global trending cached while the " +
        'feature store is down, not ranked per customer',
    }),
    reason: z
      .enum(RANKER_REASONS)
      .optional()
      .openapi({
        description:
          "Why not a model (absent when kind is 'model'): 'no_model' = no promoted model is active; " +
          "'model_refused' = this instance refused the active version, or the model of the " +
          "answer's variant (an untrained fixture, or a model that failed its checks); " +
          "'variant_heuristic' = the answer's A/B variant is the heuristic; otherwise the " +
          'degraded_reason of this answer',
      }),
    message: z.string().optional().openapi({
      description: 'The reason in words',
      example:
        'no promoted model (the model registry has no active version); ranking with heuristic-v2',
    }),
  })
  .openapi('RankedBy', { description: 'What ranked the answer, and why when not a model' });

/** The variant of every answer while no experiment runs. */
export const DEFAULT_VARIANT = 'default';

export const RecommendationResponse = z
  .object({
    customer_id: z.string(),
    items: z.array(RecommendationItem),
    model_version: z.string().openapi({
      description:
        "Model that ranked; 'heuristic-v2' when no trained model ranked (none promoted, the " +
        "active one refused, or a ranker failure: see ranker), 'trending-cache' in degraded mode",
    }),
    ranker: RankedBy,
    degraded: z.boolean().openapi({
      description:
        'A failure on this request (degraded_reason); false when the heuristic ranks because no ' +
        'model is active or the active one was refused (ranker says which)',
    }),
    degraded_reason: z.enum(DEGRADED_REASONS).optional(),
    cold_start: z.boolean(),
    experiment: z.string().nullable().openapi({
      description: "The A/B experiment that assigned this answer's variant; null when none runs",
    }),
    variant: z.string().openapi({
      description:
        `The variant that served the answer ('${DEFAULT_VARIANT}' without an experiment): sticky ` +
        "per customer, from a hash of the experiment's salt and the customer id",
    }),
    candidates: z.number().int().openapi({ description: 'Candidates scored' }),
    took_ms: z.number(),
    now: z.number().int().openapi({ description: 'Event-time "now" of the features (ms)' }),
  })
  .openapi('RecommendationResponse');

export const SimilarParams = z.object({ id: idParam('id', '0706016001') });
export const SimilarQuery = z.strictObject({ k: kParam });

export const SimpleItem = z.object(itemBase).openapi('ScoredArticle');

export const SimilarResponse = z
  .object({
    article_id: z.string(),
    name: z.string().nullable(),
    items: z.array(SimpleItem).openapi({
      description: 'Co-purchase neighbours; score = decayed co-purchase count (30-day half-life)',
    }),
    took_ms: z.number(),
    now: z.number().int(),
  })
  .openapi('SimilarResponse');

/** Most embedding neighbours a request may ask for (the index keeps 20 by default). */
export const MAX_SIMILAR_N = 50;

export const EmbeddingSimilarQuery = z.strictObject({
  n: z.coerce
    .number({ error: `n must be an integer from 1 to ${MAX_SIMILAR_N}` })
    .int({ error: `n must be an integer from 1 to ${MAX_SIMILAR_N}` })
    .min(1, { error: `n must be an integer from 1 to ${MAX_SIMILAR_N}` })
    .max(MAX_SIMILAR_N, { error: `n must be an integer from 1 to ${MAX_SIMILAR_N}` })
    .default(10)
    .openapi({ description: `Number of items (1-${MAX_SIMILAR_N})`, example: 10 }),
});

export const EmbeddingSimilarResponse = z
  .object({
    article_id: z.string(),
    name: z.string().nullable(),
    embedded: z.boolean().openapi({ description: 'Whether the article has an embedding yet' }),
    items: z.array(SimpleItem).openapi({
      description: 'Nearest articles by text embedding; score = cosine similarity',
    }),
    took_ms: z.number(),
  })
  .openapi('EmbeddingSimilarResponse');

export const AGE_BUCKETS = ['u25', '25-34', '35-44', '45-54', '55+', 'unknown'] as const;

export interface ParsedSegment {
  readonly kind: SegmentKind;
  /** The segment value as stored in the key (see features/segments.ts). */
  readonly value: string;
}

/**
 * Parse `channel:<id>` or `age_index:<age bucket>|<index group>`; an error message otherwise.
 * The value is normalised with the processors' `segmentValue`, which writes the `55+` bucket as
 * `55_` in keys; `55+`, `55_` and `55 ` (a `+` left unencoded in a query string arrives as a
 * space) are all accepted.
 */
export function parseSegment(raw: string): ParsedSegment | string {
  const i = raw.indexOf(':');
  const kind = i < 0 ? raw : raw.slice(0, i);
  const rest = i < 0 ? '' : raw.slice(i + 1);
  if (kind === 'channel') {
    if (!/^\d{1,4}$/.test(rest)) return 'channel segment must be channel:<sales channel id>';
    return { kind, value: segmentValue('channel', String(Number(rest))) };
  }
  if (kind === 'age_index') {
    const bar = rest.indexOf('|');
    const bucket = (bar < 0 ? rest : rest.slice(0, bar)).replace(/^55[ _]$/, '55+');
    const group = bar < 0 ? '' : rest.slice(bar + 1);
    if (!(AGE_BUCKETS as readonly string[]).includes(bucket) || group === '') {
      return `age_index segment must be age_index:<${AGE_BUCKETS.join('|')}>|<index group>`;
    }
    return { kind, value: segmentValue('age_index', bucket, group) };
  }
  return `unknown segment kind "${kind}" (expected channel or age_index)`;
}

export const TrendingQuery = z.strictObject({
  segment: z
    .string()
    .max(200, 'segment must be at most 200 characters')
    .superRefine((v, ctx) => {
      const parsed = parseSegment(v);
      if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
    })
    .optional()
    .openapi({
      description:
        'channel:<id> or age_index:<u25|25-34|35-44|45-54|55+|unknown>|<index group>; global when absent',
      example: 'age_index:25-34|Ladieswear',
      // What parseSegment accepts, stated for clients (and generators of test requests).
      pattern: '^(channel:[0-9]{1,4}|age_index:(u25|25-34|35-44|45-54|55[+ _]|unknown)[|].+)$',
    }),
  k: kParam,
});

export const TrendingResponse = z
  .object({
    segment: z.string().nullable().openapi({ description: 'Segment asked for, null = global' }),
    source: z.enum(['global', 'segment']).openapi({
      description: "What the items are: 'global' also when a segment was asked in degraded mode",
    }),
    items: z.array(SimpleItem).openapi({ description: 'score = decayed 7-day purchase count' }),
    degraded: z.boolean(),
    took_ms: z.number(),
    now: z.number().int(),
  })
  .openapi('TrendingResponse');

/** Most customers one search answers. */
export const MAX_CUSTOMERS = 50;

export const CustomerSearchQuery = z.strictObject({
  prefix: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,128}$/, 'prefix must be 1-128 characters of A-Z a-z 0-9 _ . -')
    .optional()
    .openapi({
      description: 'Known customers whose id starts with this; absent: random known customers',
      example: 'cust00',
    }),
  k: z.coerce
    .number({ error: `k must be an integer from 1 to ${String(MAX_CUSTOMERS)}` })
    .int()
    .min(1)
    .max(MAX_CUSTOMERS)
    .default(10)
    .openapi({ description: `Number of customers (1-${String(MAX_CUSTOMERS)})`, example: 10 }),
});

export const CustomerSearchResponse = z
  .object({
    prefix: z.string().nullable().openapi({ description: 'The prefix asked for; null = random' }),
    customers: z.array(z.string()).openapi({
      description:
        'Ids of customers with purchases in the store (at most k; a search scans a bounded part ' +
        'of the key space, so a rare prefix in a large store may find fewer than exist)',
    }),
    complete: z.boolean().openapi({
      description: 'Whether the whole key space was searched (always false for random ones)',
    }),
    took_ms: z.number(),
  })
  .openapi('CustomerSearch');

export const CustomerParams = z.object({ customerId: idParam('customerId', 'cust000001') });

export const ArticleDetails = z
  .object({
    article_id: z.string().openapi({ example: '0706016001' }),
    name: z.string().nullable().openapi({ description: 'prod_name, null without metadata' }),
    colour: z.string().nullable().openapi({ description: 'colour_group_name' }),
    section: z.string().nullable().openapi({ description: 'section_name' }),
    product_type: z.string().nullable().openapi({ description: 'product_type_name' }),
    index_group: z.string().nullable().openapi({ description: 'index_group_name' }),
  })
  .openapi('ArticleDetails');

export const CustomerPurchase = ArticleDetails.extend({
  event_id: z.string(),
  time: z.number().int().openapi({ description: 'Event time (ms)' }),
  price: z.number(),
  channel: z.number().int().openapi({ description: 'sales_channel_id' }),
  quantity: z.number().int(),
}).openapi('CustomerPurchase');

export const CustomerResponse = z
  .object({
    customer_id: z.string(),
    known: z
      .boolean()
      .openapi({ description: 'Whether the store holds purchases of this customer' }),
    age: z.number().nullable(),
    purchases: z.number().int().openapi({ description: 'Purchase events applied' }),
    first: z.number().int().nullable().openapi({ description: 'First purchase (event time, ms)' }),
    last: z.number().int().nullable().openapi({ description: 'Latest purchase (event time, ms)' }),
    channels: z
      .record(z.string(), z.number().int())
      .openapi({ description: 'Purchase events per sales channel id' }),
    segments: z.array(z.string()).openapi({
      description:
        'Trending segments of this customer, for GET /v1/trending?segment= (their most used ' +
        'channel first, then their age bucket with the index groups they bought from)',
      example: ['channel:2', 'age_index:25-34|Ladieswear'],
    }),
    recent: z.array(CustomerPurchase).openapi({ description: 'Latest purchases, newest first' }),
    took_ms: z.number(),
  })
  .openapi('Customer');

export const ArticleResponse = ArticleDetails.extend({
  mean_price: z
    .number()
    .nullable()
    .openapi({ description: 'Mean unit price of its sales; null when it never sold' }),
  sales: z.number().int().openapi({ description: 'Purchase events' }),
  last_sale: z.number().int().nullable().openapi({ description: 'Latest sale (event time, ms)' }),
  took_ms: z.number(),
}).openapi('Article');

export const ErrorResponse = z
  .object({
    error: z.object({
      code: z.enum([
        'REC_ERR_BAD_REQUEST',
        'REC_ERR_UNAUTHORIZED',
        'REC_ERR_FORBIDDEN',
        'REC_ERR_NOT_FOUND',
        'REC_ERR_PAYLOAD_TOO_LARGE',
        'REC_ERR_UNAVAILABLE',
        'REC_ERR_INTERNAL',
      ]),
      message: z.string(),
      fields: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    }),
    request_id: z.string(),
  })
  .openapi('Error');

/** A field of a posted purchase: documented, checked per element by the route (not here). */
const postedField = (description: string, example: unknown) =>
  z.unknown().optional().openapi({ description, example });

/**
 * The body of `POST /v1/events/purchases`: a JSON array of 1 to `maxEvents` objects. Each element
 * is checked on its own by the route (serving/ingest.ts `purchaseIn`): an invalid one gets an
 * `invalid` status in the 202 answer while the valid ones go through, so the element's fields are
 * documented here, not enforced (a whole-request 400 is only for a body that is not such an
 * array).
 */
export function purchaseBatch(maxEvents: number) {
  const item = z
    .looseObject(
      {
        event_id: postedField(
          'Optional. 1-128 characters of A-Z a-z 0-9 _ . - (starting alphanumeric), unique per ' +
            'purchase; the idempotency key of its effects. When absent it is derived from the ' +
            'other fields and the position among identical lines of the request, so the same ' +
            'batch posted again gets the same ids',
          'web-20260101-000123-1',
        ),
        customer_id: postedField('Required. An id (as event_id)', 'cust000001'),
        article_id: postedField('Required. An id (as event_id)', '0706016001'),
        price: postedField('Required. A number >= 0 (the unit price)', 0.0338),
        sales_channel_id: postedField('Required. An integer 0-1000 (H&M: 1 store, 2 online)', 2),
        quantity: postedField('Optional. A positive integer; default 1', 1),
        event_time: postedField(
          'Required. When the purchase happened: ms since the Unix epoch (UTC), 1990-2100',
          1600000000000,
        ),
      },
      { error: 'each element must be a purchase object' },
    )
    .openapi('PurchaseIn', {
      description:
        'One purchase: the fields of the Avro Purchase (schemas/purchase.avsc); unknown fields ' +
        'make the element invalid',
    });
  const message = `the body must be a JSON array of 1 to ${maxEvents} purchase objects (INGEST_MAX_EVENTS)`;
  return z
    .array(item, { error: message })
    .min(1, { error: message })
    .max(maxEvents, { error: message })
    .openapi({
      description: `1 to ${maxEvents} purchases`,
      example: [
        {
          customer_id: 'cust000001',
          article_id: '0706016001',
          price: 0.0338,
          sales_channel_id: 2,
          event_time: 1600000000000,
        },
      ],
    });
}

export const INGEST_STATUSES = ['accepted', 'invalid', 'late'] as const;

export const IngestEventStatus = z
  .object({
    index: z.number().int().min(0).openapi({ description: "The element's position in the body" }),
    event_id: z
      .string()
      .nullable()
      .openapi({
        description:
          'The id the event was produced with (given or derived); for an invalid element the ' +
          'given id when well-formed, else null',
      }),
    status: z.enum(INGEST_STATUSES).openapi({
      description:
        "'accepted': acknowledged by Kafka (the processors apply it); 'invalid': refused, see " +
        "error; 'late': valid, but dated before the dedup horizon's cut of its customer's newest " +
        'purchase, which the processors refuse: not produced, see error',
    }),
    error: z
      .object({
        code: z.enum(['REC_ERR_BAD_REQUEST', 'REC_ERR_LATE_EVENT']),
        message: z.string(),
        fields: z.array(z.object({ path: z.string(), message: z.string() })),
      })
      .optional()
      .openapi({ description: 'Why the element is refused, every offending field named' }),
  })
  .openapi('IngestEventStatus');

export const IngestResponse = z
  .object({
    accepted: z.number().int().min(0),
    invalid: z.number().int().min(0),
    late: z.number().int().min(0),
    events: z.array(IngestEventStatus).openapi({ description: 'One status per element, in order' }),
    request_id: z.string(),
  })
  .openapi('IngestResponse');

export const ReadyResponse = z
  .object({
    status: z.enum(['ready', 'not_ready']),
    checks: z.object({
      redis: z.object({
        ok: z.boolean(),
        state: z.enum(['ok', 'down', 'timeout']).openapi({
          description: 'down: the PING failed; timeout: no answer within readyTimeoutMs',
        }),
      }),
      ranker: z.object({
        ok: z.boolean(),
        version: z.string(),
        state: z.enum(['model', 'no_model', 'model_refused', 'model_incompatible']).openapi({
          description:
            'model: a model ranks; otherwise the heuristic (version) ranks and this says why',
        }),
      }),
      trending_cache: z.object({ size: z.number().int(), last_refresh: z.number().nullable() }),
    }),
    reasons: z.array(z.string()).openapi({
      description:
        'Fixed sentences, one per failing check; the errors themselves are logged, not echoed',
    }),
  })
  .openapi('Readiness');

export type RecommendationResponseBody = z.infer<typeof RecommendationResponse>;
export type RankedByBody = z.infer<typeof RankedBy>;
export type RecommendationItemBody = z.infer<typeof RecommendationItem>;
export type ScoredArticleBody = z.infer<typeof SimpleItem>;
export type SimilarResponseBody = z.infer<typeof SimilarResponse>;
export type TrendingResponseBody = z.infer<typeof TrendingResponse>;
export type ReadyBody = z.infer<typeof ReadyResponse>;
export type IngestStatusBody = z.infer<typeof IngestEventStatus>;
export type IngestResponseBody = z.infer<typeof IngestResponse>;
export type ArticleDetailsBody = z.infer<typeof ArticleDetails>;
export type CustomerResponseBody = z.infer<typeof CustomerResponse>;
