/**
 * Vectors in Redis, compactly: a unit vector is stored as int8 with one float32 scale,
 * `[scale: float32 LE][dim x int8]` (388 bytes for 384 dims, a quarter of float32), scale =
 * max|x| / 127. The cosine between a stored and an exact vector stays within ~1e-3 of the exact
 * one. Similar-items lists are one string per article.
 */
import type { RedisClient } from '../common/redis.ts';
import type { EmbeddingKeys } from '../features/embedding-keys.ts';

/** Quantise a vector to the stored blob. */
export function encodeVector(v: Float32Array): Buffer {
  let max = 0;
  for (const x of v) max = Math.max(max, Math.abs(x));
  const scale = max === 0 ? 1 : max / 127;
  const buf = Buffer.alloc(4 + v.length);
  buf.writeFloatLE(scale, 0);
  for (let i = 0; i < v.length; i++) buf.writeInt8(Math.round((v[i] ?? 0) / scale), 4 + i);
  return buf;
}

/** Decode a stored blob back to a unit-length float vector. */
export function decodeVector(buf: Buffer): Float32Array {
  const scale = buf.readFloatLE(0);
  const v = new Float32Array(buf.length - 4);
  let norm = 0;
  for (let i = 0; i < v.length; i++) {
    const x = buf.readInt8(4 + i) * scale;
    v[i] = x;
    norm += x * x;
  }
  norm = Math.sqrt(norm);
  if (norm > 0) for (let i = 0; i < v.length; i++) v[i] = (v[i] ?? 0) / norm;
  return v;
}

/**
 * Unit direction of a taste vector blob (float32 LE, see processors/lua/taste.lua), or null when
 * absent or zero.
 */
export function decodeTaste(blob: Buffer | null | undefined): Float32Array | null {
  if (!blob || blob.length === 0 || blob.length % 4 !== 0) return null;
  const v = new Float32Array(blob.length / 4);
  let norm = 0;
  for (let i = 0; i < v.length; i++) {
    const x = blob.readFloatLE(i * 4);
    v[i] = x;
    norm += x * x;
  }
  if (!(norm > 0)) return null;
  norm = Math.sqrt(norm);
  for (let i = 0; i < v.length; i++) v[i] = (v[i] ?? 0) / norm;
  return v;
}

/** Dot product (cosine for unit vectors); NaN when either is missing or the sizes differ. */
export function dot(
  a: Float32Array | null | undefined,
  b: Float32Array | null | undefined,
): number {
  if (!a || !b || a.length !== b.length) return NaN;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] ?? 0) * (b[i] ?? 0);
  return s;
}

type PipelineResult = [Error | null, unknown][] | null;

/** The replies of a pipeline, throwing on the first error (`what` names it). */
export function values(results: PipelineResult, what: string): unknown[] {
  if (results === null) throw new Error(`redis pipeline for ${what} was aborted`);
  return results.map(([err, v]) => {
    if (err) throw new Error(`redis ${what} failed: ${err.message}`, { cause: err });
    return v;
  });
}

/** Stored vectors of `ids` (decoded, unit length); absent ids are left out of the map. */
export async function readVectors(
  redis: RedisClient,
  ekeys: EmbeddingKeys,
  ids: readonly string[],
): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  if (ids.length === 0) return out;
  const pipe = redis.pipeline();
  for (const id of ids) pipe.hgetBuffer(ekeys.article(id).vector, 'v');
  const v = values(await pipe.exec(), 'vector read');
  ids.forEach((id, i) => {
    const b = v[i];
    if (Buffer.isBuffer(b) && b.length > 4) out.set(id, decodeVector(b));
  });
  return out;
}

export interface Neighbour {
  readonly articleId: string;
  /** Cosine similarity of the two articles' texts. */
  readonly score: number;
}

/** Format of the `{a}:sim` string. */
export function formatSimilar(list: readonly Neighbour[]): string {
  return list.map((n) => `${n.articleId} ${n.score.toFixed(4)}`).join(',');
}

export function parseSimilar(s: string | null | undefined): Neighbour[] {
  if (!s) return [];
  return s.split(',').map((p) => {
    const [articleId = '', score = 'NaN'] = p.split(' ');
    return { articleId, score: Number(score) };
  });
}

/** Stored neighbours of each of `ids` (best first; [] for an article without a list). */
export async function readSimilar(
  redis: RedisClient,
  ekeys: EmbeddingKeys,
  ids: readonly string[],
): Promise<Neighbour[][]> {
  if (ids.length === 0) return [];
  const pipe = redis.pipeline();
  for (const id of ids) pipe.get(ekeys.article(id).similar);
  const v = values(await pipe.exec(), 'similar read');
  return v.map((s) => parseSimilar(s as string | null));
}
