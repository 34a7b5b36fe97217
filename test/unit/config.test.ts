import { describe, expect, it } from 'vitest';
import {
  DEFAULT_JOB_RETENTION_DAYS,
  DEFAULT_MAX_INLINE_OUTPUT_BYTES,
  DEFAULT_MAX_JOB_DURATION_SECONDS,
  positiveIntEnv,
  readPollSettings,
  readWaterflaiSettings,
  requireEnv,
} from '../../lambdas/platform/env';
import { ENV } from '../../lambdas/contract/constants';
import { ConfigurationError } from '../../lambdas/contract/errors';
import { DEFAULT_POLL_SETTINGS } from '../../lambdas/contract/settings';
import { ORCHESTRATOR_DEFAULTS } from '../../lib/orchestrator';

describe('requireEnv', () => {
  it('returns the value of a set variable', () => {
    // Prepare
    const env = { JOB_TABLE_NAME: 'jobs' };

    // Act
    const value = requireEnv('JOB_TABLE_NAME', env);

    // Assess
    expect(value).toBe('jobs');
  });

  it.each([
    { name: 'missing', env: {} },
    { name: 'undefined', env: { JOB_TABLE_NAME: undefined } },
    { name: 'empty', env: { JOB_TABLE_NAME: '' } },
    { name: 'blank', env: { JOB_TABLE_NAME: '  \t ' } },
  ])('throws a ConfigurationError naming the variable when it is $name', ({ env }) => {
    // Act / Assess
    expect(() => requireEnv('JOB_TABLE_NAME', env)).toThrow(ConfigurationError);
    expect(() => requireEnv('JOB_TABLE_NAME', env)).toThrow('environment variable JOB_TABLE_NAME is required');
  });

  it('reads process.env by default', () => {
    // Prepare: vitest.config.ts sets AWS_REGION for every test

    // Act
    const value = requireEnv('AWS_REGION');

    // Assess
    expect(value).toBe('us-east-1');
  });
});

describe('positiveIntEnv', () => {
  it.each([
    { name: 'missing', env: {} },
    { name: 'empty', env: { MAX_RECEIVE_COUNT: '' } },
    { name: 'blank', env: { MAX_RECEIVE_COUNT: '   ' } },
  ])('returns the fallback when the variable is $name', ({ env }) => {
    // Act
    const value = positiveIntEnv('MAX_RECEIVE_COUNT', 5, env);

    // Assess
    expect(value).toBe(5);
  });

  it.each([
    { raw: '1', expected: 1 },
    { raw: '42', expected: 42 },
    { raw: ' 7 ', expected: 7 },
  ])('parses "$raw" as $expected', ({ raw, expected }) => {
    // Act
    const value = positiveIntEnv('MAX_RECEIVE_COUNT', 5, { MAX_RECEIVE_COUNT: raw });

    // Assess
    expect(value).toBe(expected);
  });

  it.each(['0', '-3', '1.5', 'abc', '10abc', 'NaN', 'Infinity', '0x10', '1e3', '99999999999999999999'])(
    'throws a ConfigurationError naming the variable and the raw value for "%s"',
    (raw) => {
      // Prepare
      const env = { POLL_INTERVAL_SECONDS: raw };

      // Act / Assess
      expect(() => positiveIntEnv('POLL_INTERVAL_SECONDS', 10, env)).toThrow(ConfigurationError);
      expect(() => positiveIntEnv('POLL_INTERVAL_SECONDS', 10, env)).toThrow(
        `environment variable POLL_INTERVAL_SECONDS must be a positive integer, got "${raw}"`,
      );
    },
  );
});

describe('readWaterflaiSettings', () => {
  it('reads the base URL and the API key secret id', () => {
    // Prepare
    const env = { [ENV.WATERFLAI_BASE_URL]: 'https://api.waterflai.ai', [ENV.WATERFLAI_API_KEY_SECRET_ID]: 'waterflai/api-key' };

    // Act
    const settings = readWaterflaiSettings(env);

    // Assess
    expect(settings).toEqual({ baseUrl: 'https://api.waterflai.ai', apiKeySecretId: 'waterflai/api-key' });
  });

  it.each([
    { missing: ENV.WATERFLAI_BASE_URL, env: { [ENV.WATERFLAI_API_KEY_SECRET_ID]: 'secret' } },
    { missing: ENV.WATERFLAI_API_KEY_SECRET_ID, env: { [ENV.WATERFLAI_BASE_URL]: 'https://api.waterflai.ai' } },
  ])('throws a ConfigurationError naming $missing when it is missing', ({ missing, env }) => {
    // Act / Assess
    expect(() => readWaterflaiSettings(env)).toThrow(ConfigurationError);
    expect(() => readWaterflaiSettings(env)).toThrow(`environment variable ${missing} is required`);
  });
});

describe('readPollSettings', () => {
  it('uses the defaults when nothing is set', () => {
    // Act
    const settings = readPollSettings({});

    // Assess
    expect(settings).toEqual(DEFAULT_POLL_SETTINGS);
  });

  it('reads each setting from its variable', () => {
    // Prepare
    const env = { [ENV.POLL_INTERVAL_SECONDS]: '20', [ENV.POLL_MIN_SECONDS]: '5', [ENV.POLL_MAX_SECONDS]: '60' };

    // Act
    const settings = readPollSettings(env);

    // Assess
    expect(settings).toEqual({ intervalSeconds: 20, minSeconds: 5, maxSeconds: 60 });
  });

  it('throws a ConfigurationError naming the variable that is not a positive integer', () => {
    // Prepare
    const env = { [ENV.POLL_MAX_SECONDS]: '0' };

    // Act / Assess
    expect(() => readPollSettings(env)).toThrow(ConfigurationError);
    expect(() => readPollSettings(env)).toThrow(ENV.POLL_MAX_SECONDS);
  });

  it('throws a ConfigurationError naming the variables when the minimum exceeds the maximum', () => {
    // Prepare
    const env = { [ENV.POLL_MIN_SECONDS]: '90', [ENV.POLL_MAX_SECONDS]: '60' };

    // Act / Assess
    expect(() => readPollSettings(env)).toThrow(ConfigurationError);
    expect(() => readPollSettings(env)).toThrow(/POLL_MIN_SECONDS.*poll minSeconds \(90\) must not exceed maxSeconds \(60\)/);
  });
});

describe('defaults', () => {
  it("matches the construct's defaults, so a Lambda without the variable behaves as deployed", () => {
    // Assess
    expect(DEFAULT_JOB_RETENTION_DAYS).toBe(ORCHESTRATOR_DEFAULTS.jobRetention.toDays());
    expect(DEFAULT_MAX_JOB_DURATION_SECONDS).toBe(ORCHESTRATOR_DEFAULTS.maxJobDuration.toSeconds());
    expect(DEFAULT_MAX_INLINE_OUTPUT_BYTES).toBe(ORCHESTRATOR_DEFAULTS.maxInlineOutputBytes);
  });
});
