import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigurationError } from '../contract/errors';

/** How long a fetched API key is reused before Secrets Manager is asked again. */
export const DEFAULT_API_KEY_TTL_MS = 5 * 60 * 1000;
/**
 * Shortest time between two forced re-reads of the secret ({@link CachedApiKey.refresh}):
 * a burst of 401s from many concurrent polls costs one read, and a key that is simply wrong
 * cannot turn every poll into a Secrets Manager call.
 */
export const DEFAULT_API_KEY_MIN_REFRESH_MS = 5_000;

/** The API key, cached; `refresh()` re-reads the secret at once (after Waterflai refused the key). */
export interface CachedApiKey {
  (): Promise<string>;
  /**
   * Re-reads the secret, bypassing the cache (a rotated key is picked up before the TTL runs
   * out), unless a read started at or after `notBeforeMs` already did: pass the time the
   * refused request was sent, and a burst of refusals costs one read. Without it, reads
   * started within the minimum refresh interval count.
   */
  refresh(notBeforeMs?: number): Promise<string>;
}

/**
 * Returns a function that yields the Waterflai API key from Secrets Manager, cached for a
 * short time so that a rotated key is picked up within minutes without a call per request,
 * and at once through `refresh()` when Waterflai refuses it. The key is never logged. A
 * secret holding JSON `{"apiKey": "..."}` (or `api_key`) is accepted as well as a plain string.
 */
export function cachedApiKey(
  client: SecretsManagerClient,
  secretId: string,
  options: { ttlMs?: number; minRefreshMs?: number; now?: () => number } = {},
): CachedApiKey {
  const ttlMs = options.ttlMs ?? DEFAULT_API_KEY_TTL_MS;
  const minRefreshMs = options.minRefreshMs ?? DEFAULT_API_KEY_MIN_REFRESH_MS;
  const now = options.now ?? Date.now;
  /** The key and when the read that got it started. */
  let cached: { value: string; readStartedAt: number } | undefined;
  let inFlight: { promise: Promise<string>; startedAt: number } | undefined;

  const read = (): Promise<string> => {
    if (inFlight === undefined) {
      const startedAt = now();
      const promise = (async () => {
        const result = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
        const value = extractKey(result.SecretString);
        if (cached === undefined || cached.readStartedAt <= startedAt) cached = { value, readStartedAt: startedAt };
        return value;
      })().finally(() => {
        inFlight = undefined;
      });
      inFlight = { promise, startedAt };
    }
    return inFlight.promise;
  };

  const key = async (): Promise<string> => {
    if (cached && cached.readStartedAt + ttlMs > now()) return cached.value;
    return read();
  };
  key.refresh = async (notBeforeMs?: number): Promise<string> => {
    // Without a send time: reads started less than minRefreshMs ago.
    const threshold = notBeforeMs ?? now() - minRefreshMs + 1;
    if (cached && cached.readStartedAt >= threshold) return cached.value;
    if (inFlight && inFlight.startedAt >= threshold) return inFlight.promise;
    // A read under way that started too early may still carry the refused key: wait for it, then read again.
    if (inFlight) await inFlight.promise.catch(() => undefined);
    if (cached && cached.readStartedAt >= threshold) return cached.value;
    return read();
  };
  return key;
}

function extractKey(secretString: string | undefined): string {
  const raw = secretString?.trim();
  if (!raw) throw new ConfigurationError('the Waterflai API key secret has no string value');
  if (raw.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(raw);
      if (typeof parsed === 'object' && parsed !== null) {
        const record = parsed as Record<string, unknown>;
        const key = record.apiKey ?? record.api_key;
        if (typeof key === 'string' && key.trim() !== '') return key.trim();
      }
    } catch {
      // Not JSON after all: fall through and use the raw string.
      return raw;
    }
    throw new ConfigurationError('the Waterflai API key secret is JSON without an "apiKey" string field');
  }
  return raw;
}
