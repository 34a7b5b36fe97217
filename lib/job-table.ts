import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import { JOB_TABLE } from '../lambdas/contract/constants';

/** Attributes copied into the status index, so listing jobs by status needs no table reads. */
export const STATUS_INDEX_PROJECTED_ATTRIBUTES = [
  'chatbot_id',
  'execution_id',
  'accepted_at',
  'deadline_at',
  'error_code',
  'event_published_at',
] as const;

/** Props of {@link JobTable}. */
export interface JobTableProps {
  /**
   * What happens to the table when it leaves the stack.
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
  /**
   * Overrides merged over the defaults. The key schema, TTL attribute and status index are
   * part of the contract with the Lambdas and cannot be changed.
   * @default - none
   */
  readonly tableProps?: Omit<dynamodb.TableProps, 'partitionKey' | 'sortKey' | 'timeToLiveAttribute'>;
}

/**
 * The job table: one item per job (`job_id`), on-demand, point-in-time recovery, AWS-managed
 * encryption, expiring items by TTL, a `status` / `updated_at` index so an operator can
 * list the jobs in a given status, and a sparse `pending-cancels` index of the jobs whose
 * Waterflai executions the sweeper still has to cancel.
 *
 * @example
 * const jobs = new JobTable(this, 'Jobs', { removalPolicy: RemovalPolicy.DESTROY });
 * jobs.table.grantReadData(reportFunction);
 */
export class JobTable extends Construct {
  public readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string, props: JobTableProps = {}) {
    super(scope, id);
    this.table = new dynamodb.Table(this, 'Table', {
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      ...props.tableProps,
      partitionKey: { name: JOB_TABLE.PARTITION_KEY, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: JOB_TABLE.TTL_ATTRIBUTE,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: JOB_TABLE.STATUS_INDEX,
      partitionKey: { name: JOB_TABLE.STATUS_INDEX_PARTITION_KEY, type: dynamodb.AttributeType.STRING },
      sortKey: { name: JOB_TABLE.STATUS_INDEX_SORT_KEY, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: [...STATUS_INDEX_PROJECTED_ATTRIBUTES],
    });
    // Sparse: only jobs with Waterflai executions still to cancel carry the key.
    this.table.addGlobalSecondaryIndex({
      indexName: JOB_TABLE.PENDING_CANCEL_INDEX,
      partitionKey: { name: JOB_TABLE.PENDING_CANCEL_INDEX_PARTITION_KEY, type: dynamodb.AttributeType.STRING },
      sortKey: { name: JOB_TABLE.PENDING_CANCEL_INDEX_SORT_KEY, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    });
  }
}
