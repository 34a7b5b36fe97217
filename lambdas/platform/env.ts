import { ENV } from '../contract/constants';
import { ConfigurationError } from '../contract/errors';
import { readSetting, validatePollSettings, type FixedIntervalSettings, type SettingName, type SettingValue } from '../contract/settings';

/**
 * Reads Lambda configuration from environment variables, once per container (call these at
 * module load), with the one schema of `contract/settings.ts`. Missing or malformed values
 * fail the cold start loudly instead of failing every record later.
 */
type Env = Readonly<Record<string, string | undefined>>;

/** A variable's value with its default (see `FUNCTION_ENVIRONMENT`). */
export function setting<Name extends SettingName>(name: Name, env: Env = process.env): SettingValue<Name> {
  return readSetting(env, name);
}

/** A text variable the function cannot run without. */
export function requireEnv(name: SettingName, env: Env = process.env): string {
  const value = readSetting(env, name);
  if (typeof value !== 'string') throw new ConfigurationError(`environment variable ${name} is required`);
  return value;
}

/** Settings every handler that talks to Waterflai needs. */
export interface WaterflaiSettings {
  readonly baseUrl: string;
  readonly apiKeySecretId: string;
}

export function readWaterflaiSettings(env: Env = process.env): WaterflaiSettings {
  return {
    baseUrl: requireEnv(ENV.WATERFLAI_BASE_URL, env),
    apiKeySecretId: requireEnv(ENV.WATERFLAI_API_KEY_SECRET_ID, env),
  };
}

/** The poll interval settings from the environment, validated. */
export function readPollSettings(env: Env = process.env): FixedIntervalSettings {
  const settings = {
    intervalSeconds: setting(ENV.POLL_INTERVAL_SECONDS, env),
    minSeconds: setting(ENV.POLL_MIN_SECONDS, env),
    maxSeconds: setting(ENV.POLL_MAX_SECONDS, env),
  };
  try {
    return validatePollSettings(settings);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigurationError(
      `${ENV.POLL_INTERVAL_SECONDS}/${ENV.POLL_MIN_SECONDS}/${ENV.POLL_MAX_SECONDS} are inconsistent: ${reason}`,
    );
  }
}
