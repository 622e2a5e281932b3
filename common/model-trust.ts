/**
 * The model signing key and trust policy as configuration values (`MODEL_SIGNING_KEY`,
 * `MODEL_ALLOW_UNSIGNED`, read in common/config.ts); the signature itself is models/signing.ts.
 */
import { createHmac } from 'node:crypto';
import { inspect } from 'node:util';

/**
 * The HMAC key. Its bytes never leave this object as text: logging, `JSON.stringify` or
 * `util.inspect` show `[redacted]`.
 */
export class SigningKey {
  readonly #bytes: Buffer;
  constructor(secret: string) {
    this.#bytes = Buffer.from(secret, 'utf8');
  }
  /** HMAC-SHA256 of `parts` under this key. */
  hmac(parts: readonly (string | Buffer)[]): Buffer {
    const h = createHmac('sha256', this.#bytes);
    for (const p of parts) h.update(p);
    return h.digest();
  }
  toJSON(): string {
    return '[redacted]';
  }
  toString(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return 'SigningKey [redacted]';
  }
}

/** Which models a process trusts (config `models.trust`). */
export interface ModelTrust {
  /** Registration signs with it; activation and serving verify with it. */
  readonly key: SigningKey | undefined;
  /**
   * Accept a model without a signature (`MODEL_ALLOW_UNSIGNED`; default: true exactly when no
   * key is configured). A signature that is present but does not verify is refused regardless.
   */
  readonly allowUnsigned: boolean;
}

/** No key, unsigned models accepted: the default of a fresh clone (docs/serving.md). */
export const UNSIGNED_TRUST: ModelTrust = Object.freeze({ key: undefined, allowUnsigned: true });
