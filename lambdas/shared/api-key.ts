import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ConfigurationError } from './errors';

/** How long a fetched API key is reused before Secrets Manager is asked again. */
export const DEFAULT_API_KEY_TTL_MS = 5 * 60 * 1000;

/**
 * Returns a function that yields the Waterflai API key from Secrets Manager, cached for a
 * short time so that a rotated key is picked up within minutes without a call per request.
 * The key is never logged. A secret holding JSON `{"apiKey": "..."}` (or `api_key`) is
 * accepted as well as a plain string.
 */
export function cachedApiKey(
  client: SecretsManagerClient,
  secretId: string,
  options: { ttlMs?: number; now?: () => number } = {},
): () => Promise<string> {
  const ttlMs = options.ttlMs ?? DEFAULT_API_KEY_TTL_MS;
  const now = options.now ?? Date.now;
  let cached: { value: string; expiresAt: number } | undefined;
  let inFlight: Promise<string> | undefined;

  const fetchKey = async (): Promise<string> => {
    const result = await client.send(new GetSecretValueCommand({ SecretId: secretId }));
    const value = extractKey(result.SecretString);
    cached = { value, expiresAt: now() + ttlMs };
    return value;
  };

  return async () => {
    if (cached && cached.expiresAt > now()) return cached.value;
    inFlight ??= fetchKey().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
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
