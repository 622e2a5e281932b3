/**
 * The model registry, kept in Redis so every serving instance (and the trainer) reads the same
 * models without a shared file system: per version a hash with the metadata JSON and the ONNX
 * bytes, a status (`registered`, `active`, `retired`, `rejected` with its reason), the set of
 * versions by registration time, the `active` pointer, and a pub/sub channel on which activation
 * is announced. Serving instances load the active model at start and hot-swap on announcements.
 */
import type { Redis } from 'ioredis';
import type { KeySpace } from '../features/keys.ts';
import { ModelError, parseModelMeta, type LoadedModel, type ModelMeta } from './model-meta.ts';

export type ModelStatus = 'registered' | 'active' | 'retired' | 'rejected';

export interface RegisteredModel {
  readonly meta: ModelMeta;
  readonly bytes: Buffer;
  readonly status: ModelStatus;
  readonly reason: string | null;
  readonly registeredAt: number;
}

/** Store a model (idempotent per version: re-registering the same version overwrites it). */
export async function registerModel(
  redis: Redis,
  keys: KeySpace,
  model: LoadedModel,
  now = Date.now(),
): Promise<void> {
  const k = keys.models;
  await redis
    .multi()
    .hset(k.model(model.meta.version), {
      meta: JSON.stringify(model.meta),
      onnx: model.bytes,
      status: 'registered',
      reason: '',
      registered_at: String(now),
    })
    .zadd(k.versions, now, model.meta.version)
    .exec();
}

/** Read one version, or null when it was never registered. */
export async function readModel(
  redis: Redis,
  keys: KeySpace,
  version: string,
): Promise<RegisteredModel | null> {
  const key = keys.models.model(version);
  const [meta, onnx, status, reason, at] = await Promise.all([
    redis.hget(key, 'meta'),
    redis.hgetBuffer(key, 'onnx'),
    redis.hget(key, 'status'),
    redis.hget(key, 'reason'),
    redis.hget(key, 'registered_at'),
  ]);
  if (meta === null || onnx === null) return null;
  let json: unknown;
  try {
    json = JSON.parse(meta);
  } catch (err) {
    throw new ModelError(`registry entry ${key} holds invalid metadata JSON`, { cause: err });
  }
  return {
    meta: parseModelMeta(json, key),
    bytes: onnx,
    status: (status ?? 'registered') as ModelStatus,
    reason: reason === null || reason === '' ? null : reason,
    registeredAt: Number(at ?? 0),
  };
}

/** The active version, or null (serving then ranks with the heuristic). */
export function activeVersion(redis: Redis, keys: KeySpace): Promise<string | null> {
  return redis.get(keys.models.active);
}

/**
 * Make `version` the active model and announce it. The previous active version is marked
 * `retired`. Serving instances check the model before swapping and keep their current one if
 * the check fails (they then mark the version `rejected` with the reason).
 */
export async function activateModel(redis: Redis, keys: KeySpace, version: string): Promise<void> {
  const k = keys.models;
  if ((await redis.exists(k.model(version))) === 0) {
    throw new ModelError(`cannot activate model ${version}: it is not registered`);
  }
  const previous = await redis.get(k.active);
  const tx = redis
    .multi()
    .set(k.active, version)
    .hset(k.model(version), 'status', 'active', 'reason', '');
  if (previous !== null && previous !== version) tx.hset(k.model(previous), 'status', 'retired');
  await tx.exec();
  await redis.publish(k.channel, version);
}

/** Record why a version was refused (it stays listed, with the reason). */
export async function rejectModel(
  redis: Redis,
  keys: KeySpace,
  version: string,
  reason: string,
): Promise<void> {
  await redis.hset(keys.models.model(version), 'status', 'rejected', 'reason', reason);
}

/** Every registered version, oldest first, with status and reason (without the ONNX bytes). */
export async function listModels(
  redis: Redis,
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
 * Subscribe to activations on a dedicated connection (a subscribed ioredis client can do nothing
 * else). Returns a function that unsubscribes.
 */
export async function watchActivations(
  subscriber: Redis,
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
