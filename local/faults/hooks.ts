/**
 * The fault hooks of the local runtime: where a fault can be injected below the handlers, and
 * what a hook may answer there. The handlers are never touched; each hook decides per request
 * and can only make a local service answer what the real AWS service could answer.
 *
 * | hook               | injection point                                   | what a fault does                                        |
 * | ------------------ | ------------------------------------------------- | -------------------------------------------------------- |
 * | `aws`              | the AWS JSON endpoint (`emulators/aws-json-server`) | the whole request fails (before or after it took effect) |
 * | `putEventsEntries` | EventBridge `PutEvents` (`emulators/eventbridge`) | one entry fails (`FailedEntryCount` > 0)                 |
 * | `dynamodb`         | the DynamoDB fault proxy (`dynamodb-proxy.ts`)      | a DynamoDB error in DynamoDB's shape, or a lost answer   |
 * | `duplicateDelivery`| the SQS event source (`runtime/sqs-event-source`) | a received record is delivered a second time             |
 *
 * This file imports nothing of ours: the emulators, the runtime and the chaos run all depend
 * on it, never the other way round.
 */
import type { SQSRecord } from 'aws-lambda';

// ---------------------------------------------------------------------------------------
// The AWS JSON endpoint (Step Functions, EventBridge, Secrets Manager)
// ---------------------------------------------------------------------------------------

/** An error answered in the AWS JSON error shape (`AwsServiceError` of the emulators is one). */
export interface AwsErrorAnswer {
  /** The error code, e.g. `ThrottlingException` (becomes `__type` and `x-amzn-errortype`). */
  readonly code: string;
  readonly message: string;
  /** HTTP status, e.g. 400 or 500. */
  readonly statusCode: number;
}

/**
 * A fault the endpoint answers instead of the operation's result. With `afterApplying` the
 * operation runs first and its result is thrown away: the caller gets an error although the
 * request took effect (a lost response).
 */
export interface AwsFault {
  readonly error: AwsErrorAnswer;
  /** Run the operation, then answer the error. @default false */
  readonly afterApplying?: boolean;
}

/**
 * Decides, per request, whether a fault strikes it. `operation` is `<prefix>.<Operation>`
 * (e.g. `AWSStepFunctions.StartExecution`), `input` the parsed request body. Called only for
 * requests the endpoint would serve (known service and operation, valid JSON).
 */
export type AwsFaultHook = (operation: string, input: Record<string, unknown>) => AwsFault | undefined;

// ---------------------------------------------------------------------------------------
// EventBridge PutEvents entries
// ---------------------------------------------------------------------------------------

/** A valid `PutEvents` entry, as the entry fault hook sees it. */
export interface PutEventsEntry {
  readonly source: string;
  readonly detailType: string;
  /** The parsed `Detail` (a JSON object). */
  readonly detail: Record<string, unknown>;
  readonly busName: string;
}

/** An entry-level PutEvents failure: the entry is not accepted and is reported with these codes. */
export interface PutEventsEntryFault {
  /** e.g. `InternalFailure`, `ThrottlingException`. */
  readonly ErrorCode: string;
  readonly ErrorMessage: string;
}

/**
 * Decides, per valid entry of a `PutEvents` call, whether it fails (a partial failure with
 * `FailedEntryCount` > 0). Not called for events the runtime publishes itself.
 */
export type PutEventsEntryFaultHook = (entry: PutEventsEntry) => PutEventsEntryFault | undefined;

// ---------------------------------------------------------------------------------------
// DynamoDB (through the fault proxy)
// ---------------------------------------------------------------------------------------

/** The DynamoDB errors the proxy can answer (their wire shapes: `DYNAMODB_ERRORS` in `dynamodb-proxy.ts`). */
export type DynamoDbErrorCode =
  | 'ProvisionedThroughputExceededException'
  | 'ThrottlingException'
  | 'RequestLimitExceeded'
  | 'InternalServerError';

/** What the hook decides for one request. */
export interface DynamoDbFault {
  /** Answer this DynamoDB error, or `reset` the connection without an answer. */
  readonly error: DynamoDbErrorCode | 'reset';
  /** Forward the request first (it takes effect), then answer the error. @default false */
  readonly afterApplying?: boolean;
}

/**
 * Decides, per request, whether a fault strikes it. `operation` is the DynamoDB operation
 * (`PutItem`, `UpdateItem`, `GetItem`, `Query`, ...), `input` the parsed request body.
 */
export type DynamoDbFaultHook = (operation: string, input: Record<string, unknown>) => DynamoDbFault | undefined;

/**
 * Told about every answer the caller got: DynamoDB's own errors (e.g.
 * `ConditionalCheckFailedException`) and injected ones (`reset` for a dropped connection).
 */
export type DynamoDbResponseObserver = (
  operation: string,
  status: number,
  errorCode: string | undefined,
  injected: boolean,
  input: Record<string, unknown>,
) => void;

// ---------------------------------------------------------------------------------------
// SQS (the event source mapping)
// ---------------------------------------------------------------------------------------

/**
 * Decides, per received record, whether it is delivered a second time (SQS and the event
 * source mapping are at-least-once): the delay in ms before the duplicate invocation, which
 * runs concurrently with the first, or undefined for none.
 */
export type DuplicateDeliveryHook = (record: SQSRecord) => number | undefined;

// ---------------------------------------------------------------------------------------
// All of them, as the runtime takes them
// ---------------------------------------------------------------------------------------

/**
 * Fault injection below the handlers (`startLocalRuntime({ faults })`), for chaos runs
 * (`local/chaos/`). Every hook decides per request; the handlers are not touched and see only
 * what AWS could answer.
 */
export interface LocalRuntimeFaults {
  /** Whole-request errors of the local AWS endpoint (Step Functions, EventBridge, Secrets Manager), e.g. `ThrottlingException`. */
  readonly aws?: AwsFaultHook;
  /** Entry-level `PutEvents` failures (`FailedEntryCount` > 0). */
  readonly putEventsEntries?: PutEventsEntryFaultHook;
  /**
   * Errors of DynamoDB: with this hook the handlers reach DynamoDB through a
   * fault-injecting proxy (`dynamodb-proxy.ts`); the runtime's own client does not.
   */
  readonly dynamodb?: DynamoDbFaultHook;
  /** Told about every answer the proxy gave the handlers (with `dynamodb` only). */
  readonly dynamodbResponses?: DynamoDbResponseObserver;
  /** Duplicate deliveries of received intake messages. */
  readonly duplicateDelivery?: DuplicateDeliveryHook;
}
