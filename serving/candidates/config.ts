/**
 * How much each candidate source contributes and how the pool is capped: `CandidateConfig`, its
 * defaults (the ones training uses) and the defaults scaled to another cap (the server's
 * SERVING_MAX_CANDIDATES).
 */
/** Quota of the `similar` source when embeddings are on (`defaultCandidateConfig(true)`). */
export const SIMILAR_QUOTA = 30;

export interface CandidateConfig {
  /** Most candidates taken from each source. */
  readonly quotas: {
    readonly repurchase: number;
    /** Other articles (colours, variants) of the customer's product codes that have sold. */
    readonly siblings: number;
    readonly copurchase: number;
    readonly segment: number;
    readonly global: number;
    /** `similar` (text-embedding neighbours of the seeds), only with `embeddings`. */
    readonly similar?: number;
  };
  /**
   * Embeddings take part (config `embeddings.enabled`, `EMBEDDINGS=on`): the `similar` source, and
   * the taste and article vectors attached to the states for the embedding features.
   */
  readonly embeddings: boolean;
  /** Cap of the de-duplicated, filtered pool (kept in source priority order). */
  readonly maxCandidates: number;
  /** Latest distinct purchased articles whose co-purchase neighbours are read. */
  readonly copurchaseSeeds: number;
  /** Neighbours read per seed. */
  readonly copurchasePerSeed: number;
  /** The customer's product codes (most time-weighted purchases first) whose articles are read. */
  readonly siblingProducts: number;
  /** Articles read per product code (the latest to start selling first). */
  readonly siblingsPerProduct: number;
  /** Index groups whose age-bucket segment sets are read (H&M's `index_group_name` values). */
  readonly indexGroups: readonly string[];
  /** Trending reads fetch this many times their quota when filters are given. */
  readonly filterOverfetch: number;
  /** Namespace of the article vectors and similar lists (default: the request's). */
  readonly embeddingNamespace?: string;
}

export const DEFAULT_CANDIDATE_CONFIG: CandidateConfig = {
  quotas: {
    // Repurchase first and generously: a third of next week's purchases in a wholesale-like shop
    // (online-retail-dev) are of articles the customer bought before, and 50 cut that recall in half.
    repurchase: 100,
    siblings: 40,
    copurchase: 30,
    segment: 30,
    global: 30,
    similar: 0,
  },
  embeddings: false,
  maxCandidates: 150,
  copurchaseSeeds: 5,
  copurchasePerSeed: 20,
  siblingProducts: 10,
  siblingsPerProduct: 20,
  indexGroups: ['Ladieswear', 'Menswear', 'Divided', 'Sport', 'Baby/Children'],
  filterOverfetch: 3,
};

/**
 * `config` with embeddings on (the `similar` source takes part, quota 30 unless one is set) or
 * off (no `similar` source).
 */
export function withEmbeddings(config: CandidateConfig, embeddings: boolean): CandidateConfig {
  const similar = embeddings ? config.quotas.similar || SIMILAR_QUOTA : 0;
  return { ...config, embeddings, quotas: { ...config.quotas, similar } };
}

/** The defaults with embeddings on or off (off: `DEFAULT_CANDIDATE_CONFIG`). */
export function defaultCandidateConfig(embeddings: boolean): CandidateConfig {
  return embeddings ? withEmbeddings(DEFAULT_CANDIDATE_CONFIG, true) : DEFAULT_CANDIDATE_CONFIG;
}

/**
 * The default configuration capped at `max` candidates: every personal quota keeps its share of
 * the default cap, global trending may fill up to `max` (what the personal sources leave), so a
 * request holds `max` candidates whenever the store has that many to offer. `max` = the default
 * cap gives the defaults' personal quotas (the ones training uses).
 */
export function scaledCandidateConfig(max: number, embeddings = false): CandidateConfig {
  const d = defaultCandidateConfig(embeddings);
  const share = (q: number) => (q > 0 ? Math.max(1, Math.round((q * max) / d.maxCandidates)) : 0);
  return {
    ...d,
    maxCandidates: max,
    quotas: {
      repurchase: share(d.quotas.repurchase),
      siblings: share(d.quotas.siblings),
      copurchase: share(d.quotas.copurchase),
      segment: share(d.quotas.segment),
      global: max,
      similar: share(d.quotas.similar ?? 0),
    },
  };
}
