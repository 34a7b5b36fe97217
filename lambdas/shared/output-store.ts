import { createHash } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { OutputLocation } from './job-store';

/**
 * Stores final outputs too large to carry in a job record, a state or an event, in the
 * construct's bucket (encrypted, SSL-only, expiring). Objects are keyed by job and
 * execution, so a retried poll overwrites the same object with the same bytes.
 */
export class OutputStore {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
  ) {}

  async put(jobId: string, executionId: string, json: string): Promise<OutputLocation> {
    const body = Buffer.from(json, 'utf8');
    const digest = createHash('sha256').update(body).digest();
    const sha256 = digest.toString('hex');
    const key = `outputs/${encodeURIComponent(jobId)}/${encodeURIComponent(executionId)}.json`;
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentType: 'application/json',
        ChecksumSHA256: digest.toString('base64'),
        Metadata: { 'job-id': jobId, sha256 },
      }),
    );
    return { bucket: this.bucket, key, size: body.byteLength, sha256 };
  }
}
