/**
 * The model registry, kept in Redis so every serving instance (and the trainer) reads the same
 * models without a shared file system: per version a hash with the metadata JSON, the ONNX bytes,
 * their signature (models/signing.ts; absent when registered without a key), a status
 * (`registered`, `active`, `retired`, `rejected` with its reason), the set of versions by
 * registration time, the `active` pointer, and a pub/sub channel on which activation (and an
 * experiment's start or stop, models/experiments.ts) is announced.
 *
 * Trust: `active` only ever points at a version that passed `verifyModel` (signature, metadata,
 * features, checksum, ONNX) when it was activated; a refused version is marked `rejected` and
 * `active` stays. Serving instances act on the `active` pointer only: an announcement, whatever
 * version it names, just makes them re-read it (as does a periodic check, for missed messages),
 * and they verify the model again before loading it. Registration prunes old versions.
 */
import { createHash } from 'node:crypto';
import type { RedisClient } from '../common/redis.ts';
import type { KeySpace } from '../features/keys.ts';
import {
  checkModel,
  ModelError,
  parseModelMeta,
  type LoadedModel,
  type ModelMeta,
} from './model-meta.ts';
import { checkSignature, signModel, UNSIGNED_TRUST, type ModelTrust } from './signing.ts';

export type ModelStatus = 'registered' | 'active' | 'retired' | 'rejected';

export interface RegisteredModel {
  readonly meta: ModelMeta;
  /** The metadata as stored (parsed JSON, before validation): what the signature covers. */
  readonly storedMeta: unknown;
  /** The metadata JSON text as stored. */
  readonly metaText: string;
  readonly bytes: Buffer;
  /** Hex HMAC-SHA256 (models/signing.ts), or null when registered without a key. */
  readonly signature: string | null;
  readonly status: ModelStatus;
  readonly reason: string | null;
  readonly registeredAt: number;
}

/** Registered versions kept besides the active one unless told otherwise (`MODEL_KEEP_VERSIONS`). */
export const DEFAULT_KEEP_VERSIONS = 10;

export interface RegisterOptions {
  /** Signs the model when it holds a key (config `models.trust`). Default: unsigned. */
  readonly trust?: ModelTrust;
  /** Prune to the active version and the last `keep` registered (default 10; see `pruneModels`). */
  readonly keep?: number;
  readonly now?: number;
}

/**
 * Store a model, signed when `trust` holds a key (idempotent per version: re-registering the same
 * version overwrites it), then prune old versions.
 */
export async function registerModel(
  redis: RedisClient,
  keys: KeySpace,
  model: LoadedModel,
  opts: RegisterOptions = {},
): Promise<void> {
  const k = keys.models;
  const now = opts.now ?? Date.now();
  const meta = JSON.stringify(model.meta);
  const key = opts.trust?.key;
  // Signed as it will be read back: the stored JSON, parsed.
  const signature = key === undefined ? null : signModel(key, JSON.parse(meta), model.bytes);
  const tx = redis.multi().hset(k.model(model.meta.version), {
    meta,
    onnx: model.bytes,
    status: 'registered',
    reason: '',
    registered_at: String(now),
  });
  if (signature === null) tx.hdel(k.model(model.meta.version), 'signature');
  else tx.hset(k.model(model.meta.version), 'signature', signature);
  await tx.zadd(k.versions, now, model.meta.version).exec();
  await pruneModels(redis, keys, opts.keep ?? DEFAULT_KEEP_VERSIONS);
}

/**
 * Keep the active version, the versions a running experiment names (models/experiments.ts) and
 * the last `keep` registered ones; of older versions, a rejected one keeps its entry (metadata,
 * status, reason: why it was refused) without its bytes and signature, any other is deleted.
 * Returns what was deleted and what was stripped.
 */
export async function pruneModels(
  redis: RedisClient,
  keys: KeySpace,
  keep: number,
): Promise<{ deleted: string[]; stripped: string[] }> {
  const k = keys.models;
  const [active, versions, inExperiment] = await Promise.all([
    redis.get(k.active),
    redis.zrange(k.versions, 0, -1),
    redis.smembers(k.experimentModels),
  ]);
  const spared = new Set(inExperiment);
  const older = versions.slice(0, Math.max(0, versions.length - Math.max(1, keep)));
  const deleted: string[] = [];
  const stripped: string[] = [];
  for (const v of older) {
    if (v === active || spared.has(v)) continue;
    const status = await redis.hget(k.model(v), 'status');
    if (status === 'rejected') {
      if ((await redis.hdel(k.model(v), 'onnx', 'signature')) > 0) stripped.push(v);
    } else {
      // Not if it became active, or joined an experiment, meanwhile.
      const gone = await redis.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end " +
          "if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then return 0 end " +
          "redis.call('DEL', KEYS[2]) redis.call('ZREM', KEYS[3], ARGV[1]) return 1",
        4,
        k.active,
        k.model(v),
        k.versions,
        k.experimentModels,
        v,
      );
      if (gone === 1) deleted.push(v);
    }
  }
  return { deleted, stripped };
}

/** Read one version, or null when it was never registered. */
export async function readModel(
  redis: RedisClient,
  keys: KeySpace,
  version: string,
): Promise<RegisteredModel | null> {
  const key = keys.models.model(version);
  // One HMGET: the fields of one registration, never half of a re-registration's.
  const fields = await redis.hmgetBuffer(
    key,
    'meta',
    'onnx',
    'signature',
    'status',
    'reason',
    'registered_at',
  );
  const text = (i: number): string | null => fields[i]?.toString('utf8') ?? null;
  const [meta, signature, status, reason, at] = [text(0), text(2), text(3), text(4), text(5)];
  const onnx = fields[1] ?? null;
  if (meta === null || onnx === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(meta);
  } catch (err) {
    throw new ModelError(`registry entry ${key} holds invalid metadata JSON`, { cause: err });
  }
  return {
    meta: parseModelMeta(json, key),
    storedMeta: json,
    metaText: meta,
    bytes: onnx,
    signature: signature === null || signature === '' ? null : signature,
    status: (status ?? 'registered') as ModelStatus,
    reason: reason === null || reason === '' ? null : reason,
    registeredAt: Number(at ?? 0),
  };
}

/** The active version, or null (serving then ranks with the heuristic). */
export function activeVersion(redis: RedisClient, keys: KeySpace): Promise<string | null> {
  return redis.get(keys.models.active);
}

/**
 * The checks a registry entry passes before it may be activated or served: its signature under
 * `trust` (models/signing.ts), then those of `checkModel` (features in `available`, the
 * metadata's checksum, an ONNX file that loads with the declared input width and output).
 */
export async function verifyModel(
  entry: RegisteredModel,
  available: readonly string[],
  trust: ModelTrust,
): Promise<LoadedModel> {
  const version = entry.meta.version;
  checkSignature(version, entry.storedMeta, entry.bytes, entry.signature, trust);
  return checkModel(entry.meta, entry.bytes, available, {
    onnx: `registry:${version}:onnx`,
    meta: `registry:${version}:meta`,
  });
}

export interface ActivateOptions {
  /** The features the deployment computes (`featureNames(embeddings)`): the model needs no other. */
  readonly available: readonly string[];
  /** The signature policy (config `models.trust`); default: no key, unsigned accepted. */
  readonly trust?: ModelTrust;
}

/**
 * Verify `version` (`verifyModel`) and only then make it the active model and announce it; the
 * previous active version is marked `retired`. A version failing a check is marked `rejected`
 * with the reason, `active` is left where it was, and a ModelError says why. Serving instances
 * verify again before they load it (and keep their current model when that fails).
 */
export async function activateModel(
  redis: RedisClient,
  keys: KeySpace,
  version: string,
  opts: ActivateOptions,
): Promise<void> {
  const k = keys.models;
  let entry: RegisteredModel | null;
  try {
    entry = await readModel(redis, keys, version);
    if (entry !== null) await verifyModel(entry, opts.available, opts.trust ?? UNSIGNED_TRUST);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    await rejectModel(redis, keys, version, reason);
    const active = await redis.get(k.active);
    throw new ModelError(
      `model ${version} was not activated (marked rejected): ${reason}; the active model stays ` +
        (active ?? '(none)'),
      { cause: err },
    );
  }
  if (entry === null) {
    throw new ModelError(`cannot activate model ${version}: it is not registered (or was pruned)`);
  }
  await pointActiveAt(redis, keys, entry);
  await redis.publish(k.channel, version);
}

/**
 * KEYS: the version's hash, `active`. ARGV: version, SHA-1 of the verified metadata text and
 * ONNX bytes, its signature ('' for none), the prefix of a version's hash key. Returns 1 when
 * `active` now names the version (the previous one marked retired), 0 when the entry is no longer
 * the one verified. All keys share the `{m}` hash tag (one Cluster slot).
 */
const ACTIVATE_SCRIPT = `
local e = redis.call('HMGET', KEYS[1], 'meta', 'onnx', 'signature')
if not e[1] or not e[2] then return 0 end
if redis.sha1hex(e[1]) ~= ARGV[2] or redis.sha1hex(e[2]) ~= ARGV[3] then return 0 end
if (e[3] or '') ~= ARGV[4] then return 0 end
local previous = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'status', 'active', 'reason', '')
if previous and previous ~= ARGV[1] then
  redis.call('HSET', ARGV[5] .. previous, 'status', 'retired')
end
return 1
`;

/**
 * Atomically, and only if the registry still holds `entry` as it was read (not registered again
 * or pruned since it was verified): point `active` at it and mark the previous version retired.
 * Throws a ModelError, leaving `active` alone, when the entry changed.
 */
export async function pointActiveAt(
  redis: RedisClient,
  keys: KeySpace,
  entry: RegisteredModel,
): Promise<void> {
  const k = keys.models;
  const version = entry.meta.version;
  const sha1 = (b: Buffer | string) => createHash('sha1').update(b).digest('hex');
  const swapped = await redis.eval(
    ACTIVATE_SCRIPT,
    2,
    k.model(version),
    k.active,
    version,
    sha1(entry.metaText),
    sha1(entry.bytes),
    entry.signature ?? '',
    k.model(''),
  );
  if (swapped !== 1) {
    throw new ModelError(
      `model ${version} changed in the registry while it was being checked (registered again ` +
        'or pruned); not activated: activate it again',
    );
  }
}

/** Record why a version was refused (it stays listed, with the reason). */
export async function rejectModel(
  redis: RedisClient,
  keys: KeySpace,
  version: string,
  reason: string,
): Promise<void> {
  await redis.hset(keys.models.model(version), 'status', 'rejected', 'reason', reason);
}

/** Every registered version, oldest first, with status and reason (without the ONNX bytes). */
export async function listModels(
  redis: RedisClient,
  keys: KeySpace,
): Promise<{ version: string; status: string; reason: string | null; registeredAt: number }[]> {
  const versions = await redis.zrange(keys.models.versions, 0, -1);
  const pipe = redis.pipeline();
  for (const v of versions) pipe.hmget(keys.models.model(v), 'status', 'reason', 'registered_at');
  const rows = (await pipe.exec()) ?? [];
  return versions.map((version, i) => {
    const [status, reason, at] = (rows[i]?.[1] ?? []) as (string | null)[];
    return {
      version,
      status: status ?? 'unknown',
      reason: reason === null || reason === undefined || reason === '' ? null : reason,
      registeredAt: Number(at ?? 0),
    };
  });
}

/**
 * Subscribe to activations (and experiment starts and stops: `experiment:<name>`) on a dedicated
 * connection (a subscribed ioredis client can do nothing else). Returns a function that
 * unsubscribes. A message is only a hint that `active` or the experiment may have changed: anyone
 * who can reach Redis can publish one, so listeners re-read them and never load the version a
 * message names.
 */
export async function watchActivations(
  subscriber: RedisClient,
  keys: KeySpace,
  onActivated: (version: string) => void,
): Promise<() => Promise<void>> {
  const channel = keys.models.channel;
  const listener = (ch: string, message: string) => {
    if (ch === channel) onActivated(message);
  };
  subscriber.on('message', listener);
  await subscriber.subscribe(channel);
  return async () => {
    subscriber.off('message', listener);
    await subscriber.unsubscribe(channel);
  };
}
