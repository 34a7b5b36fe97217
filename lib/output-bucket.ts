import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

/** Props of {@link OutputBucket}. */
export interface OutputBucketProps {
  /** How long stored outputs are kept (they expire with the job records). */
  readonly expiration: Duration;
  /**
   * Removal policy of the bucket.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Overrides of the bucket.
   * @default - none
   */
  readonly bucketProps?: Omit<s3.BucketProps, 'encryption' | 'enforceSSL' | 'blockPublicAccess'>;
}

/**
 * Bucket for final outputs too large to carry in an event: encrypted, SSL-only, private,
 * objects expiring after the job retention. Outcome events point into it with
 * `output_location`; grant subscribers read access with `bucket.grantRead(...)`.
 */
export class OutputBucket extends Construct {
  public readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: OutputBucketProps) {
    super(scope, id);
    this.bucket = new s3.Bucket(this, 'Bucket', {
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      ...props.bucketProps,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      lifecycleRules: [
        { id: 'expire-outputs', expiration: props.expiration, abortIncompleteMultipartUploadAfter: Duration.days(1) },
        ...(props.bucketProps?.lifecycleRules ?? []),
      ],
    });
  }
}
