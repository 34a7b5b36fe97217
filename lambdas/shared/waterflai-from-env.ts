import { cachedApiKey } from './api-key';
import { secretsManager } from './aws-clients';
import { readWaterflaiSettings } from './config';
import { WaterflaiClient } from './waterflai-client';

/** The Waterflai client a Lambda uses: deploy-time base URL, API key from Secrets Manager (cached). */
export function waterflaiClientFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): WaterflaiClient {
  const settings = readWaterflaiSettings(env);
  return new WaterflaiClient({ baseUrl: settings.baseUrl, apiKey: cachedApiKey(secretsManager(), settings.apiKeySecretId) });
}
