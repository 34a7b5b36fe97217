import { cachedApiKey, type CachedApiKey } from '../aws/api-key';
import { secretsManager } from '../aws/clients';
import { readWaterflaiSettings } from './env';
import { WaterflaiClient } from '../waterflai/client';

/**
 * The Waterflai client a Lambda uses: deploy-time base URL, API key from Secrets Manager
 * (cached; re-read at once when Waterflai refuses it). Pass `apiKey` to share one cache with
 * another user of the key (the poll function's event stream).
 */
export function waterflaiClientFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
  apiKey?: CachedApiKey,
): WaterflaiClient {
  const settings = readWaterflaiSettings(env);
  apiKey ??= cachedApiKey(secretsManager(), settings.apiKeySecretId);
  return new WaterflaiClient({ baseUrl: settings.baseUrl, apiKey, refreshApiKey: apiKey.refresh });
}
