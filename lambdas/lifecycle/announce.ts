import { isSettled, type JobRecord } from '../contract/job-record';
import type { JobStore } from '../aws/job-store';
import { buildOutcomeEvent } from '../contract/outcome-event';
import type { OutcomePublisher } from '../aws/outcome-publisher';

/**
 * Announces a settled job's outcome unless the record says it already was, then marks it.
 * Every path that settles a job (finish step, intake rejection, cancel request, reconciler,
 * sweeper) ends here, so the event is built the same way from the record and carries the
 * same stable id whoever publishes it. A crash between publishing and marking publishes
 * again with the same `event_id` (at-least-once).
 *
 * @returns the outcome's event id
 */
export async function announceOutcome(
  store: JobStore,
  publisher: OutcomePublisher,
  record: JobRecord,
  now: () => number = Date.now,
): Promise<string> {
  if (!isSettled(record)) throw new Error(`job ${record.job_id} is not settled (status ${record.status})`);
  const event = buildOutcomeEvent(record);
  if (record.event_published_at === undefined) {
    await publisher.publish(event);
    await store.markEventPublished(record.job_id, event.detail.event_id, new Date(now()).toISOString());
  }
  return event.detail.event_id;
}
