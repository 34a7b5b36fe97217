/**
 * The API keys the simulator accepts and the ones it refuses since a rotation. Keys are kept
 * and compared by SHA-256 digest, in constant time, and never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export class ApiKeys {
  /** Accepted keys by their digest (never the key itself). */
  readonly #accepted: Buffer[];
  /** Keys refused after a rotation. */
  readonly #revoked: Buffer[] = [];
  #current: string;

  constructor(apiKey: string, moreKeys: readonly string[]) {
    this.#accepted = [digest(apiKey), ...moreKeys.map(digest)];
    this.#current = apiKey;
  }

  /** The newest key accepted. */
  get current(): string {
    return this.#current;
  }

  /** `ok`, `revoked` (a key refused since a rotation) or `invalid` (missing or unknown). */
  authorize(given: string | string[] | undefined): 'ok' | 'revoked' | 'invalid' {
    if (typeof given !== 'string' || given === '') return 'invalid';
    const hash = digest(given);
    // Every comparison is made, so the time taken does not tell which key matched.
    const accepted = this.#accepted.reduce((found, key) => timingSafeEqual(hash, key) || found, false);
    if (accepted) return 'ok';
    return this.#revoked.reduce((found, key) => timingSafeEqual(hash, key) || found, false) ? 'revoked' : 'invalid';
  }

  /** Accepts one more key and makes it the current one. */
  accept(key: string): void {
    if (key === '') throw new Error('an API key must not be empty');
    const hash = digest(key);
    if (!this.#accepted.some((accepted) => accepted.equals(hash))) this.#accepted.push(hash);
    const revokedIndex = this.#revoked.findIndex((revoked) => revoked.equals(hash));
    if (revokedIndex >= 0) this.#revoked.splice(revokedIndex, 1);
    this.#current = key;
  }

  /** Refuses a key from now on. */
  revoke(key: string): void {
    this.#revokeDigest(digest(key));
  }

  /** Accepts `newKey` as the current key; returns what refuses every other key accepted now. */
  rotate(newKey: string): () => void {
    this.accept(newKey);
    const keep = digest(newKey);
    const old = this.#accepted.filter((key) => !key.equals(keep));
    return () => {
      for (const key of old) this.#revokeDigest(key);
    };
  }

  #revokeDigest(hash: Buffer): void {
    const index = this.#accepted.findIndex((key) => key.equals(hash));
    if (index < 0) return;
    this.#accepted.splice(index, 1);
    this.#revoked.push(hash);
  }
}
