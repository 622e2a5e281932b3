/**
 * The local embedding model (set up by `npm run embeddings:model`, as .ci/run does before the
 * tests): loads with remote models disabled and no network, is deterministic, and puts near texts
 * closer than unrelated ones. Plus the int8 storage format and the article text / content hash.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EMBEDDING_DIM, LOCAL_MODEL_ID, loadEmbedder, modelReady, type Embedder } from './model.ts';
import { decodeVector, dot, encodeVector, formatSimilar, parseSimilar } from './store.ts';
import { articleText, contentHash } from './text.ts';

describe('embedding model (local, offline)', () => {
  let embedder: Embedder;
  const fetchSpy = vi.fn(() => Promise.reject(new Error('network access in a test')));

  beforeAll(async () => {
    if (!modelReady()) {
      throw new Error('the embedding model is not set up: run npm run embeddings:model first');
    }
    vi.stubGlobal('fetch', fetchSpy);
    embedder = await loadEmbedder({ remoteModel: undefined });
  });
  afterAll(async () => {
    await embedder.dispose();
    vi.unstubAllGlobals();
  });

  it('loads from the local folder with remote models disabled, without any network call', async () => {
    const { env } = await import('@huggingface/transformers');
    expect(env.allowRemoteModels).toBe(false);
    expect(embedder.modelId).toBe(LOCAL_MODEL_ID);
    expect(embedder.dim).toBe(EMBEDDING_DIM);
    const [v] = await embedder.embed(['Strap top, Vest top, Black']);
    expect(v).toHaveLength(EMBEDDING_DIM);
    expect(Math.sqrt(dot(v, v))).toBeCloseTo(1, 5);
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it('gives identical vectors for identical text, alone or in a batch', async () => {
    const text = 'Jade HW Skinny Denim TRS, Trousers, Blue, Ladies Denim. High-waisted jeans.';
    const [a] = await embedder.embed([text]);
    const [b] = await embedder.embed([text]);
    expect(Array.from(b!)).toEqual(Array.from(a!));
    const batch = await embedder.embed(['Socks', text, 'a much longer text '.repeat(20)]);
    expect(dot(a, batch[1])).toBeGreaterThan(0.99999);
  });

  it('puts near texts closer than unrelated ones', async () => {
    const [dress, near, boots, unrelated] = await embedder.embed([
      'Summer dress, Dress, Red. Short dress in airy cotton with thin shoulder straps.',
      'Beach dress, Dress, Dark Red. Knee-length dress in light cotton with narrow straps.',
      'Chelsea boot, Boots, Black. Chelsea boots in imitation suede with elastic gores.',
      'Quarterly earnings rose as the central bank held interest rates steady.',
    ]);
    expect(dot(dress, near)).toBeGreaterThan(dot(dress, boots));
    expect(dot(dress, boots)).toBeGreaterThan(dot(dress, unrelated));
    expect(dot(dress, near)).toBeGreaterThan(0.6);
  });
});

describe('vector storage and article text', () => {
  it('stores a unit vector as int8 + scale (388 bytes) with cosine error below 1e-3', () => {
    const v = new Float32Array(EMBEDDING_DIM).map((_, i) => Math.sin(i * 0.37) + 0.1 * Math.cos(i));
    const norm = Math.sqrt(dot(v, v));
    const unit = v.map((x) => x / norm);
    const blob = encodeVector(unit);
    expect(blob.length).toBe(4 + EMBEDDING_DIM);
    const back = decodeVector(blob);
    expect(dot(unit, back)).toBeGreaterThan(0.999);
    expect(dot(back, null)).toBeNaN();
  });

  it('formats and parses similar-items lists', () => {
    const list = [
      { articleId: '0108775002', score: 0.98765 },
      { articleId: '0108775003', score: 0.9 },
    ];
    expect(formatSimilar(list)).toBe('0108775002 0.9877,0108775003 0.9000');
    expect(parseSimilar(formatSimilar(list))).toEqual([
      { articleId: '0108775002', score: 0.9877 },
      { articleId: '0108775003', score: 0.9 },
    ]);
    expect(parseSimilar(null)).toEqual([]);
  });

  it('builds the text from name, type, colour, section and description', () => {
    const meta = {
      prod_name: 'Strap top',
      product_type_name: 'Vest top',
      colour_group_name: 'Black',
      section_name: 'Womens Everyday Basics',
      detail_desc: 'Jersey top with  narrow\nshoulder straps.',
      index_name: 'Ladieswear',
    };
    expect(articleText(meta)).toBe(
      'Strap top, Vest top, Black, Womens Everyday Basics. Jersey top with narrow shoulder straps.',
    );
    expect(articleText({ prod_name: 'Strap top', detail_desc: null })).toBe('Strap top');
    expect(articleText({})).toBe('');
    const h = contentHash(articleText(meta), LOCAL_MODEL_ID);
    expect(contentHash(articleText({ ...meta, index_name: 'other' }), LOCAL_MODEL_ID)).toBe(h);
    expect(
      contentHash(articleText({ ...meta, colour_group_name: 'White' }), LOCAL_MODEL_ID),
    ).not.toBe(h);
    expect(contentHash(articleText(meta), 'another-model')).not.toBe(h);
  });
});
