import type { SQSRecord } from 'aws-lambda';

/** An SQS record as the Lambda event source delivers it (for handler and starter tests). */
export function sqsRecord(body: string, options: { messageId?: string; receiveCount?: number } = {}): SQSRecord {
  return {
    messageId: options.messageId ?? 'msg-1',
    receiptHandle: `receipt-${options.messageId ?? 'msg-1'}-${options.receiveCount ?? 1}`,
    body,
    attributes: {
      ApproximateReceiveCount: String(options.receiveCount ?? 1),
      SentTimestamp: '1764417600000',
      SenderId: 'sender',
      ApproximateFirstReceiveTimestamp: '1764417600000',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:intake',
    awsRegion: 'us-east-1',
  };
}
