/**
 * Whether a dataset folder was loaded already, so that `npm run eval` and `npm run demo` publish
 * it once: a fingerprint of the folder's content (its files' names, sizes and SHA-1 digests) and a
 * marker in Redis, written after a complete load, that names the fingerprint and what the load
 * reported. A changed file changes the fingerprint's hash (the folder is loaded again); the same
 * files copied again, touched or moved do not (the slug, for readable topic names, is the folder's
 * name). Publishing a folder twice into the live topics sends every purchase again: the
 * processors skip them (duplicates within their dedup horizon, older ones dead-lettered as late),
 * so a copy of the same data must not look new: an earlier fingerprint of paths and modification
 * times did, and each fresh copy of the data was loaded again. Hashing reads every file once
 * (hm-sample's 38 MB in well under a second).
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { RedisClient } from '../../common/redis.ts';

/** The fingerprint of a folder's content: a slug of its name and a hash (see the module header). */
export function datasetFingerprint(dir: string): { slug: string; hash: string } {
  const abs = resolve(dir);
  const h = createHash('sha1');
  for (const f of readdirSync(abs).sort()) {
    const path = join(abs, f);
    const s = statSync(path);
    if (s.isFile()) h.update(`\n${f}:${s.size}:${fileDigest(path)}`);
  }
  const slug = basename(abs)
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, 40);
  return { slug, hash: h.digest('hex').slice(0, 8) };
}

/** The SHA-1 of a file's bytes, read in 4 MiB chunks (files larger than a Buffer can hold too). */
function fileDigest(path: string): string {
  const h = createHash('sha1');
  const buf = Buffer.allocUnsafe(4 << 20);
  const fd = openSync(path, 'r');
  try {
    let n = readSync(fd, buf, 0, buf.length, null);
    while (n > 0) {
      h.update(buf.subarray(0, n));
      n = readSync(fd, buf, 0, buf.length, null);
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** What a marker holds: the fingerprint of the folder loaded, and what the caller kept of it. */
export interface LoadedMarker<T> {
  readonly fingerprint: string;
  readonly loadedAt: number;
  readonly report: T;
}

/** The marker at `key` when it names `fingerprint`, else null (none, or another folder's). */
export async function readLoadedMarker<T>(
  redis: RedisClient,
  key: string,
  fingerprint: string,
): Promise<LoadedMarker<T> | null> {
  const raw = await redis.get(key);
  if (raw === null) return null;
  try {
    const marker = JSON.parse(raw) as Partial<LoadedMarker<T>>;
    return marker.fingerprint === fingerprint && marker.report !== undefined
      ? (marker as LoadedMarker<T>)
      : null;
  } catch {
    // A marker of an earlier layout (eval wrote the publish counts alone): not ours.
    return null;
  }
}

/** Record that the folder of `fingerprint` was loaded (after the load completed). */
export async function writeLoadedMarker(
  redis: RedisClient,
  key: string,
  fingerprint: string,
  report: unknown,
): Promise<void> {
  const marker: LoadedMarker<unknown> = { fingerprint, loadedAt: Date.now(), report };
  await redis.set(key, JSON.stringify(marker));
}
