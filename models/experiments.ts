/**
 * A/B experiments in the model registry: a name, a salt and two or more variants, each naming a
 * registered model version or the heuristic (`heuristic`) with an integer weight; a start time and
 * a status (`running`, `stopped`). At most one experiment runs at a time. The latest experiment is
 * one hash (`keys.models.experiment`), the versions the running one names a set that pruning
 * spares (`experimentModels`), stopped ones a capped history list.
 *
 * Starting verifies every named model version as activation does (`verifyModel`: signature,
 * metadata, features, checksum, ONNX; a version marked rejected is refused, and one failing a
 * check is marked rejected) and refuses the whole experiment otherwise. A start or stop is
 * announced on the registry's channel: serving instances take the message as a hint to re-read
 * the experiment (as they do `active`), and check every model again before they load it.
 *
 * Assignment is sticky: a customer's variant is a function of sha256(salt + ":" + customer id) —
 * its first 8 bytes as an unsigned integer x, the point ⌊x · W / 2⁶⁴⌋ in [0, W) for the total
 * weight W, the variant whose cumulative weight range holds it — so every instance, restart and
 * cold-start customer agrees, and a customer keeps their variant for the experiment's life.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { RedisClient } from '../common/redis.ts';
import { RecError, type RecErrorOptions } from '../common/errors.ts';
import type { KeySpace } from '../features/keys.ts';
import {
  activateModel,
  readModel,
  rejectModel,
  verifyModel,
  type RegisteredModel,
} from './registry.ts';
import { UNSIGNED_TRUST, type ModelTrust } from './signing.ts';

/** The model name of a variant the heuristic ranks (serving's `heuristic-v2`). */
export const HEURISTIC_MODEL = 'heuristic';

/** Experiment and variant names (they become metric labels and answer fields). */
export const EXPERIMENT_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Most variants an experiment may have. */
export const MAX_VARIANTS = 16;

/** Largest total weight (weights are integers: shares such as 90/10 or 1/1/1). */
export const MAX_TOTAL_WEIGHT = 1_000_000;

/** Stopped experiments kept in the history list. */
export const EXPERIMENT_HISTORY = 50;

/** An experiment that cannot be started, stopped or read. */
export class ExperimentError extends RecError {
  override readonly name: string = 'ExperimentError';
  constructor(message: string, opts: RecErrorOptions = {}) {
    super('REC_ERR_EXPERIMENT', message, opts);
  }
}

export interface ExperimentVariant {
  /** The variant's name, as answers and metrics carry it. */
  readonly name: string;
  /** A registered model version, or `HEURISTIC_MODEL`. */
  readonly model: string;
  /** Integer share of the customers (of the experiment's total weight). */
  readonly weight: number;
}

/** What starts an experiment. */
export interface ExperimentSpec {
  readonly name: string;
  /** Default: the name (the same name and variants assign the same customers again). */
  readonly salt?: string;
  readonly variants: readonly ExperimentVariant[];
}

export type ExperimentStatus = 'running' | 'stopped';

export interface Experiment {
  readonly name: string;
  readonly salt: string;
  readonly variants: readonly ExperimentVariant[];
  readonly status: ExperimentStatus;
  /** Wall clock (ms) of the start. */
  readonly startedAt: number;
  readonly stoppedAt: number | null;
  /** The variant promoted at the stop (`stop --promote`), if any. */
  readonly promoted: string | null;
}

const Variant = z.object({
  name: z.string().regex(EXPERIMENT_NAME_PATTERN, 'a variant name is 1-64 of A-Z a-z 0-9 _ . -'),
  model: z.string().min(1, 'a variant names a model version or "heuristic"').max(200),
  weight: z
    .number()
    .int('a weight is an integer')
    .min(0, 'a weight is 0 or more')
    .max(MAX_TOTAL_WEIGHT),
});

const Spec = z
  .object({
    name: z
      .string()
      .regex(EXPERIMENT_NAME_PATTERN, 'an experiment name is 1-64 of A-Z a-z 0-9 _ . -'),
    salt: z.string().min(1, 'the salt is not empty').max(200),
    variants: z
      .array(Variant)
      .min(2, 'an experiment has at least two variants')
      .max(MAX_VARIANTS, `an experiment has at most ${MAX_VARIANTS} variants`),
  })
  .superRefine((s, ctx) => {
    const seen = new Set<string>();
    for (const v of s.variants) {
      if (seen.has(v.name)) {
        ctx.addIssue({ code: 'custom', path: ['variants'], message: `variant ${v.name} twice` });
      }
      seen.add(v.name);
    }
    const total = s.variants.reduce((n, v) => n + v.weight, 0);
    if (total <= 0) {
      ctx.addIssue({ code: 'custom', path: ['variants'], message: 'the weights sum to 0' });
    }
    if (total > MAX_TOTAL_WEIGHT) {
      ctx.addIssue({
        code: 'custom',
        path: ['variants'],
        message: `the weights sum to more than ${MAX_TOTAL_WEIGHT}`,
      });
    }
  });

/** `spec` with its salt, checked; every problem named at once (ExperimentError). */
export function checkExperimentSpec(
  spec: ExperimentSpec,
): Required<Pick<ExperimentSpec, 'name' | 'salt' | 'variants'>> {
  const parsed = Spec.safeParse({ ...spec, salt: spec.salt ?? spec.name });
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => {
      const at = i.path.length > 0 ? `${i.path.join('.')}: ` : '';
      return `${at}${i.message}`;
    });
    throw new ExperimentError(`invalid experiment: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/**
 * A `--variant` argument: `<name>=<model version or heuristic>:<weight>` (the weight after the
 * last colon, so a version may hold colons).
 */
export function parseVariantArg(arg: string): ExperimentVariant {
  const eq = arg.indexOf('=');
  const colon = arg.lastIndexOf(':');
  const usage = `--variant "${arg}": expected <name>=<model version|${HEURISTIC_MODEL}>:<weight>, e.g. control=${HEURISTIC_MODEL}:50`;
  if (eq <= 0 || colon <= eq + 1 || colon === arg.length - 1) throw new ExperimentError(usage);
  const weight = arg.slice(colon + 1);
  if (!/^\d+$/.test(weight)) {
    throw new ExperimentError(`${usage} (the weight "${weight}" is not a whole number)`);
  }
  return { name: arg.slice(0, eq), model: arg.slice(eq + 1, colon), weight: Number(weight) };
}

/**
 * Picks a customer's variant (see the module comment); built once per experiment, then a hash and
 * a short scan per request.
 */
export class VariantPicker {
  readonly #salt: string;
  /** Cumulative weights: variant i holds the points [ends[i-1], ends[i]). */
  readonly #ends: bigint[];
  readonly #total: bigint;

  constructor(salt: string, variants: readonly Pick<ExperimentVariant, 'weight'>[]) {
    this.#salt = salt;
    let sum = 0n;
    this.#ends = variants.map((v) => (sum += BigInt(v.weight)));
    this.#total = sum;
    if (sum <= 0n) throw new ExperimentError('the weights sum to 0');
  }

  /** The index of `customerId`'s variant. */
  pick(customerId: string): number {
    const x = createHash('sha256')
      .update(`${this.#salt}:${customerId}`)
      .digest()
      .readBigUInt64BE(0);
    const point = (x * this.#total) >> 64n;
    for (let i = 0; i < this.#ends.length; i++) {
      if (point < (this.#ends[i] ?? 0n)) return i;
    }
    return this.#ends.length - 1; // unreachable: point < total
  }
}

/** The variant `customerId` is assigned in an experiment with this salt and these variants. */
export function assignVariant<V extends Pick<ExperimentVariant, 'weight'>>(
  salt: string,
  variants: readonly V[],
  customerId: string,
): V {
  const v = variants[new VariantPicker(salt, variants).pick(customerId)];
  if (v === undefined) throw new ExperimentError('an experiment without variants');
  return v;
}

const Stored = z.object({
  name: z.string(),
  salt: z.string(),
  variants: z.string(),
  status: z.enum(['running', 'stopped']),
  started_at: z.string(),
  stopped_at: z.string().optional(),
  promoted: z.string().optional(),
});

/**
 * The latest experiment (running or stopped), or null when none was ever started. A malformed
 * entry is an ExperimentError (serving then runs none and logs why).
 */
export async function readExperiment(
  redis: RedisClient,
  keys: KeySpace,
): Promise<Experiment | null> {
  const raw = await redis.hgetall(keys.models.experiment);
  if (Object.keys(raw).length === 0) return null;
  const parsed = Stored.safeParse(raw);
  let variants: unknown;
  try {
    variants = parsed.success ? JSON.parse(parsed.data.variants) : null;
  } catch {
    variants = null;
  }
  const spec = parsed.success
    ? Spec.safeParse({ name: parsed.data.name, salt: parsed.data.salt, variants })
    : null;
  if (!parsed.success || spec === null || !spec.success) {
    throw new ExperimentError(
      `registry entry ${keys.models.experiment} is not a valid experiment; start a new one ` +
        '(npm run experiment -- start) or delete the key',
    );
  }
  const d = parsed.data;
  const num = (v: string | undefined) => (v === undefined || v === '' ? null : Number(v));
  return {
    name: spec.data.name,
    salt: spec.data.salt,
    variants: spec.data.variants,
    status: d.status,
    startedAt: Number(d.started_at),
    stoppedAt: num(d.stopped_at),
    promoted: d.promoted === undefined || d.promoted === '' ? null : d.promoted,
  };
}

/** The running experiment, or null. */
export async function runningExperiment(
  redis: RedisClient,
  keys: KeySpace,
): Promise<Experiment | null> {
  const e = await readExperiment(redis, keys);
  return e?.status === 'running' ? e : null;
}

/** Stopped experiments, newest first (at most `EXPERIMENT_HISTORY`). */
export async function experimentHistory(redis: RedisClient, keys: KeySpace): Promise<Experiment[]> {
  const rows = await redis.lrange(keys.models.experimentHistory, 0, -1);
  const out: Experiment[] = [];
  for (const r of rows) {
    try {
      out.push(JSON.parse(r) as Experiment);
    } catch {
      // A malformed history entry is skipped: the history is informational.
    }
  }
  return out;
}

export interface ExperimentCheckOptions {
  /** The features the deployment computes (`featureNames(embeddings)`). */
  readonly available: readonly string[];
  /** The signature policy (config `models.trust`); default: no key, unsigned accepted. */
  readonly trust?: ModelTrust;
  readonly now?: number;
}

/**
 * Start an experiment: check the spec, verify every model version it names as activation does
 * (refusing versions marked rejected, and marking rejected one that fails a check), and only then
 * store it as running and announce it. Refused (ExperimentError) while another runs: at most one
 * experiment runs at a time.
 */
export async function startExperiment(
  redis: RedisClient,
  keys: KeySpace,
  spec: ExperimentSpec,
  opts: ExperimentCheckOptions,
): Promise<Experiment> {
  const checked = checkExperimentSpec(spec);
  const running = await runningExperiment(redis, keys).catch(() => null);
  if (running !== null) {
    throw new ExperimentError(
      `experiment ${running.name} is running; stop it first (npm run experiment -- stop): one experiment runs at a time`,
    );
  }
  const versions = [
    ...new Set(checked.variants.map((v) => v.model).filter((m) => m !== HEURISTIC_MODEL)),
  ];
  const entries: RegisteredModel[] = [];
  for (const version of versions) {
    entries.push(await checkVariantModel(redis, keys, version, checked, opts));
  }
  const sha1 = (b: Buffer | string) => createHash('sha1').update(b).digest('hex');
  const now = opts.now ?? Date.now();
  const k = keys.models;
  // Atomic: two starts racing cannot both run (the check above only gives the friendlier error),
  // and a version registered again or pruned since it was verified is not named (as activation).
  const clash = (await redis.eval(
    `local s = redis.call('HGET', KEYS[1], 'status')
     if s == 'running' then return 'running:' .. redis.call('HGET', KEYS[1], 'name') end
     for i = 3, #KEYS do
       local a = 5 + (i - 3) * 4
       local e = redis.call('HMGET', KEYS[i], 'meta', 'onnx', 'signature')
       if not e[1] or not e[2] or redis.sha1hex(e[1]) ~= ARGV[a + 1]
         or redis.sha1hex(e[2]) ~= ARGV[a + 2] or (e[3] or '') ~= ARGV[a + 3] then
         return 'changed:' .. ARGV[a]
       end
     end
     redis.call('DEL', KEYS[1], KEYS[2])
     redis.call('HSET', KEYS[1], 'name', ARGV[1], 'salt', ARGV[2], 'variants', ARGV[3],
       'status', 'running', 'started_at', ARGV[4])
     for i = 5, #ARGV, 4 do redis.call('SADD', KEYS[2], ARGV[i]) end
     return false`,
    2 + entries.length,
    k.experiment,
    k.experimentModels,
    ...entries.map((e) => k.model(e.meta.version)),
    checked.name,
    checked.salt,
    JSON.stringify(checked.variants),
    String(now),
    ...entries.flatMap((e) => [e.meta.version, sha1(e.metaText), sha1(e.bytes), e.signature ?? '']),
  )) as string | null;
  if (clash?.startsWith('running:') === true) {
    throw new ExperimentError(
      `experiment ${clash.slice(8)} is running; stop it first (npm run experiment -- stop): one experiment runs at a time`,
    );
  }
  if (clash !== null) {
    throw new ExperimentError(
      `experiment ${checked.name} not started: model ${clash.slice(8)} changed in the registry ` +
        'while it was being checked (registered again or pruned); start it again',
    );
  }
  await redis.publish(k.channel, `experiment:${checked.name}`);
  return { ...checked, status: 'running', startedAt: now, stoppedAt: null, promoted: null };
}

/** A variant's model passes what activation checks, or the experiment is refused. */
async function checkVariantModel(
  redis: RedisClient,
  keys: KeySpace,
  version: string,
  spec: { name: string; variants: readonly ExperimentVariant[] },
  opts: ExperimentCheckOptions,
): Promise<RegisteredModel> {
  const variant = spec.variants.find((v) => v.model === version)?.name ?? '?';
  const refuse = (why: string, cause?: unknown) =>
    new ExperimentError(
      `experiment ${spec.name} not started: variant ${variant} names model ${version}, which ${why}`,
      cause === undefined ? {} : { cause },
    );
  const entry = await readModel(redis, keys, version).catch((err: unknown) => {
    throw refuse(`cannot be read: ${err instanceof Error ? err.message : String(err)}`, err);
  });
  if (entry === null) {
    throw refuse(`is not registered (or was pruned); see npm run model -- list`);
  }
  if (entry.status === 'rejected') {
    throw refuse(`was rejected: ${entry.reason ?? 'no reason recorded'}`);
  }
  try {
    await verifyModel(entry, opts.available, opts.trust ?? UNSIGNED_TRUST);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    await rejectModel(redis, keys, version, reason);
    throw refuse(`failed its checks (now marked rejected): ${reason}`, err);
  }
  return entry;
}

export interface StopOptions extends ExperimentCheckOptions {
  /** Activate this variant's model before stopping (refused for a heuristic variant). */
  readonly promote?: string;
}

/**
 * Stop the running experiment (ExperimentError when none runs), after activating the model of
 * `promote` when given (`activateModel`: verified first; when that fails the experiment keeps
 * running). Serving instances go back to the active model. Returns the stopped experiment.
 */
export async function stopExperiment(
  redis: RedisClient,
  keys: KeySpace,
  opts: StopOptions,
): Promise<Experiment> {
  const running = await runningExperiment(redis, keys);
  if (running === null) throw new ExperimentError('no experiment is running');
  let promoted: string | null = null;
  if (opts.promote !== undefined) {
    const v = running.variants.find((x) => x.name === opts.promote);
    if (v === undefined) {
      throw new ExperimentError(
        `--promote ${opts.promote}: experiment ${running.name} has no such variant (it has ${running.variants.map((x) => x.name).join(', ')})`,
      );
    }
    if (v.model === HEURISTIC_MODEL) {
      throw new ExperimentError(
        `--promote ${v.name}: that variant is the heuristic, which cannot be made the active ` +
          'model; stop without --promote (the active model serves again)',
      );
    }
    try {
      await activateModel(redis, keys, v.model, {
        available: opts.available,
        ...(opts.trust === undefined ? {} : { trust: opts.trust }),
      });
    } catch (err) {
      throw new ExperimentError(
        `--promote ${v.name}: ${err instanceof Error ? err.message : String(err)}; experiment ${running.name} keeps running`,
        { cause: err },
      );
    }
    promoted = v.name;
  }
  const now = opts.now ?? Date.now();
  const stopped: Experiment = { ...running, status: 'stopped', stoppedAt: now, promoted };
  const k = keys.models;
  const done = await redis.eval(
    `if redis.call('HGET', KEYS[1], 'status') ~= 'running'
       or redis.call('HGET', KEYS[1], 'started_at') ~= ARGV[1] then return 0 end
     redis.call('HSET', KEYS[1], 'status', 'stopped', 'stopped_at', ARGV[2], 'promoted', ARGV[3])
     redis.call('DEL', KEYS[2])
     redis.call('LPUSH', KEYS[3], ARGV[4])
     redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
     return 1`,
    3,
    k.experiment,
    k.experimentModels,
    k.experimentHistory,
    String(running.startedAt),
    String(now),
    promoted ?? '',
    JSON.stringify(stopped),
    String(EXPERIMENT_HISTORY),
  );
  if (done !== 1) throw new ExperimentError(`experiment ${running.name} was stopped meanwhile`);
  await redis.publish(k.channel, `experiment:${running.name}`);
  return stopped;
}
