import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { QueueTargetSender, type QueueTargetDelivery } from '../../local/runtime/triggers';

/** The local runtime's EventBridge -> SQS target delivery (the status-change rule -> reconcile queue). */
const sqsMock = mockClient(SQSClient);
const client = new SQSClient({ region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });

const queue = { name: 'reconcile', url: 'http://127.0.0.1:1/000000000000/reconcile', arn: 'arn:aws:sqs:us-east-1:000000000000:reconcile' };
const deadLetterQueue = {
  name: 'reconcile-dlq',
  url: 'http://127.0.0.1:1/000000000000/reconcile-dlq',
  arn: 'arn:aws:sqs:us-east-1:000000000000:reconcile-dlq',
};
const RULE_ARN = 'arn:aws:events:us-east-1:000000000000:rule/StatusChange';
const BODY = JSON.stringify({
  id: 'evt-1',
  source: 'aws.states',
  'detail-type': 'Step Functions Execution Status Change',
  detail: { status: 'ABORTED' },
});

afterAll(() => sqsMock.restore());
beforeEach(() => sqsMock.reset());

async function drain(sender: QueueTargetSender, done: () => boolean): Promise<void> {
  await vi.waitFor(() => expect(done()).toBe(true), { timeout: 5_000, interval: 5 });
  await sender.close(1_000);
}

describe('QueueTargetSender', () => {
  it('sends the event JSON, unchanged, as the message body', async () => {
    // Prepare
    sqsMock.on(SendMessageCommand).resolves({ MessageId: 'm-1' });
    const sender = new QueueTargetSender({ client });

    // Act
    sender.send({ ruleArn: RULE_ARN, queue, deadLetterQueue }, BODY);
    await drain(sender, () => sender.stats().sent === 1);

    // Assess
    expect(sqsMock).toHaveReceivedCommandTimes(SendMessageCommand, 1);
    expect(sqsMock).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: queue.url, MessageBody: BODY });
  });

  it('retries a failed send and delivers once the queue answers', async () => {
    sqsMock.on(SendMessageCommand).rejectsOnce(new Error('throttled')).rejectsOnce(new Error('throttled')).resolves({ MessageId: 'm-1' });
    const sender = new QueueTargetSender({ client, timeScale: 0.001 });

    sender.send({ ruleArn: RULE_ARN, queue, deadLetterQueue }, BODY);
    await drain(sender, () => sender.stats().sent === 1);

    expect(sender.stats()).toEqual({ sent: 1, retries: 2, deadLettered: 0, dropped: 0 });
    expect(sqsMock).not.toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: deadLetterQueue.url });
  });

  it("after the retry policy, sends the event to the target dead-letter queue with EventBridge's attributes", async () => {
    // Prepare: the target queue refuses everything
    sqsMock.on(SendMessageCommand, { QueueUrl: queue.url }).rejects(new Error('AccessDenied'));
    sqsMock.on(SendMessageCommand, { QueueUrl: deadLetterQueue.url }).resolves({ MessageId: 'dlq-1' });
    const sender = new QueueTargetSender({ client, timeScale: 0.001 });
    const delivery: QueueTargetDelivery = { ruleArn: RULE_ARN, queue, deadLetterQueue, maximumRetryAttempts: 2 };

    // Act
    sender.send(delivery, BODY);
    await drain(sender, () => sender.stats().deadLettered === 1);

    // Assess
    expect(sqsMock.commandCalls(SendMessageCommand, { QueueUrl: queue.url })).toHaveLength(3); // 1 + 2 retries
    const [dead] = sqsMock.commandCalls(SendMessageCommand, { QueueUrl: deadLetterQueue.url });
    expect(dead?.args[0].input).toMatchObject({
      MessageBody: BODY,
      MessageAttributes: {
        ERROR_MESSAGE: { StringValue: 'AccessDenied' },
        EXHAUSTED_RETRY_CONDITION: { StringValue: 'MaximumRetryAttempts' },
        RETRY_ATTEMPTS: { StringValue: '2' },
        RULE_ARN: { StringValue: RULE_ARN },
        TARGET_ARN: { StringValue: queue.arn },
      },
    });
  });

  it('reports an event it could neither deliver nor dead-letter as dropped', async () => {
    sqsMock.on(SendMessageCommand).rejects(new Error('gone'));
    const dropped = vi.fn();
    const sender = new QueueTargetSender({ client, timeScale: 0.001, onDropped: dropped });

    sender.send({ ruleArn: RULE_ARN, queue, maximumRetryAttempts: 0 }, BODY);
    await drain(sender, () => sender.stats().dropped === 1);

    expect(dropped).toHaveBeenCalledWith(expect.objectContaining({ queue }), expect.objectContaining({ message: 'gone' }));
  });
});
