/**
 * Where the job messages of a run come from: the sample messages shipped in
 * `events/samples/jobs/*.json` (one message body per file), or a file with one raw message
 * body per line (`--jobs FILE`, valid or not).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder of sample job messages. */
export const SAMPLE_JOBS_DIR = fileURLToPath(new URL('../../events/samples/jobs', import.meta.url));

export interface JobInput {
  /** Where the body came from: a file name, or `FILE:line`. */
  readonly source: string;
  readonly body: string;
}

/** The job input cannot be read; the message says why. */
export class JobInputError extends Error {
  override readonly name = 'JobInputError';
}

/** Each `*.json` file of `dir` (sorted by name) is one message body, sent as is. */
export function loadSampleJobs(dir: string = SAMPLE_JOBS_DIR): JobInput[] {
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((name) => name.endsWith('.json'))
      .sort();
  } catch {
    throw new JobInputError(
      `the sample job messages are missing: no folder ${dir} (expected events/samples/jobs/*.json; or pass --jobs FILE)`,
    );
  }
  if (names.length === 0) throw new JobInputError(`the sample job folder ${dir} has no *.json files (or pass --jobs FILE)`);
  return names.map((name) => ({ source: name, body: readFileSync(join(dir, name), 'utf8') }));
}

/**
 * Each line of `file` is one raw message body (a trailing `\r` is removed). Blank lines are
 * skipped: SQS cannot carry an empty message body.
 */
export function loadJobLines(file: string): JobInput[] {
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw new JobInputError(`--jobs ${file} is a folder, not a file`);
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (error instanceof JobInputError) throw error;
    throw new JobInputError(`cannot read --jobs ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const jobs: JobInput[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() !== '') jobs.push({ source: `${file}:${index + 1}`, body: line });
  });
  if (jobs.length === 0) throw new JobInputError(`--jobs ${file} has no non-blank lines`);
  return jobs;
}
