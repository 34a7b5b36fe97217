import { createHash } from 'node:crypto';
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { JOB_STATUS, type JobStatus } from '../contract/constants';
import type { OutputLocation, StatusFields } from '../contract/job-record';

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

/** Where outputs go and how large they may be inline (poll, reconcile and sweep functions). */
export interface OutputPlacement {
  /** Where larger outputs go. Without it, a larger output fails the job with OUTPUT_TOO_LARGE. */
  readonly outputs?: OutputStore;
  /** Largest `final_output` (JSON bytes) carried inline in records and events. */
  readonly maxInlineOutputBytes: number;
  /** Largest output stored in S3 (bytes). @default DEFAULT_MAX_OUTPUT_BYTES */
  readonly maxOutputBytes?: number;
}

/** Default of {@link OutputPlacement.maxOutputBytes}: 64 MiB. */
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** The largest output a job with this placement accepts (inline only without a store). */
export function acceptedOutputBytes(placement: OutputPlacement): number {
  return placement.outputs ? (placement.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES) : placement.maxInlineOutputBytes;
}

/**
 * A COMPLETED output over the inline limit goes to the store and the fields keep its
 * location instead; anything else is returned unchanged. Store errors propagate.
 */
export async function placeOutput(
  placement: OutputPlacement,
  job: { readonly job_id: string; readonly execution_id: string },
  status: JobStatus,
  fields: StatusFields,
  outputBytes: number | undefined,
): Promise<StatusFields> {
  const { outputs, maxInlineOutputBytes } = placement;
  if (status !== JOB_STATUS.COMPLETED || outputs === undefined || outputBytes === undefined || outputBytes <= maxInlineOutputBytes)
    return fields;
  const { final_output: output, ...rest } = fields;
  const location = await outputs.put(job.job_id, job.execution_id, JSON.stringify(output ?? null));
  return { ...rest, output_location: location };
}
