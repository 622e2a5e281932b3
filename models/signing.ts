/**
 * Model signatures: HMAC-SHA256, keyed by `MODEL_SIGNING_KEY` (common/config.ts), over the ONNX
 * bytes and the canonical metadata (JSON with every object's keys sorted, so the order in which a
 * writer or a parser lays out the fields does not matter). Registration signs when a key is
 * configured; activation and every serving instance verify before a model may rank, comparing in
 * constant time. A signature proves the model came from a holder of the key: unlike `onnx_sha256`,
 * which is stored beside the bytes, it cannot be recomputed by whoever can write to Redis.
 *
 * Without a key nothing can be verified: unsigned models are then accepted (`allowUnsigned`),
 * which is the default so that a fresh clone's demo, tests and benchmarks run without setup. See
 * docs/serving.md ("Trusted registry") for the risk and for what a deployment should set.
 */
import { timingSafeEqual } from 'node:crypto';
import type { SigningKey, ModelTrust } from '../common/model-trust.ts';
import { ModelError } from './model-meta.ts';

export { SigningKey, UNSIGNED_TRUST, type ModelTrust } from '../common/model-trust.ts';

/** Domain separation: a signature of this scheme is never valid for anything else. */
const DOMAIN = 'rec-model-signature-v1';

/** JSON with every object's keys sorted (undefined members dropped, as JSON does). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const obj = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(obj)
        .sort()
        .map((k) => [k, obj[k]]),
    );
  });
}

function mac(key: SigningKey, meta: unknown, bytes: Buffer): Buffer {
  // JSON never holds a raw NUL, so the separators make the message unambiguous.
  return key.hmac([DOMAIN, '\0', canonicalJson(meta), '\0', bytes]);
}

/** The hex signature of a model. */
export function signModel(key: SigningKey, meta: unknown, bytes: Buffer): string {
  return mac(key, meta, bytes).toString('hex');
}

/** Whether `signature` (hex) is the model's, compared in constant time. */
export function signatureValid(
  key: SigningKey,
  meta: unknown,
  bytes: Buffer,
  signature: string,
): boolean {
  if (!/^[0-9a-f]{64}$/.test(signature)) return false;
  return timingSafeEqual(mac(key, meta, bytes), Buffer.from(signature, 'hex'));
}

/**
 * Throw a ModelError unless `trust` accepts the model: a valid signature under the key, or no
 * signature while unsigned models are allowed. `meta` is the metadata as stored (parsed JSON).
 */
export function checkSignature(
  version: string,
  meta: unknown,
  bytes: Buffer,
  signature: string | null,
  trust: ModelTrust,
): void {
  if (signature === null) {
    if (trust.allowUnsigned) return;
    throw new ModelError(
      `model ${version} is not signed, and unsigned models are refused (MODEL_SIGNING_KEY is ` +
        `set and MODEL_ALLOW_UNSIGNED is not true): register it with the signing key`,
    );
  }
  if (trust.key === undefined) {
    // Nothing to verify with: only reachable with allowUnsigned (config enforces it).
    if (trust.allowUnsigned) return;
    throw new ModelError(`model ${version} is signed but no MODEL_SIGNING_KEY is configured`);
  }
  if (!signatureValid(trust.key, meta, bytes, signature)) {
    throw new ModelError(
      `model ${version}: its signature does not match its ONNX bytes and metadata under ` +
        `MODEL_SIGNING_KEY: the model was changed after signing, or signed with another key`,
    );
  }
}
