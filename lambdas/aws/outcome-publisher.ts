import { PutEventsCommand, type EventBridgeClient } from '@aws-sdk/client-eventbridge';
import type { OutcomeEvent } from '../contract/outcome-event';
import { backoffDelay } from '../domain/backoff';

/** Attempts of PutEvents for an entry that EventBridge reported as failed. */
const MAX_PUT_ATTEMPTS = 5;
const BASE_DELAY_MS = 100;

/**
 * Publishes outcome events. A partial failure (`FailedEntryCount` > 0) is retried with
 * backoff and jitter; if the entry still fails the call throws, so the caller's retry
 * (the Lambda's or the state machine's) takes over. Never ignored.
 */
export class OutcomePublisher {
  constructor(
    private readonly client: EventBridgeClient,
    private readonly eventBusName: string,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    private readonly random: () => number = Math.random,
  ) {}

  async publish(event: OutcomeEvent): Promise<void> {
    const entry = {
      EventBusName: this.eventBusName,
      Source: event.source,
      DetailType: event.detailType,
      Detail: JSON.stringify(event.detail),
      Resources: [],
    };
    let lastError = '';
    for (let attempt = 1; attempt <= MAX_PUT_ATTEMPTS; attempt += 1) {
      const result = await this.client.send(new PutEventsCommand({ Entries: [entry] }));
      const failed = result.FailedEntryCount ?? 0;
      const first = result.Entries?.[0];
      if (failed === 0 && first?.EventId) return;
      lastError = first?.ErrorCode ? `${first.ErrorCode}: ${first.ErrorMessage ?? ''}` : 'no event id returned';
      if (attempt < MAX_PUT_ATTEMPTS)
        await this.sleep(backoffDelay(attempt + 1, { base: BASE_DELAY_MS, jitter: 'full', random: this.random }));
    }
    throw new Error(`PutEvents failed for outcome ${event.detail.event_id} after ${MAX_PUT_ATTEMPTS} attempts: ${lastError}`);
  }
}
