import { createHash } from 'node:crypto';

/**
 * Allowlist for identifiers that end up in a Waterflai URL path (`chatbot_id`,
 * `execution_id`): ASCII letters, digits, `_` and `-`, starting with a letter or digit,
 * at most 128 characters. Dots, slashes, `%`, `?`, `#`, whitespace and anything
 * non-ASCII are refused, so no value can change the path, query or host of a request.
 */
export const URL_IDENTIFIER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
export const URL_IDENTIFIER_MAX_LENGTH = 128;

/**
 * Allowlist for `job_id`: like {@link URL_IDENTIFIER_PATTERN} plus `.` and `:` (common in
 * producers' ids), at most 128 characters. A job id never goes into a URL.
 */
export const JOB_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
export const JOB_ID_MAX_LENGTH = 128;

/** Step Functions execution names: at most 80 characters. */
export const EXECUTION_NAME_MAX_LENGTH = 80;
/** Room left at the end of a name for a successor suffix such as `-r12` (continue-as-new). */
const EXECUTION_NAME_BASE_MAX_LENGTH = 72;

/**
 * The Step Functions execution name for a job: the job id itself when it only uses
 * `[A-Za-z0-9_-]` and fits, else a readable prefix plus a hash of the whole id, so two
 * different job ids never share a name and the same job id always gets the same one.
 */
export function executionNameForJob(jobId: string): string {
  if (/^[A-Za-z0-9_-]+$/.test(jobId) && jobId.length <= EXECUTION_NAME_BASE_MAX_LENGTH) return jobId;
  const hash = createHash('sha256').update(jobId).digest('hex').slice(0, 24);
  const prefix = jobId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, EXECUTION_NAME_BASE_MAX_LENGTH - hash.length - 1);
  return `${prefix}-${hash}`;
}

/**
 * The execution name of a job's poll loop in a given generation: generation 0 is the name
 * the start Lambda uses; each hand-over to a successor execution (continue-as-new) adds one.
 */
export function executionNameForGeneration(jobId: string, generation: number): string {
  const base = executionNameForJob(jobId);
  return generation === 0 ? base : `${base}-g${generation}`;
}
