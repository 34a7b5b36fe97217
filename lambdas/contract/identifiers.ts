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
/** Longest base name (generation 0): leaves room for a successor suffix `_g999999`. */
export const EXECUTION_NAME_BASE_MAX_LENGTH = 72;
/** Highest generation {@link executionNameForGeneration} names (the `_g<n>` suffix has at most 6 digits). */
export const MAX_EXECUTION_GENERATION = 999_999;
/** Hex digits of SHA-256 kept in a hashed name (96 bits). */
const NAME_HASH_HEX_DIGITS = 24;
/** A job id used as its own name: no `_` (the separator), so it can not look like a hashed or successor name. */
const PLAIN_NAME = /^[A-Za-z0-9-]+$/;

/**
 * The Step Functions execution name for a job (generation 0): the job id itself when it is
 * made of `[A-Za-z0-9-]` and at most 72 characters long, else a readable prefix of it plus
 * `_h` and 96 bits of its SHA-256. Deterministic; no two (job id, generation) pairs share a
 * name (see {@link executionNameForGeneration} for the scheme and the argument).
 *
 * @example
 * executionNameForJob('orders-42'); // 'orders-42'
 * executionNameForJob('orders:42'); // 'orders-42_h' + 24 hex digits
 */
export function executionNameForJob(jobId: string): string {
  if (PLAIN_NAME.test(jobId) && jobId.length <= EXECUTION_NAME_BASE_MAX_LENGTH) return jobId;
  const hash = createHash('sha256').update(jobId, 'utf16le').digest('hex').slice(0, NAME_HASH_HEX_DIGITS);
  const prefix = jobId.replace(/[^A-Za-z0-9-]/g, '-').slice(0, EXECUTION_NAME_BASE_MAX_LENGTH - NAME_HASH_HEX_DIGITS - 2);
  return `${prefix}_h${hash}`;
}

/**
 * The execution name of a job's poll loop in a given generation: generation 0 is the name
 * the start Lambda uses ({@link executionNameForJob}); each hand-over to a successor
 * execution (continue-as-new) adds one.
 *
 * **Scheme.** A name is a base, plus `_g<generation>` for generations 1 and up:
 *
 * - plain base: the job id itself, when it matches `^[A-Za-z0-9-]+$` and has at most 72
 *   characters (`orders-42`);
 * - hashed base, for every other id: `<prefix>_h<24 hex>`, the hex being the first 96 bits
 *   of SHA-256 over the id's UTF-16 code units, the prefix the id with every character
 *   outside `[A-Za-z0-9-]` replaced by `-`, cut to 46 characters so the base has at most 72
 *   (`orders:42` becomes `orders-42_h` and 24 hex digits);
 * - successor: `<base>_g<n>` with `n` in decimal without leading zeros, 1 <= n <= 999,999:
 *   at most 72 + 8 = 80 characters.
 *
 * **Injectivity.** `_` never occurs in a plain base nor in a prefix, so a name holds no `_`
 * (plain, generation 0), or ends with `_h<24 hex>` (hashed, generation 0), or ends with
 * `_g<digits>` after a base of one of those two forms. Reading the text after the last `_`
 * therefore tells, from the name alone, the generation (`h...`: 0; `g<digits>`: the
 * number, which decimal without leading zeros writes one way only) and the base (all
 * before that `_` for a successor). A plain base is the job id itself; a hashed base
 * carries 96 bits of the id's SHA-256, so two different ids with the same hashed base are
 * a (truncated) SHA-256 collision, and a plain base never equals a hashed one (no `_`).
 * So equal names mean equal (job id, generation), up to such a collision (birthday bound:
 * about n^2 / 2^97 for n hashed ids, 6e-12 for a billion). For instance job `report`'s
 * first successor is `report_g1`, while the job ids `report-g1` and `report_g1` are named
 * `report-g1` (plain) and `report-g1_h...` (hashed: it holds a `_`); likewise an id shaped
 * like a hashed name (`a_h<24 hex>`, or `a_b-<24 hex>` against `a.b`) is hashed itself.
 *
 * The hash covers UTF-16 code units, not UTF-8: UTF-8 turns every lone surrogate into
 * U+FFFD, which would give `\uD800` and `\uD801` the same hash. (Job ids are ASCII by
 * {@link JOB_ID_PATTERN}; the names stay injective for any string anyway.)
 *
 * Names use only `[A-Za-z0-9_-]`, which Step Functions accepts, and depend on nothing but
 * their arguments, so a retried start or hand-over asks for the same name (and Step
 * Functions refuses a second execution under it).
 *
 * @throws RangeError when `generation` is not an integer from 0 to {@link MAX_EXECUTION_GENERATION}
 *
 * @example
 * executionNameForGeneration('orders-42', 0); // 'orders-42'
 * executionNameForGeneration('orders-42', 3); // 'orders-42_g3'
 * executionNameForGeneration('orders_42', 3); // 'orders-42_h' + 24 hex digits + '_g3'
 */
export function executionNameForGeneration(jobId: string, generation: number): string {
  if (!Number.isInteger(generation) || generation < 0 || generation > MAX_EXECUTION_GENERATION) {
    throw new RangeError(`an execution generation is an integer from 0 to ${MAX_EXECUTION_GENERATION}, got ${generation}`);
  }
  const base = executionNameForJob(jobId);
  return generation === 0 ? base : `${base}_g${generation}`;
}

/** What {@link parseExecutionName} reads from a name. */
export interface ParsedExecutionName {
  /** The generation-0 name (a plain job id or a hashed base). */
  readonly base: string;
  readonly generation: number;
  /** `plain`: the base is the job id; `hashed`: it is `<prefix>_h<hash>`. */
  readonly kind: 'plain' | 'hashed';
}

const PARSED_NAME = /^(?:([A-Za-z0-9-]+)|([A-Za-z0-9-]*_h[0-9a-f]{24}))(?:_g([1-9][0-9]{0,5}))?$/;

/**
 * Reads a name made by {@link executionNameForGeneration} back into its base, kind and
 * generation, or `undefined` for a string no job id and generation produce under this
 * scheme. Only the decoding the injectivity argument relies on; the job id itself of a
 * hashed name is not recoverable.
 */
export function parseExecutionName(name: string): ParsedExecutionName | undefined {
  const match = PARSED_NAME.exec(name);
  if (match === null) return undefined;
  const [, plain, hashed, generation] = match;
  const base = plain ?? hashed;
  if (base === undefined) return undefined;
  if (plain !== undefined && plain.length > EXECUTION_NAME_BASE_MAX_LENGTH) return undefined;
  if (hashed !== undefined && hashed.length > EXECUTION_NAME_BASE_MAX_LENGTH) return undefined;
  return { base, generation: generation === undefined ? 0 : Number(generation), kind: plain === undefined ? 'hashed' : 'plain' };
}
