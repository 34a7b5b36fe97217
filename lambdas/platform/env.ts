import { ENV } from '../contract/constants';
import { ConfigurationError } from '../contract/errors';
import { DEFAULT_POLL_SETTINGS, validatePollSettings, type FixedIntervalSettings } from '../contract/settings';

/**
 * Reads Lambda configuration from environment variables, once per container (call these
 * at module load). Missing or malformed values fail the cold start loudly instead of
 * failing every record later.
 */
type Env = Readonly<Record<string, string | undefined>>;

export function requireEnv(name: string, env: Env = process.env): string {
  const value = env[name];
  if (value === undefined || value.trim() === '') throw new ConfigurationError(`environment variable ${name} is required`);
  return value;
}

export function positiveIntEnv(name: string, fallback: number, env: Env = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = /^\s*\d+\s*$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new ConfigurationError(`environment variable ${name} must be a positive integer, got "${raw}"`);
  }
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

/** Days job records are kept before DynamoDB's TTL removes them. */
export const DEFAULT_JOB_RETENTION_DAYS = 90;
/** Default maximum job duration: 24 hours. */
export const DEFAULT_MAX_JOB_DURATION_SECONDS = 24 * 3600;
/** Default largest `final_output` carried inline in records and events. */
export const DEFAULT_MAX_INLINE_OUTPUT_BYTES = 64 * 1024;
/** Default SQS maxReceiveCount of the intake queue's redrive policy. */
export const DEFAULT_MAX_RECEIVE_COUNT = 5;

/** The poll interval settings from the environment, validated. */
export function readPollSettings(env: Env = process.env): FixedIntervalSettings {
  const settings = {
    intervalSeconds: positiveIntEnv(ENV.POLL_INTERVAL_SECONDS, DEFAULT_POLL_SETTINGS.intervalSeconds, env),
    minSeconds: positiveIntEnv(ENV.POLL_MIN_SECONDS, DEFAULT_POLL_SETTINGS.minSeconds, env),
    maxSeconds: positiveIntEnv(ENV.POLL_MAX_SECONDS, DEFAULT_POLL_SETTINGS.maxSeconds, env),
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
