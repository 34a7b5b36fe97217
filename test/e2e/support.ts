/**
 * Helpers of the end-to-end tests over the local runtime.
 */
import { DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { PublishedEvent } from '../../local/emulators/eventbridge';

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? ` (last error: ${last.message})` : ''}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The outcome events published for a job id. */
export function eventsFor(events: readonly PublishedEvent[], jobId: string): PublishedEvent[] {
  return events.filter((event) => (event.detail as { job_id?: unknown } | null)?.job_id === jobId);
}

/**
 * Receives (and deletes) everything currently in a queue, through the SQS API, with every
 * message attribute, and adds it to `into`.
 */
export async function drainQueue(client: SQSClient, queueUrl: string, into: Message[]): Promise<Message[]> {
  for (;;) {
    const received = await client.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
        MessageAttributeNames: ['All'],
        MessageSystemAttributeNames: ['All'],
      }),
    );
    const messages = received.Messages ?? [];
    if (messages.length === 0) return into;
    for (const message of messages) {
      into.push(message);
      await client.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: message.ReceiptHandle }));
    }
  }
}

/** A job request body asking the simulator for a scenario. */
export function jobBody(jobId: string, chatbotId: string, simulate: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ job_id: jobId, chatbot_id: chatbotId, input_data: { query: `e2e ${jobId}`, simulate }, ...extra });
}

/** True when the queue holds no message: none visible, in flight or delayed. */
export async function queueIdle(client: SQSClient, queueUrl: string): Promise<boolean> {
  const { Attributes: a = {} } = await client.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible', 'ApproximateNumberOfMessagesDelayed'],
    }),
  );
  return (
    Number(a.ApproximateNumberOfMessages) +
      Number(a.ApproximateNumberOfMessagesNotVisible) +
      Number(a.ApproximateNumberOfMessagesDelayed) ===
    0
  );
}
