import { describe, expect, it } from 'vitest';
import { readPollSettings, readWaterflaiSettings, requireEnv, setting } from '../../lambdas/platform/env';
import { ENV } from '../../lambdas/contract/constants';
import { ConfigurationError } from '../../lambdas/contract/errors';
import {
  DEFAULT_POLL_SETTINGS,
  FUNCTION_ENVIRONMENT,
  SETTING_DEFAULTS,
  SWEEP_GRACE_SECONDS,
  DEADLINE_CANCEL_WINDOW_SECONDS,
} from '../../lambdas/contract/settings';
import { POLL_STATE_MACHINE_DEFAULTS } from '../../lib/poll-state-machine';
import { INTAKE_DEFAULTS } from '../../lib/intake';
import { ORCHESTRATOR_DEFAULTS } from '../../lib/orchestrator';

describe('requireEnv', () => {
  it('returns the value of a set variable', () => {
    // Prepare
    const env = { JOB_TABLE_NAME: 'jobs' };

    // Act
    const value = requireEnv(ENV.JOB_TABLE_NAME, env);

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
    expect(() => requireEnv(ENV.JOB_TABLE_NAME, env)).toThrow(ConfigurationError);
    expect(() => requireEnv(ENV.JOB_TABLE_NAME, env)).toThrow('environment variable JOB_TABLE_NAME is required');
  });

  it('reads process.env by default', () => {
    // Prepare

    // Act
    process.env[ENV.JOB_TABLE_NAME] = 'jobs-from-process-env';
    let value: string;
    try {
      value = requireEnv(ENV.JOB_TABLE_NAME);
    } finally {
      delete process.env[ENV.JOB_TABLE_NAME];
    }

    // Assess
    expect(value).toBe('jobs-from-process-env');
  });
});

describe('setting (a positive integer variable)', () => {
  it.each([
    { name: 'missing', env: {} },
    { name: 'empty', env: { MAX_RECEIVE_COUNT: '' } },
    { name: 'blank', env: { MAX_RECEIVE_COUNT: '   ' } },
  ])('returns the default of the one defaults table when the variable is $name', ({ env }) => {
    // Act
    const value = setting(ENV.MAX_RECEIVE_COUNT, env);

    // Assess
    expect(value).toBe(SETTING_DEFAULTS.maxReceiveCount);
  });

  it.each([
    { raw: '1', expected: 1 },
    { raw: '42', expected: 42 },
    { raw: ' 7 ', expected: 7 },
  ])('parses "$raw" as $expected', ({ raw, expected }) => {
    // Act
    const value = setting(ENV.MAX_RECEIVE_COUNT, { MAX_RECEIVE_COUNT: raw });

    // Assess
    expect(value).toBe(expected);
  });

  it.each(['0', '-3', '1.5', 'abc', '10abc', 'NaN', 'Infinity', '0x10', '1e3', '99999999999999999999'])(
    'throws a ConfigurationError naming the variable and the raw value for "%s"',
    (raw) => {
      // Prepare
      const env = { POLL_INTERVAL_SECONDS: raw };

      // Act / Assess
      expect(() => setting(ENV.POLL_INTERVAL_SECONDS, env)).toThrow(ConfigurationError);
      expect(() => setting(ENV.POLL_INTERVAL_SECONDS, env)).toThrow(
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

describe('the one defaults table', () => {
  it('is what the construct and the functions use, so a Lambda without the variable behaves as deployed', () => {
    // Assess
    expect(ORCHESTRATOR_DEFAULTS.jobRetention.toDays()).toBe(SETTING_DEFAULTS.jobRetentionDays);
    expect(ORCHESTRATOR_DEFAULTS.maxJobDuration.toSeconds()).toBe(SETTING_DEFAULTS.maxJobDurationSeconds);
    expect(ORCHESTRATOR_DEFAULTS.maxInlineOutputBytes).toBe(SETTING_DEFAULTS.maxInlineOutputBytes);
    expect(ORCHESTRATOR_DEFAULTS.authGracePeriod.toSeconds()).toBe(SETTING_DEFAULTS.authGraceSeconds);
    expect(POLL_STATE_MACHINE_DEFAULTS.maxPollsPerExecution).toBe(SETTING_DEFAULTS.maxPollsPerExecution);
    expect(INTAKE_DEFAULTS.maxReceiveCount).toBe(SETTING_DEFAULTS.maxReceiveCount);
    expect(readPollSettings({})).toEqual({
      intervalSeconds: SETTING_DEFAULTS.pollIntervalSeconds,
      minSeconds: SETTING_DEFAULTS.pollMinSeconds,
      maxSeconds: SETTING_DEFAULTS.pollMaxSeconds,
    });
  });

  it.each(
    Object.keys(FUNCTION_ENVIRONMENT).filter(
      (name) => FUNCTION_ENVIRONMENT[name as keyof typeof FUNCTION_ENVIRONMENT].safeParse(undefined).data !== undefined,
    ),
  )('gives %s a default that is a positive integer', (name) => {
    const value = setting(name as keyof typeof FUNCTION_ENVIRONMENT, {});
    expect(Number.isSafeInteger(value) && (value as number) >= 1).toBe(true);
  });

  it('leaves the sweeper settling a job only after the poll loop gave up cancelling it past its deadline', () => {
    expect(SWEEP_GRACE_SECONDS).toBeGreaterThan(DEADLINE_CANCEL_WINDOW_SECONDS);
    expect(setting(ENV.SWEEP_GRACE_SECONDS, {})).toBe(SWEEP_GRACE_SECONDS);
  });
});
