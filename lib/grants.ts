import { Stack } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { JOB_TABLE } from '../lambdas/contract/constants';

/**
 * The DynamoDB actions the job store (`lambdas/aws/job-store.ts`) sends, by command:
 * `GetCommand` -> GetItem, `PutCommand` -> PutItem, `UpdateCommand` -> UpdateItem,
 * `QueryCommand` with an `IndexName` -> Query on that index. Nothing sends DeleteItem,
 * BatchWriteItem, BatchGetItem, Scan, ConditionCheckItem or DescribeTable.
 */
export const JOB_TABLE_ACTION = {
  GET_ITEM: 'dynamodb:GetItem',
  PUT_ITEM: 'dynamodb:PutItem',
  UPDATE_ITEM: 'dynamodb:UpdateItem',
  QUERY: 'dynamodb:Query',
} as const;
export type JobTableAction = (typeof JOB_TABLE_ACTION)[keyof typeof JOB_TABLE_ACTION];

/** What one function's code sends to the job table. */
export interface JobTableAccess {
  /** Item actions on the table itself. */
  readonly item: readonly JobTableAction[];
  /** Indexes the code queries (`Query` on `<table arn>/index/<name>` only). */
  readonly queriedIndexes: readonly string[];
}

const { GET_ITEM, PUT_ITEM, UPDATE_ITEM } = JOB_TABLE_ACTION;

/**
 * The job-table access of each function, from the code paths that send it:
 *
 * - start (`JobStarter`): PutItem for the conditional creates (`claim`, `createTombstone`,
 *   `createRejected`), UpdateItem for every state change (`takeOverClaim`, `saveExecutionId`,
 *   `saveStateMachineExecution`, `applyStatus`, `markCancelRequested`, `rejectClaimed`,
 *   `markEventPublished`, `markDeadLettered`), GetItem to read a job back (`get`).
 * - poll (`JobPoller`): UpdateItem (`applyStatus`, `recordHandOver`), GetItem (the record
 *   as it stands after a refused status update).
 * - finish (`JobFinisher`): UpdateItem (`applyStatus` on the failure path,
 *   `markEventPublished`), GetItem (`get`).
 * - reconcile (`ExecutionReconciler` via `settleFromOutside`): GetItem, UpdateItem.
 * - sweep (`JobSweeper`): Query on the status index (`listOverdue`, `listUnannounced`) and
 *   on the pending-cancels index (`listPendingCancels`), then GetItem and UpdateItem per job
 *   (`settleFromOutside`, `announceOutcome`, `resolvePendingCancel`,
 *   `recordCancelAttemptFailed`).
 *
 * A function that starts sending another action needs it added here; `npm test`
 * (test/e2e/iam.test.ts) fails until it is, because every SDK call the handlers make on the
 * local runtime is evaluated against the synthesized policies.
 */
export const JOB_TABLE_ACCESS = {
  start: { item: [GET_ITEM, PUT_ITEM, UPDATE_ITEM], queriedIndexes: [] },
  poll: { item: [GET_ITEM, UPDATE_ITEM], queriedIndexes: [] },
  finish: { item: [GET_ITEM, UPDATE_ITEM], queriedIndexes: [] },
  reconcile: { item: [GET_ITEM, UPDATE_ITEM], queriedIndexes: [] },
  sweep: { item: [GET_ITEM, UPDATE_ITEM], queriedIndexes: [JOB_TABLE.STATUS_INDEX, JOB_TABLE.PENDING_CANCEL_INDEX] },
} as const satisfies Readonly<Record<string, JobTableAccess>>;

/** Prefix of the S3 keys the poll function writes large outputs under (`OutputStore.put`). */
export const OUTPUT_KEY_PREFIX = 'outputs/';

/** The functions whose roles {@link grantFunctionAccess} grants to. */
export interface OrchestratorFunctions {
  readonly start: iam.IGrantable;
  readonly poll: iam.IGrantable;
  readonly finish: iam.IGrantable;
  readonly reconcile: iam.IGrantable;
  readonly sweep: iam.IGrantable;
}

/** Props of {@link grantFunctionAccess}: the resources the functions use, and the functions. */
export interface FunctionAccessProps {
  readonly functions: OrchestratorFunctions;
  readonly table: dynamodb.ITable;
  readonly stateMachine: sfn.IStateMachine;
  readonly eventBus: events.IEventBus;
  readonly deadLetterQueue: sqs.IQueue;
  readonly apiKeySecret: secretsmanager.ISecret;
  readonly outputBucket: s3.IBucket;
}

/**
 * Grants each orchestrator function exactly the actions its code sends, on the
 * orchestrator's own resources only (least privilege, by evaluation: test/e2e/iam.test.ts
 * records every AWS SDK call the handlers make on the local runtime and evaluates each one
 * against these policies, and evaluates calls no role may make).
 *
 * | function  | job table                                   | other                                                                                 |
 * |-----------|---------------------------------------------|---------------------------------------------------------------------------------------|
 * | start     | GetItem, PutItem, UpdateItem                | states:StartExecution (poll loop), events:PutEvents (bus), sqs:SendMessage (DLQ), secretsmanager:GetSecretValue |
 * | poll      | GetItem, UpdateItem                         | s3:PutObject (`outputs/*`), secretsmanager:GetSecretValue                              |
 * | finish    | GetItem, UpdateItem                         | events:PutEvents                                                                      |
 * | reconcile | GetItem, UpdateItem                         | events:PutEvents, secretsmanager:GetSecretValue, s3:PutObject (`outputs/*`)           |
 * | sweep     | GetItem, UpdateItem, Query (`by-status`, `pending-cancels`) | events:PutEvents, secretsmanager:GetSecretValue, s3:PutObject (`outputs/*`) |
 *
 * Granted elsewhere, by the construct that owns the trigger or the resource:
 * - poll `states:StartExecution` on its own state machine (successor executions), by
 *   `PollStateMachine` (it builds the ARN from the name, to avoid a dependency cycle);
 * - start `sqs:ReceiveMessage`, `DeleteMessage`, `ChangeMessageVisibility` (the code defers a
 *   message with it), `GetQueueAttributes`, `GetQueueUrl` on the intake queue, by its
 *   `SqsEventSource`; likewise the reconcile function on its queue when it has one;
 * - every function `logs:CreateLogStream` / `logs:PutLogEvents` on its own log group.
 *
 * Customer-managed KMS keys, when a resource has one, get only what the calls need: the
 * table key encrypt/decrypt (as DynamoDB uses it for reads and writes), the secret key
 * `kms:Decrypt` through Secrets Manager only, the DLQ key `kms:GenerateDataKey` and
 * `kms:Decrypt` (what SendMessage to an SSE-KMS queue needs).
 *
 * @example
 * grantFunctionAccess({
 *   functions: { start, poll, finish, reconcile, sweep },
 *   table, stateMachine, eventBus, deadLetterQueue, apiKeySecret, outputBucket,
 * });
 */
export function grantFunctionAccess(props: FunctionAccessProps): void {
  const { functions: fn, table, stateMachine, eventBus, deadLetterQueue, apiKeySecret, outputBucket } = props;
  for (const role of ['start', 'poll', 'finish', 'reconcile', 'sweep'] as const) {
    grantJobTableAccess(table, fn[role], JOB_TABLE_ACCESS[role]);
  }

  // start: starts one poll-loop execution per job (`JobStarter.startStateMachine`).
  stateMachine.grantStartExecution(fn.start);

  // start (rejections, tombstones, cancels), finish (every outcome), reconcile and sweep
  // (jobs settled from outside, missing announcements): `OutcomePublisher.publish`.
  for (const grantee of [fn.start, fn.finish, fn.reconcile, fn.sweep]) eventBus.grantPutEventsTo(grantee);

  // start: copies a bad message to the DLQ with the reason (`JobStarter.sendToDeadLetterQueue`).
  grantSendMessageOnly(deadLetterQueue, fn.start);

  // The Waterflai API key (`cachedApiKey`): start POSTs executions and cancels superfluous
  // ones, poll GETs the status and opens the stream, reconcile and sweep cancel executions.
  for (const grantee of [fn.start, fn.poll, fn.reconcile, fn.sweep]) grantSecretValueOnly(apiKeySecret, grantee);

  // poll, and reconcile and sweep when the execution of a job they settle had completed:
  // store large final outputs (`OutputStore.put`); no read, list or delete, and only
  // PutObject (grantPut would add s3:Abort* and the like).
  for (const grantee of [fn.poll, fn.reconcile, fn.sweep]) {
    iam.Grant.addToPrincipal({ grantee, actions: ['s3:PutObject'], resourceArns: [outputBucket.arnForObjects(`${OUTPUT_KEY_PREFIX}*`)] });
  }
}

/**
 * Item actions on the table, Query on the named indexes only, and the table's
 * customer-managed key (if any) for encryption and decryption.
 */
export function grantJobTableAccess(table: dynamodb.ITable, grantee: iam.IGrantable, access: JobTableAccess): void {
  if (access.item.length > 0) {
    iam.Grant.addToPrincipal({ grantee, actions: [...access.item], resourceArns: [table.tableArn] });
  }
  if (access.queriedIndexes.length > 0) {
    iam.Grant.addToPrincipal({
      grantee,
      actions: [JOB_TABLE_ACTION.QUERY],
      resourceArns: access.queriedIndexes.map((index) => `${table.tableArn}/index/${index}`),
    });
  }
  // What Table.grantReadWriteData gives for the key; AWS-managed encryption needs none.
  table.encryptionKey?.grant(grantee, 'kms:Decrypt', 'kms:DescribeKey', 'kms:Encrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*');
}

/** `sqs:SendMessage` only (Queue.grantSendMessages adds GetQueueAttributes and GetQueueUrl). */
function grantSendMessageOnly(queue: sqs.IQueue, grantee: iam.IGrantable): void {
  iam.Grant.addToPrincipal({ grantee, actions: ['sqs:SendMessage'], resourceArns: [queue.queueArn] });
  queue.encryptionMasterKey?.grant(grantee, 'kms:GenerateDataKey', 'kms:Decrypt');
}

/**
 * `secretsmanager:GetSecretValue` only (ISecret.grantRead adds DescribeSecret). The resource
 * is the complete ARN, or the partial ARN with the `-??????` suffix Secrets Manager appends,
 * as `grantRead` would use; a customer-managed key may be used to decrypt through Secrets
 * Manager only.
 */
function grantSecretValueOnly(secret: secretsmanager.ISecret, grantee: iam.IGrantable): void {
  const resource = secret.secretFullArn ?? `${secret.secretArn}-??????`;
  iam.Grant.addToPrincipal({ grantee, actions: ['secretsmanager:GetSecretValue'], resourceArns: [resource] });
  secret.encryptionKey?.grantDecrypt(
    new kms.ViaServicePrincipal(`secretsmanager.${Stack.of(secret).region}.amazonaws.com`, grantee.grantPrincipal),
  );
}
