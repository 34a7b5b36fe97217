/**
 * What a request below the handlers is about: the job (or event) a DynamoDB, Step Functions,
 * EventBridge or SQS request concerns, read from its wire input. Faults are keyed by job (the
 * n-th UpdateItem of job X), counted per job and written into each job's trace with these.
 */

const DYNAMODB_WRITES = new Set(['PutItem', 'UpdateItem', 'DeleteItem']);

/** Whether a DynamoDB operation writes (so its answer can be lost after it took effect). */
export function isDynamoDbWrite(operation: string): boolean {
  return DYNAMODB_WRITES.has(operation);
}

/** The job id a DynamoDB request is about (`Key` or `Item` `job_id`), if any. */
export function dynamoJobId(input: Record<string, unknown>): string | undefined {
  for (const field of ['Key', 'Item'] as const) {
    const value = (input[field] as { job_id?: { S?: unknown } } | undefined)?.job_id?.S;
    if (typeof value === 'string') return value;
  }
  return undefined;
}

/** A DynamoDB request, for traces: the operation and the attributes it sets (`UpdateItem[execution_id,status]`). */
export function describeDynamoRequest(operation: string, input: Record<string, unknown>): string {
  if (operation === 'UpdateItem') {
    const values = Object.keys((input.ExpressionAttributeValues as Record<string, unknown> | undefined) ?? {});
    const set = values.filter((name) => name.startsWith(':set_')).map((name) => name.slice(5));
    return `UpdateItem[${set.join(',')}]`;
  }
  if (operation === 'PutItem') {
    const status = (input.Item as { status?: { S?: unknown } } | undefined)?.status?.S;
    return `PutItem[${typeof status === 'string' ? status : '?'}]`;
  }
  return operation;
}

/** The job id of a StartExecution request (from its input document), else its name, else `-`. */
export function startExecutionJobId(input: Record<string, unknown>): string {
  if (typeof input.input === 'string') {
    try {
      const state = JSON.parse(input.input) as { job_id?: unknown };
      if (typeof state.job_id === 'string') return state.job_id;
    } catch {
      // not JSON: keyed by name
    }
  }
  return typeof input.name === 'string' ? input.name : '-';
}

/** The `event_id` in the `Detail` of a raw PutEvents entry (`<job_id>:<status>`), or `-`. */
export function eventIdOfEntry(entry: unknown): string {
  if (typeof entry !== 'object' || entry === null) return '-';
  const detail = (entry as { Detail?: unknown }).Detail;
  if (typeof detail !== 'string') return '-';
  try {
    const parsed = JSON.parse(detail) as { event_id?: unknown };
    return typeof parsed.event_id === 'string' ? parsed.event_id : '-';
  } catch {
    return '-';
  }
}

/** The job id of an intake message body (direct or in an EventBridge envelope), if any. */
export function jobIdOfBody(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { job_id?: unknown; detail?: { job_id?: unknown } };
    const jobId = parsed.job_id ?? parsed.detail?.job_id;
    return typeof jobId === 'string' ? jobId : undefined;
  } catch {
    return undefined;
  }
}
