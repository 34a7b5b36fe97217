import { describe, expect, it } from 'vitest';
import { InvalidMessageError } from '../../lambdas/contract/errors';
import { JOB_REQUEST_LIMITS, jsonDepth, parseJobMessage } from '../../lambdas/contract/job-request';

const MESSAGE_ID = '059f36b4-87a3-44ab-83d2-661975830a7d';
const valid = { job_id: 'job-1', chatbot_id: 'bot_1', input_data: { query: 'hi' } };

function nested(depth: number): unknown {
  let value: unknown = 'leaf';
  for (let i = 0; i < depth; i += 1) value = { child: value };
  return value;
}

function parseError(body: string): InvalidMessageError {
  try {
    parseJobMessage(body, MESSAGE_ID);
  } catch (error) {
    if (error instanceof InvalidMessageError) return error;
    throw error;
  }
  throw new Error('expected an InvalidMessageError');
}

describe('parseJobMessage', () => {
  it('accepts a direct SQS job request and keeps its fields', () => {
    // Act
    const request = parseJobMessage(JSON.stringify({ ...valid, metadata: { team: 'a' }, timeout_seconds: 60 }), MESSAGE_ID);

    // Assess
    expect(request).toEqual({
      job_id: 'job-1',
      chatbot_id: 'bot_1',
      input_data: { query: 'hi' },
      metadata: { team: 'a' },
      timeout_seconds: 60,
      delivery: 'sqs',
    });
  });

  it('defaults job_id to the SQS message id and metadata to {}', () => {
    const request = parseJobMessage(JSON.stringify({ chatbot_id: 'bot', input_data: {} }), MESSAGE_ID);

    expect(request.job_id).toBe(MESSAGE_ID);
    expect(request.metadata).toEqual({});
    expect(request).not.toHaveProperty('timeout_seconds');
  });

  it('unwraps an EventBridge event delivered by a rule, using the event id as the default job_id', () => {
    // Prepare
    const event = {
      version: '0',
      id: 'evt-123',
      'detail-type': 'Job Requested',
      source: 'com.example',
      detail: { chatbot_id: 'bot', input_data: { a: 1 } },
    };

    // Act
    const request = parseJobMessage(JSON.stringify(event), MESSAGE_ID);

    // Assess
    expect(request.job_id).toBe('evt-123');
    expect(request.delivery).toBe('eventbridge');
    expect(request.input_data).toEqual({ a: 1 });
  });

  it('prefers the job_id inside an EventBridge detail over the event id', () => {
    const event = { id: 'evt-123', 'detail-type': 'x', source: 'y', detail: { ...valid } };

    expect(parseJobMessage(JSON.stringify(event), MESSAGE_ID).job_id).toBe('job-1');
  });

  describe.each([
    ['empty body', '', /empty/, undefined],
    ['not JSON', '{"chatbot_id":', /not valid JSON/, undefined],
    ['null', 'null', /must be a JSON object, got null/, undefined],
    ['an array', '[1,2]', /got an array/, undefined],
    ['a string', '"hello"', /got a string/, undefined],
    ['a number', '42', /got a number/, undefined],
    ['missing chatbot_id', JSON.stringify({ job_id: 'j1', input_data: {} }), /chatbot_id/, 'j1'],
    ['missing input_data', JSON.stringify({ job_id: 'j1', chatbot_id: 'b' }), /input_data/, 'j1'],
    ['input_data not an object', JSON.stringify({ job_id: 'j1', chatbot_id: 'b', input_data: 'text' }), /input_data/, 'j1'],
    ['input_data an array', JSON.stringify({ job_id: 'j1', chatbot_id: 'b', input_data: [1] }), /input_data/, 'j1'],
    ['chatbot_id with ../', JSON.stringify({ job_id: 'j1', chatbot_id: '../admin', input_data: {} }), /chatbot_id/, 'j1'],
    ['chatbot_id with ?', JSON.stringify({ job_id: 'j1', chatbot_id: 'a?b', input_data: {} }), /chatbot_id/, 'j1'],
    ['chatbot_id with #', JSON.stringify({ job_id: 'j1', chatbot_id: 'a#b', input_data: {} }), /chatbot_id/, 'j1'],
    ['chatbot_id with %2F', JSON.stringify({ job_id: 'j1', chatbot_id: 'a%2Fb', input_data: {} }), /chatbot_id/, 'j1'],
    ['chatbot_id with NUL', JSON.stringify({ job_id: 'j1', chatbot_id: 'a\u0000b', input_data: {} }), /chatbot_id/, 'j1'],
    ['chatbot_id with a Cyrillic look-alike', JSON.stringify({ job_id: 'j1', chatbot_id: 'b\u043Et', input_data: {} }), /chatbot_id/, 'j1'],
    ['chatbot_id 10 KB long', JSON.stringify({ job_id: 'j1', chatbot_id: 'a'.repeat(10_240), input_data: {} }), /chatbot_id/, 'j1'],
    ['chatbot_id a number', JSON.stringify({ job_id: 'j1', chatbot_id: 7, input_data: {} }), /chatbot_id/, 'j1'],
    ['an unknown field', JSON.stringify({ ...valid, base_url: 'https://evil.example' }), /base_url/, 'job-1'],
    ['timeout_seconds negative', JSON.stringify({ ...valid, timeout_seconds: -5 }), /timeout_seconds/, 'job-1'],
    ['timeout_seconds fractional', JSON.stringify({ ...valid, timeout_seconds: 1.5 }), /timeout_seconds/, 'job-1'],
    ['timeout_seconds huge', JSON.stringify({ ...valid, timeout_seconds: 1e12 }), /timeout_seconds/, 'job-1'],
    ['timeout_seconds a string', JSON.stringify({ ...valid, timeout_seconds: '60' }), /timeout_seconds/, 'job-1'],
    ['metadata an array', JSON.stringify({ ...valid, metadata: [1] }), /metadata/, 'job-1'],
  ])('rejects %s', (_name, body, message, jobId) => {
    it('with a specific InvalidMessageError that names the problem', () => {
      const error = parseError(body);

      expect(error.message).toMatch(message);
      expect(error.code).toBe('INVALID_MESSAGE');
      expect(error.retryable).toBe(false);
      expect(error.jobId).toBe(jobId);
    });
  });

  it.each([
    ['with a slash', 'a/b'],
    ['with a space', 'a b'],
    ['too long', 'j'.repeat(129)],
    ['a number', 12],
    ['empty', ''],
  ])('rejects a job_id %s and reports no job id', (_name, jobId) => {
    const error = parseError(JSON.stringify({ ...valid, job_id: jobId }));

    expect(error.message).toMatch(/job_id/);
    expect(error.jobId).toBeUndefined();
  });

  it('salvages a valid chatbot_id and metadata from an otherwise invalid request for the Failed event', () => {
    const error = parseError(JSON.stringify({ job_id: 'j9', chatbot_id: 'bot', metadata: { trace: 't-1' } }));

    expect(error.context).toEqual({ jobId: 'j9', chatbotId: 'bot', metadata: { trace: 't-1' }, delivery: 'sqs' });
  });

  it('never echoes submitted values in the error message', () => {
    const secret = 'SECRET-VALUE-123';
    const error = parseError(JSON.stringify({ job_id: 'j1', chatbot_id: `${secret}/x`, input_data: {} }));

    expect(error.message).not.toContain(secret);
  });

  describe('limits', () => {
    it('rejects a body over the SQS message size before parsing it', () => {
      const body = JSON.stringify({ ...valid, input_data: { blob: 'x'.repeat(JOB_REQUEST_LIMITS.MAX_MESSAGE_BYTES) } });

      expect(parseError(body).message).toMatch(/over the 262144 byte limit/);
    });

    it('rejects input_data over its byte limit', () => {
      const body = JSON.stringify({ ...valid, input_data: { blob: 'x'.repeat(JOB_REQUEST_LIMITS.MAX_INPUT_DATA_BYTES) } });

      expect(parseError(body).message).toMatch(/input_data is \d+ bytes, over the limit/);
    });

    it('accepts input_data at its depth limit and rejects it one level deeper', () => {
      const atLimit = { ...valid, input_data: nested(JOB_REQUEST_LIMITS.MAX_INPUT_DATA_DEPTH) };
      const overLimit = { ...valid, input_data: nested(JOB_REQUEST_LIMITS.MAX_INPUT_DATA_DEPTH + 1) };

      expect(() => parseJobMessage(JSON.stringify(atLimit), MESSAGE_ID)).not.toThrow();
      expect(parseError(JSON.stringify(overLimit)).message).toMatch(/input_data is nested 33 levels deep/);
    });

    it('rejects oversized metadata, and does not salvage it for the event', () => {
      const error = parseError(JSON.stringify({ ...valid, metadata: { blob: 'x'.repeat(JOB_REQUEST_LIMITS.MAX_METADATA_BYTES) } }));

      expect(error.message).toMatch(/metadata is \d+ bytes/);
      expect(error.context.metadata).toBeUndefined();
    });

    it('rejects metadata nested deeper than its limit', () => {
      const error = parseError(JSON.stringify({ ...valid, metadata: nested(JOB_REQUEST_LIMITS.MAX_METADATA_DEPTH + 1) }));

      expect(error.message).toMatch(/metadata is nested 9 levels deep/);
    });

    it('survives a very deeply nested body without a stack overflow', () => {
      const body = `{"job_id":"j1","chatbot_id":"b","input_data":${'['.repeat(50_000)}${']'.repeat(50_000)}}`;

      expect(parseError(body).message).toMatch(/input_data/);
    });
  });

  describe.each([
    ['detail not an object', { id: 'e1', 'detail-type': 'x', source: 's', detail: 'text' }, /detail/],
    ['no id', { 'detail-type': 'x', source: 's', detail: valid }, /\bid\b/],
    ['an invalid id', { id: 'a b', 'detail-type': 'x', source: 's', detail: valid }, /\bid\b/],
    ['no source', { id: 'e1', 'detail-type': 'x', detail: valid }, /source/],
  ])('rejects a malformed EventBridge envelope: %s', (_name, envelope, message) => {
    it('names the envelope problem', () => {
      const error = parseError(JSON.stringify(envelope));

      expect(error.message).toMatch(/malformed EventBridge envelope/);
      expect(error.message).toMatch(message);
      expect(error.context.delivery).toBe('eventbridge');
    });
  });
});

describe('jsonDepth', () => {
  it.each([
    ['a scalar', 'x', 0],
    ['an empty object', {}, 1],
    ['an object of scalars', { a: 1, b: 'c' }, 1],
    ['nested arrays', [[[1]]], 3],
    ['mixed', { a: [{ b: null }] }, 3],
  ])('measures %s', (_name, value, depth) => {
    expect(jsonDepth(value)).toBe(depth);
  });
});

describe('parseIntakeMessage: data passes through unchanged', () => {
  it('keeps a "__proto__" key in input_data and metadata (as JSON.parse gives it), directly and in an EventBridge envelope', () => {
    const direct = '{"chatbot_id":"b","input_data":{"__proto__":{"x":1},"q":"hi"},"metadata":{"__proto__":{"m":2}}}';
    const routed = `{"id":"e1","detail-type":"x","source":"s","detail":${direct}}`;

    for (const body of [direct, routed]) {
      const request = parseJobMessage(body, MESSAGE_ID);
      expect(JSON.stringify(request.input_data)).toBe('{"__proto__":{"x":1},"q":"hi"}');
      expect(JSON.stringify(request.metadata)).toBe('{"__proto__":{"m":2}}');
    }
  });

  it('reports the job id of a malformed cancel request (for the DLQ attributes)', () => {
    const error = parseError(JSON.stringify({ action: 'cancel', job_id: 'ab', extra: 1 }));

    expect(error.message).toMatch(/invalid cancel request/);
    expect(error.jobId).toBe('ab');
  });
});
