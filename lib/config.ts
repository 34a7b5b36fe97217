/**
 * Reads the orchestrator's deploy-time settings from CDK context (cdk.json or `-c`), with a
 * clear error for every bad value (each kind of setting has a zod schema; the defaults live in
 * the one table of `lambdas/contract/settings.ts`). Pure: no constructs are created here.
 *
 * Two spellings, flat keys winning over the object:
 * - an object under `waterflai` in cdk.json: `"waterflai": { "baseUrl": "https://...", "maxJobDurationHours": 6 }`
 * - flat keys, handy with `-c`: `cdk synth -c waterflai:baseUrl=https://... -c waterflai:maxJobDurationHours=6`
 */

import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import * as z from 'zod';

/** Prefix of the flat context keys, and name of the object key. */
export const CONTEXT_KEY = 'waterflai';

/** The settings, as plain values (no constructs). */
export interface OrchestratorConfig {
  /** Name of the CloudFormation stack. */
  readonly stackName?: string;
  /** Waterflai API base URL. */
  readonly baseUrl?: string;
  /** Full ARN of an existing Secrets Manager secret holding the API key. */
  readonly apiKeySecretArn?: string;
  /** Name or ARN of an existing event bus for outcome events. */
  readonly eventBusName?: string;
  readonly maxJobDurationHours?: number;
  readonly pollIntervalSeconds?: number;
  readonly pollMinSeconds?: number;
  readonly pollMaxSeconds?: number;
  readonly batchSize?: number;
  readonly maxConcurrency?: number;
  readonly maxReceiveCount?: number;
  /** Days; must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, 60, 90, ...). */
  readonly logRetentionDays?: number;
  readonly removalPolicy?: 'retain' | 'destroy';
  readonly jobRetentionDays?: number;
  /** Largest final output carried inline in events (bytes); larger ones go to S3. */
  readonly maxInlineOutputBytes?: number;
  /** Polls per state machine execution before a hand-over to a successor (continue-as-new). */
  readonly maxPollsPerExecution?: number;
  /** Minutes between sweeps for jobs left unfinished past their deadline. */
  readonly sweepIntervalMinutes?: number;
  /** Minutes a poll loop keeps retrying while Waterflai refuses the API key (key rotation). */
  readonly authGraceMinutes?: number;
}

type Kind = 'string' | 'arn' | 'positiveNumber' | 'positiveInteger' | 'logRetention' | 'removalPolicy';

/** CloudWatch Logs retention values, in days (9999 = never expire). */
const LOG_RETENTION_DAYS: readonly number[] = Object.values(RetentionDays).filter((value): value is number => typeof value === 'number');
const RETENTION_MESSAGE = `must be one of the CloudWatch Logs retention values ${LOG_RETENTION_DAYS.join(', ')}`;
const ARN_MESSAGE =
  'must be the complete ARN of a Secrets Manager secret (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<6 chars>)';

const KEYS: Readonly<Record<keyof OrchestratorConfig, Kind>> = {
  stackName: 'string',
  baseUrl: 'string',
  apiKeySecretArn: 'arn',
  eventBusName: 'string',
  maxJobDurationHours: 'positiveNumber',
  pollIntervalSeconds: 'positiveInteger',
  pollMinSeconds: 'positiveInteger',
  pollMaxSeconds: 'positiveInteger',
  batchSize: 'positiveInteger',
  maxConcurrency: 'positiveInteger',
  maxReceiveCount: 'positiveInteger',
  logRetentionDays: 'logRetention',
  removalPolicy: 'removalPolicy',
  jobRetentionDays: 'positiveInteger',
  maxInlineOutputBytes: 'positiveInteger',
  maxPollsPerExecution: 'positiveInteger',
  sweepIntervalMinutes: 'positiveInteger',
  authGraceMinutes: 'positiveInteger',
};

/** The context keys understood, flat spelling (for documentation and error messages). */
export const CONTEXT_KEYS: readonly string[] = Object.keys(KEYS).map((key) => `${CONTEXT_KEY}:${key}`);

/** Minimal view of a construct node's context (an `App`'s `node` fits). */
export interface ContextSource {
  getAllContext(): Record<string, unknown>;
}

/**
 * Reads and checks the settings.
 * @param source usually `app.node`
 * @throws Error naming the key and what is wrong with its value
 */
export function readOrchestratorConfig(source: ContextSource): OrchestratorConfig {
  const context = source.getAllContext();
  const raw: Record<string, unknown> = {};

  const object = context[CONTEXT_KEY];
  if (object !== undefined) {
    if (typeof object === 'string') {
      // `-c waterflai='{"baseUrl":...}'` arrives as a string.
      Object.assign(raw, prefixed(parseJsonObject(object)));
    } else if (isPlainObject(object)) {
      Object.assign(raw, prefixed(object));
    } else {
      throw new Error(`context "${CONTEXT_KEY}" must be an object, got ${JSON.stringify(object)}`);
    }
  }
  for (const [key, value] of Object.entries(context)) {
    if (key.startsWith(`${CONTEXT_KEY}:`)) raw[key] = value;
  }

  const config: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const name = key.slice(CONTEXT_KEY.length + 1);
    if (!Object.hasOwn(KEYS, name)) {
      throw new Error(`unknown context key "${key}"; known keys: ${CONTEXT_KEYS.join(', ')}`);
    }
    if (value === undefined || value === null || value === '') continue;
    config[name] = parseValue(key, KEYS[name as keyof OrchestratorConfig], value);
  }
  return config as OrchestratorConfig;
}

function prefixed(object: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [`${CONTEXT_KEY}:${key}`, value]));
}

function parseJsonObject(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`context "${CONTEXT_KEY}" must be a JSON object, got ${JSON.stringify(text)}`);
  }
  if (!isPlainObject(parsed)) throw new Error(`context "${CONTEXT_KEY}" must be a JSON object, got ${JSON.stringify(text)}`);
  return parsed;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Numbers from cdk.json arrive as numbers, from `-c` as strings: read both as numbers. */
function numeric(message: string) {
  return z.preprocess((value) => toNumber(value) ?? value, z.number(message));
}

/** The schema of each kind of setting; a failure's message says what the value must be. */
const KIND_SCHEMAS: Readonly<Record<Kind, z.ZodType<string | number>>> = {
  string: z.string('must be a non-empty string').trim().min(1, 'must be a non-empty string'),
  arn: z
    .string(ARN_MESSAGE)
    .trim()
    .regex(/^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$/, ARN_MESSAGE),
  positiveNumber: numeric('must be a positive number').pipe(z.number('must be a positive number').positive('must be a positive number')),
  positiveInteger: numeric('must be a positive integer').pipe(
    z.number('must be a positive integer').int('must be a positive integer').positive('must be a positive integer'),
  ),
  logRetention: numeric(RETENTION_MESSAGE).pipe(
    z.number(RETENTION_MESSAGE).refine((days) => LOG_RETENTION_DAYS.includes(days), RETENTION_MESSAGE),
  ),
  removalPolicy: z.preprocess(
    (value) => (typeof value === 'string' ? value.trim().toLowerCase() : value),
    z.enum(['retain', 'destroy'], 'must be "retain" or "destroy"'),
  ),
};

function parseValue(key: string, kind: Kind, value: unknown): string | number {
  const result = KIND_SCHEMAS[kind].safeParse(value);
  if (result.success) return result.data;
  throw new Error(`context "${key}" ${result.error.issues[0]?.message ?? 'is not valid'}, got ${JSON.stringify(value)}`);
}

/** Numbers from cdk.json arrive as numbers, from `-c` as strings. */
function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value)) return Number(value);
  return undefined;
}
