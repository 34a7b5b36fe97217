import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EXECUTION_NAME_MAX_LENGTH, executionNameForJob, JOB_ID_PATTERN, URL_IDENTIFIER_PATTERN } from '../../lambdas/contract/identifiers';

/** Characters Step Functions refuses in execution names (whitespace, brackets, wildcards, punctuation, controls). */
const STEP_FUNCTIONS_FORBIDDEN = /[\s<>{}[\]?*"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f]/;

describe('executionNameForJob', () => {
  it('keeps a short job id made of letters, digits and dashes as is', () => {
    expect(executionNameForJob('job-42-a')).toBe('job-42-a');
  });

  it('hashes a job id with an underscore (the separator of hashed and successor names)', () => {
    expect(executionNameForJob('job-42_a')).toMatch(/^job-42-a_h[0-9a-f]{24}$/);
  });

  it.each([
    ['a colon', 'orders:42'],
    ['a dot', 'orders.42'],
    ['128 characters', 'a'.repeat(128)],
  ])('maps a job id with %s to a valid, hashed name', (_name, jobId) => {
    const name = executionNameForJob(jobId);

    expect(name).not.toBe(jobId);
    expect(name.length).toBeLessThanOrEqual(EXECUTION_NAME_MAX_LENGTH);
    expect(name).not.toMatch(STEP_FUNCTIONS_FORBIDDEN);
  });

  it('is deterministic and never maps two valid job ids to the same name', () => {
    fc.assert(
      fc.property(fc.stringMatching(JOB_ID_PATTERN), fc.stringMatching(JOB_ID_PATTERN), (a, b) => {
        expect(executionNameForJob(a)).toBe(executionNameForJob(a));
        expect(executionNameForJob(a).length).toBeLessThanOrEqual(EXECUTION_NAME_MAX_LENGTH);
        expect(executionNameForJob(a)).not.toMatch(STEP_FUNCTIONS_FORBIDDEN);
        if (a !== b) expect(executionNameForJob(a)).not.toBe(executionNameForJob(b));
      }),
    );
  });

  it('separates ids that differ only in characters the name replaces', () => {
    expect(executionNameForJob('a.b')).not.toBe(executionNameForJob('a:b'));
  });
});

describe('URL_IDENTIFIER_PATTERN', () => {
  it.each(['../x', 'a?b', 'a#b', '%2F', '%2e%2e', 'a/b', 'a b', 'a\u0000b', 'b\u043Et', '', '-lead', 'x'.repeat(129)])(
    'refuses %j',
    (value) => {
      expect(URL_IDENTIFIER_PATTERN.test(value)).toBe(false);
    },
  );

  it.each(['bot', 'Bot_1-x', 'a'.repeat(128), '0'])('accepts %j', (value) => {
    expect(URL_IDENTIFIER_PATTERN.test(value)).toBe(true);
  });
});
