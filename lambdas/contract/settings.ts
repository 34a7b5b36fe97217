/**
 * Deploy-time settings shared by the construct (which validates them at synth time) and the
 * functions (which read them from their environment at cold start): one defaults table, and
 * one schema of the Lambda environment the construct writes and the handlers read.
 */
import * as z from 'zod';
import { ENV } from './constants';
import { ConfigurationError } from './errors';

/** Settings of the fixed-interval strategy, and the floor/cap of every strategy. */
export interface FixedIntervalSettings {
  /** Seconds between polls (fixed strategy); the wait before the first poll (every strategy). */
  readonly intervalSeconds: number;
  /** Never wait less than this. */
  readonly minSeconds: number;
  /** Never wait more than this, except to honour a server's Retry-After (or, in the adaptive strategy, its history budget). */
  readonly maxSeconds: number;
}

/** The longest Retry-After honoured (a misbehaving server cannot park a job for days). */
export const MAX_RETRY_AFTER_SECONDS = 3600;

export const DEFAULT_POLL_SETTINGS: FixedIntervalSettings = {
  intervalSeconds: 10,
  minSeconds: 1,
  maxSeconds: 600,
};

/** Checks settings once (at cold start or synth time) and says what is wrong. */
export function validatePollSettings(settings: FixedIntervalSettings): FixedIntervalSettings {
  const { intervalSeconds, minSeconds, maxSeconds } = settings;
  for (const [name, value] of Object.entries({ intervalSeconds, minSeconds, maxSeconds })) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`poll setting ${name} must be a positive integer, got ${value}`);
  }
  if (minSeconds > maxSeconds) throw new RangeError(`poll minSeconds (${minSeconds}) must not exceed maxSeconds (${maxSeconds})`);
  return settings;
}

/**
 * The one defaults table: every deploy-time setting's default, read by the construct (props
 * and cdk.json context), by the Lambda environment it writes, and by the handlers when a
 * variable is absent. Documented in docs/configuration.md.
 */
export const SETTING_DEFAULTS = {
  /** Longest a job may run (its `timeout_seconds` can only shorten it). */
  maxJobDurationSeconds: 24 * 3600,
  pollIntervalSeconds: DEFAULT_POLL_SETTINGS.intervalSeconds,
  pollMinSeconds: DEFAULT_POLL_SETTINGS.minSeconds,
  pollMaxSeconds: DEFAULT_POLL_SETTINGS.maxSeconds,
  /** Receives of an intake message before SQS dead-letters it. */
  maxReceiveCount: 5,
  /** Days a job record (and a stored output) is kept. */
  jobRetentionDays: 90,
  /** Largest `final_output` carried inline in records and events (bytes). */
  maxInlineOutputBytes: 64 * 1024,
  /** Polls one state machine execution makes before a hand-over (1,500 x 9 history events, well under 25,000). */
  maxPollsPerExecution: 1_500,
  /** Seconds a loop keeps retrying while Waterflai refuses the key (key rotation). */
  authGraceSeconds: 3_600,
  /** Minutes between sweeps. */
  sweepIntervalMinutes: 5,
} as const;

/**
 * Past the deadline, how long (job seconds) the poll loop keeps trying, one round per poll,
 * while neither the status can be read nor the cancel confirmed (an outage at the deadline),
 * before the job ends `TIMED_OUT` with an unconfirmed cancel. Well inside the state machine's
 * hour after the deadline; a result that came in time is still recorded when Waterflai answers.
 */
export const DEADLINE_CANCEL_WINDOW_SECONDS = 1_800;
/** Longest wait between two deadline rounds (job seconds): the deadline is past, so no long sleeps. */
export const DEADLINE_ROUND_MAX_WAIT_SECONDS = 60;
/**
 * How long past its deadline a job is left to its poll loop before the sweeper settles it:
 * longer than the loop's deadline window, so the sweeper never ends a job the loop is still
 * cancelling (or still waiting to read during an outage).
 */
export const SWEEP_GRACE_SECONDS = DEADLINE_CANCEL_WINDOW_SECONDS + 15 * 60;

/** An optional text variable: blank counts as absent. */
const text = z.preprocess((raw) => (typeof raw === 'string' && raw.trim() === '' ? undefined : raw), z.string().trim().optional());

/** A positive whole number with its default (blank counts as absent). */
function count(fallback: number) {
  return z.preprocess(
    (raw) => (typeof raw === 'string' && raw.trim() === '' ? undefined : raw),
    z
      .string()
      .regex(/^\s*\d+\s*$/, 'must be a positive integer')
      .transform(Number)
      .pipe(
        z
          .number()
          .int('must be a positive integer')
          .min(1, 'must be a positive integer')
          .max(Number.MAX_SAFE_INTEGER, 'must be a positive integer'),
      )
      .default(fallback),
  );
}

/**
 * The Lambda environment the construct writes and the handlers read: each variable, its type
 * and its default (from {@link SETTING_DEFAULTS}). A handler reads the variables it needs
 * once, at cold start ({@link readSetting}, through `platform/env.ts`); a malformed value
 * fails the cold start naming the variable.
 */
export const FUNCTION_ENVIRONMENT = {
  [ENV.WATERFLAI_BASE_URL]: text,
  [ENV.WATERFLAI_API_KEY_SECRET_ID]: text,
  [ENV.JOB_TABLE_NAME]: text,
  [ENV.STATE_MACHINE_ARN]: text,
  [ENV.EVENT_BUS_NAME]: text,
  [ENV.DLQ_URL]: text,
  [ENV.INTAKE_QUEUE_URL]: text,
  [ENV.OUTPUT_BUCKET_NAME]: text,
  [ENV.MAX_RECEIVE_COUNT]: count(SETTING_DEFAULTS.maxReceiveCount),
  [ENV.MAX_INLINE_OUTPUT_BYTES]: count(SETTING_DEFAULTS.maxInlineOutputBytes),
  [ENV.MAX_POLLS_PER_EXECUTION]: count(SETTING_DEFAULTS.maxPollsPerExecution),
  [ENV.SWEEP_GRACE_SECONDS]: count(SWEEP_GRACE_SECONDS),
  [ENV.MAX_JOB_DURATION_SECONDS]: count(SETTING_DEFAULTS.maxJobDurationSeconds),
  [ENV.POLL_MIN_SECONDS]: count(SETTING_DEFAULTS.pollMinSeconds),
  [ENV.POLL_MAX_SECONDS]: count(SETTING_DEFAULTS.pollMaxSeconds),
  [ENV.POLL_INTERVAL_SECONDS]: count(SETTING_DEFAULTS.pollIntervalSeconds),
  [ENV.JOB_RETENTION_DAYS]: count(SETTING_DEFAULTS.jobRetentionDays),
  [ENV.AUTH_GRACE_SECONDS]: count(SETTING_DEFAULTS.authGraceSeconds),
} as const satisfies Readonly<Record<(typeof ENV)[keyof typeof ENV], z.ZodType>>;

/** A variable of the functions' environment. */
export type SettingName = keyof typeof FUNCTION_ENVIRONMENT;
/** The value of a variable, as {@link readSetting} returns it. */
export type SettingValue<Name extends SettingName> = z.output<(typeof FUNCTION_ENVIRONMENT)[Name]>;

/**
 * Reads one variable of a Lambda environment with its schema (default applied). Only that
 * variable is read.
 * @throws ConfigurationError naming the variable when its value is malformed
 */
export function readSetting<Name extends SettingName>(env: Readonly<Record<string, string | undefined>>, name: Name): SettingValue<Name> {
  const raw = env[name];
  const result = FUNCTION_ENVIRONMENT[name].safeParse(raw);
  if (result.success) return result.data as SettingValue<Name>;
  const reason = result.error.issues[0]?.message ?? 'is malformed';
  throw new ConfigurationError(`environment variable ${name} ${reason}, got "${raw ?? ''}"`);
}
