/**
 * The local counterpart of Lambda's SQS event source mapping: long-polls a queue with up to
 * `maxConcurrency` pollers, hands each batch to the function as a real `SQSEvent` (the record
 * shape Lambda sends), and honours the partial batch response (`ReportBatchItemFailures`):
 * the records not listed in `batchItemFailures` are deleted, the listed ones are left to come
 * back after their visibility timeout (SQS moves them to the dead-letter queue after
 * `maxReceiveCount`). A function error, a timeout or an invalid response fails the whole
 * batch, as on Lambda.
 */
import { createHash } from 'node:crypto';
import {
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  type Message,
  type MessageAttributeValue,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent, SQSMessageAttributes, SQSRecord } from 'aws-lambda';
import type { DuplicateDeliveryHook } from '../faults/hooks';

export interface SqsEventSourceOptions {
  readonly client: SQSClient;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly region: string;
  /** Records per invocation (1-10, or up to 10,000 with a batching window). */
  readonly batchSize: number;
  /** Concurrent pollers (and so concurrent invocations). */
  readonly maxConcurrency: number;
  /** Seconds to gather a batch larger than 10. @default 0 */
  readonly maxBatchingWindowSeconds?: number;
  /** Whether the function reports partial batch failures. @default true */
  readonly reportBatchItemFailures?: boolean;
  /** Long-poll wait of each ReceiveMessage. @default 20 (as Lambda) */
  readonly waitTimeSeconds?: number;
  /** Invokes the function; throws when the invocation failed (error or timeout). */
  readonly invoke: (event: SQSEvent) => Promise<SQSBatchResponse | undefined | null | undefined>;
  /**
   * Duplicate deliveries (fault injection for chaos runs, `local/faults/hooks.ts`; SQS and
   * the event source mapping deliver at least once): called for each received record; a
   * number (ms) delivers that record a second time, in a separate invocation started after
   * that delay and running concurrently with the first. Either invocation may delete the
   * message. @default none
   */
  readonly duplicateDelivery?: DuplicateDeliveryHook;
  /** Told about invocation failures and poller errors. @default silent */
  readonly onError?: (
    error: unknown,
    context: { readonly phase: 'receive' | 'invoke' | 'delete'; readonly messageIds: readonly string[] },
  ) => void;
}

export interface SqsEventSourceStats {
  readonly batches: number;
  readonly records: number;
  readonly deleted: number;
  /** Records left on the queue because they were reported as failed (or their batch failed). */
  readonly failedRecords: number;
  /** Invocations that failed as a whole (error, timeout or invalid response). */
  readonly failedBatches: number;
  /** Records delivered a second time by `duplicateDelivery`. */
  readonly duplicateDeliveries: number;
}

export class SqsEventSource {
  #running = false;
  #abort = new AbortController();
  #workers: Array<Promise<void>> = [];
  #inFlight = 0;
  #stats = { batches: 0, records: 0, deleted: 0, failedRecords: 0, failedBatches: 0, duplicateDeliveries: 0 };

  constructor(private readonly options: SqsEventSourceOptions) {
    if (!Number.isInteger(options.batchSize) || options.batchSize < 1) throw new RangeError('batchSize must be a positive integer');
    if (!Number.isInteger(options.maxConcurrency) || options.maxConcurrency < 1)
      throw new RangeError('maxConcurrency must be a positive integer');
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    this.#workers = Array.from({ length: this.options.maxConcurrency }, () => this.#work());
  }

  /** Stops polling; waits for the invocations under way to finish. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    this.#abort.abort();
    await Promise.all(this.#workers);
    this.#workers = [];
  }

  stats(): SqsEventSourceStats {
    return { ...this.#stats };
  }

  /** Invocations under way right now. */
  inFlight(): number {
    return this.#inFlight;
  }

  async #work(): Promise<void> {
    while (this.#running) {
      let messages: Message[];
      try {
        messages = await this.#receiveBatch();
      } catch (error) {
        if (!this.#running) return;
        this.options.onError?.(error, { phase: 'receive', messageIds: [] });
        await sleep(250);
        continue;
      }
      if (messages.length === 0) continue;
      // Once received, a batch is always processed, even while stopping (its messages are
      // invisible until their visibility timeout otherwise).
      this.#inFlight += 1;
      try {
        await Promise.all([this.#process(messages), ...this.#duplicates(messages)]);
      } finally {
        this.#inFlight -= 1;
      }
    }
  }

  /** The duplicate deliveries `duplicateDelivery` asks for: one invocation per delay. */
  #duplicates(messages: Message[]): Array<Promise<void>> {
    const hook = this.options.duplicateDelivery;
    if (hook === undefined) return [];
    const byDelay = new Map<number, Message[]>();
    for (const message of messages) {
      const delay = hook(toLambdaRecord(message, this.options.queueArn, this.options.region));
      if (delay === undefined || !Number.isFinite(delay)) continue;
      const key = Math.max(0, Math.round(delay));
      byDelay.set(key, [...(byDelay.get(key) ?? []), message]);
    }
    return [...byDelay.entries()].map(async ([delay, duplicated]) => {
      await sleep(delay);
      this.#stats.duplicateDeliveries += duplicated.length;
      await this.#process(duplicated);
    });
  }

  async #receiveBatch(): Promise<Message[]> {
    const { batchSize } = this.options;
    const windowMs = (this.options.maxBatchingWindowSeconds ?? 0) * 1000;
    const deadline = Date.now() + windowMs;
    const messages: Message[] = [];
    do {
      const remainingWindow = Math.max(0, deadline - Date.now());
      const wait = messages.length === 0 ? (this.options.waitTimeSeconds ?? 20) : Math.min(20, Math.ceil(remainingWindow / 1000));
      const received = await this.options.client.send(
        new ReceiveMessageCommand({
          QueueUrl: this.options.queueUrl,
          MaxNumberOfMessages: Math.min(10, batchSize - messages.length),
          WaitTimeSeconds: wait,
          MessageSystemAttributeNames: ['All'],
          MessageAttributeNames: ['All'],
        }),
        { abortSignal: this.#abort.signal },
      );
      messages.push(...(received.Messages ?? []));
      if (messages.length === 0) return messages;
    } while (messages.length < batchSize && Date.now() < deadline && this.#running);
    return messages;
  }

  async #process(messages: Message[]): Promise<void> {
    const records = messages.map((message) => toLambdaRecord(message, this.options.queueArn, this.options.region));
    const ids = records.map((record) => record.messageId);
    this.#stats.batches += 1;
    this.#stats.records += records.length;
    let failedIds: Set<string>;
    try {
      const response = await this.options.invoke({ Records: records });
      failedIds = this.options.reportBatchItemFailures === false ? new Set() : failuresOf(response, ids);
    } catch (error) {
      this.options.onError?.(error, { phase: 'invoke', messageIds: ids });
      this.#stats.failedBatches += 1;
      this.#stats.failedRecords += records.length;
      return; // nothing deleted: the whole batch comes back after its visibility timeout
    }
    this.#stats.failedRecords += failedIds.size;
    const done = messages.filter((message) => !failedIds.has(message.MessageId ?? ''));
    for (let start = 0; start < done.length; start += 10) {
      const chunk = done.slice(start, start + 10);
      try {
        const result = await this.options.client.send(
          new DeleteMessageBatchCommand({
            QueueUrl: this.options.queueUrl,
            Entries: chunk.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle })),
          }),
        );
        this.#stats.deleted += result.Successful?.length ?? 0;
        if ((result.Failed?.length ?? 0) > 0) {
          this.options.onError?.(new Error(`DeleteMessageBatch failed for ${result.Failed?.length} message(s)`), {
            phase: 'delete',
            messageIds: chunk.map((m) => m.MessageId ?? ''),
          });
        }
      } catch (error) {
        this.options.onError?.(error, { phase: 'delete', messageIds: chunk.map((m) => m.MessageId ?? '') });
      }
    }
  }
}

/**
 * The ids to leave on the queue, from a partial batch response. As on Lambda: no response,
 * or an empty list, is full success; an item without a valid id of this batch (null, empty,
 * unknown) makes the whole batch a failure.
 */
export function failuresOf(response: SQSBatchResponse | undefined | null | undefined, batchIds: readonly string[]): Set<string> {
  if (response === undefined || response === null) return new Set();
  const items = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (items === undefined || items === null) return new Set();
  if (!Array.isArray(items)) return new Set(batchIds);
  const known = new Set(batchIds);
  const failed = new Set<string>();
  for (const item of items) {
    const id = (item as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || !known.has(id)) return new Set(batchIds);
    failed.add(id);
  }
  return failed;
}

/** An SQS message as Lambda's event source mapping hands it to a function. */
export function toLambdaRecord(message: Message, queueArn: string, region: string): SQSRecord {
  const attributes = message.Attributes ?? {};
  const messageAttributes: SQSMessageAttributes = {};
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    messageAttributes[name] = toLambdaAttribute(value);
  }
  const body = message.Body ?? '';
  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body,
    attributes: {
      ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
      SentTimestamp: attributes.SentTimestamp ?? String(Date.now()),
      SenderId: attributes.SenderId ?? '000000000000',
      ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      ...(attributes.AWSTraceHeader === undefined ? {} : { AWSTraceHeader: attributes.AWSTraceHeader }),
    },
    messageAttributes,
    md5OfBody: message.MD5OfBody ?? createHash('md5').update(body).digest('hex'),
    ...(message.MD5OfMessageAttributes === undefined ? {} : { md5OfMessageAttributes: message.MD5OfMessageAttributes }),
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  } as SQSRecord;
}

function toLambdaAttribute(value: MessageAttributeValue): SQSMessageAttributes[string] {
  return {
    dataType: value.DataType ?? 'String',
    ...(value.StringValue === undefined ? {} : { stringValue: value.StringValue }),
    ...(value.BinaryValue === undefined ? {} : { binaryValue: Buffer.from(value.BinaryValue).toString('base64') }),
    stringListValues: value.StringListValues ?? [],
    binaryListValues: (value.BinaryListValues ?? []).map((item) => Buffer.from(item).toString('base64')),
  } as SQSMessageAttributes[string];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
