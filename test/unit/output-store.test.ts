import { createHash } from 'node:crypto';
import { PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { OutputStore } from '../../lambdas/aws/output-store';

const BUCKET = 'orchestrator-outputs';
const s3Mock = mockClient(S3Client);
const outputs = new OutputStore(new S3Client({ region: 'us-east-1' }), BUCKET);

/** The body of the n-th PutObject sent, as bytes. */
function sentBody(index = 0): Buffer {
  const body = s3Mock.commandCalls(PutObjectCommand)[index]?.args[0].input.Body;
  if (!(body instanceof Uint8Array)) throw new Error(`PutObject ${index} was not sent with a byte body`);
  return Buffer.from(body);
}

beforeEach(() => {
  s3Mock.reset();
  s3Mock.on(PutObjectCommand).resolves({ ETag: '"etag"' });
});

afterAll(() => {
  s3Mock.restore();
});

describe('OutputStore.put', () => {
  it('puts the JSON under outputs/<job>/<execution>.json with its SHA-256 checksum and returns its location', async () => {
    // Prepare: SHA-256("abc") is a published test vector
    const json = 'abc';

    // Act
    const location = await outputs.put('job-1', 'exec_1', json);

    // Assess
    expect(location).toEqual({
      bucket: BUCKET,
      key: 'outputs/job-1/exec_1.json',
      size: 3,
      sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    });
    expect(s3Mock).toHaveReceivedCommandOnce(PutObjectCommand);
    expect(s3Mock).toHaveReceivedCommandWith(PutObjectCommand, {
      Bucket: BUCKET,
      Key: 'outputs/job-1/exec_1.json',
      ContentType: 'application/json',
      ChecksumSHA256: 'ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=',
      Metadata: { 'job-id': 'job-1', sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad' },
    });
    expect(sentBody().toString('utf8')).toBe('abc');
  });

  it('measures size in UTF-8 bytes and hashes exactly the bytes it sends', async () => {
    // Prepare
    const json = JSON.stringify({ text: 'Grüße, 世界 🌍', n: [1, 2, 3] });

    // Act
    const location = await outputs.put('job-1', 'exec_1', json);

    // Assess
    const body = sentBody();
    expect(body.toString('utf8')).toBe(json);
    expect(location.size).toBe(body.byteLength);
    expect(location.size).toBeGreaterThan(json.length);
    expect(location.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    const input = s3Mock.commandCalls(PutObjectCommand)[0]!.args[0].input;
    expect(input.ChecksumSHA256).toBe(Buffer.from(location.sha256, 'hex').toString('base64'));
  });

  it.each([
    ['a job id with dots and colons', 'order:42.v1', 'exec_1', 'outputs/order%3A42.v1/exec_1.json'],
    [
      'an EventBridge event id',
      '6f8b1c2e-0a1b-4c5d-8e9f-000000000001',
      'exec-9',
      'outputs/6f8b1c2e-0a1b-4c5d-8e9f-000000000001/exec-9.json',
    ],
  ])('keys %s safely', async (_name, jobId, executionId, key) => {
    const location = await outputs.put(jobId, executionId, '{}');

    expect(location.key).toBe(key);
    expect(s3Mock).toHaveReceivedCommandWith(PutObjectCommand, { Key: key, Metadata: expect.objectContaining({ 'job-id': jobId }) });
  });

  it('a retried put of the same output writes the same key, bytes and checksum', async () => {
    // Act
    const first = await outputs.put('job-1', 'exec_1', '{"answer":42}');
    const second = await outputs.put('job-1', 'exec_1', '{"answer":42}');

    // Assess
    expect(second).toEqual(first);
    const [a, b] = s3Mock.commandCalls(PutObjectCommand).map((call) => call.args[0].input);
    expect(b?.Key).toBe(a?.Key);
    expect(b?.ChecksumSHA256).toBe(a?.ChecksumSHA256);
    expect(sentBody(1).equals(sentBody(0))).toBe(true);
  });

  it('different executions of one job get different keys', async () => {
    const first = await outputs.put('job-1', 'exec_1', '1');
    const second = await outputs.put('job-1', 'exec_2', '1');

    expect(first.key).not.toBe(second.key);
  });

  it('an empty output is stored with the SHA-256 of no bytes', async () => {
    const location = await outputs.put('job-1', 'exec_1', '');

    expect(location).toMatchObject({ size: 0, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' });
    expect(s3Mock).toHaveReceivedCommandWith(PutObjectCommand, { ChecksumSHA256: '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' });
  });

  it('an S3 failure propagates unchanged and no location is returned', async () => {
    // Prepare
    const fault = new S3ServiceException({
      name: 'SlowDown',
      $fault: 'server',
      $metadata: { httpStatusCode: 503 },
      message: 'Please reduce your request rate.',
    });
    s3Mock.on(PutObjectCommand).rejects(fault);

    // Act / Assess
    await expect(outputs.put('job-1', 'exec_1', '{}')).rejects.toBe(fault);
  });
});
