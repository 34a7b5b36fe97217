/**
 * Writes the JSON Schemas and the sample outcome events in `events/` from the one source
 * of truth in code (the zod schemas and the event builder). Run with `npm run schemas`;
 * a test fails when the committed files are out of date.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { DETAIL_TYPE, EVENT_SOURCE, JOB_STATUS, type TerminalStatus } from '../lambdas/contract/constants';
import { jobRequestSchema } from '../lambdas/contract/job-request';
import type { JobRecord } from '../lambdas/contract/job-record';
import { buildOutcomeEvent, outcomeDetailSchema } from '../lambdas/contract/outcome-event';

const eventsDir = dirname(fileURLToPath(import.meta.url));

/** The intake message: a job request, or an EventBridge event whose detail is one. */
const jobMessageSchema = z.union([
  jobRequestSchema,
  z
    .looseObject({
      id: z.string().describe('The event id: the default job_id.'),
      'detail-type': z.string(),
      source: z.string(),
      detail: jobRequestSchema,
    })
    .describe('An EventBridge event that a rule delivered to the intake queue.'),
]);

function outcomeEventSchema(status: TerminalStatus): z.ZodType {
  return z
    .looseObject({
      source: z.literal(EVENT_SOURCE),
      'detail-type': z.literal(DETAIL_TYPE[status]),
      detail: outcomeDetailSchema,
    })
    .describe(`The "${DETAIL_TYPE[status]}" event as a subscriber's rule target receives it.`);
}

function toJsonSchema(id: string, schema: z.ZodType): string {
  const json = { $id: id, ...z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' }) };
  return `${JSON.stringify(json, null, 2)}\n`;
}

const sampleBase: JobRecord = {
  job_id: 'sample-report-summary-001',
  chatbot_id: 'report-summariser',
  status: JOB_STATUS.COMPLETED,
  status_rank: 3,
  version: 7,
  accepted_at: '2026-11-29T12:00:00.000Z',
  updated_at: '2026-11-29T12:04:10.500Z',
  deadline_at: '2026-11-29T13:00:00.000Z',
  expires_at: 1_772_539_200,
  metadata: { requested_by: 'reports-service', correlation_id: 'c0ffee-0001' },
  source_message_id: '059f36b4-87a3-44ab-83d2-661975830a7d',
  delivery: 'sqs',
  execution_id: 'exec_5f1c2a9e',
  upstream_started_at: '2026-11-29T12:00:02.100Z',
  finished_at: '2026-11-29T12:04:10.500Z',
  polls: 25,
};

const sampleRecords: Record<string, JobRecord & { status: TerminalStatus }> = {
  completed: { ...sampleBase, status: JOB_STATUS.COMPLETED, final_output: { answer: 'Five bullet points ...', tokens: 812 } },
  failed: {
    ...sampleBase,
    job_id: 'sample-translation-002',
    chatbot_id: 'document-translator',
    metadata: { requested_by: 'notices-service' },
    status: JOB_STATUS.FAILED,
    error_code: 'EXECUTION_FAILED',
    error_message: 'Node translate-2: document could not be parsed',
  },
  cancelled: {
    ...sampleBase,
    job_id: 'sample-classification-003',
    chatbot_id: 'ticket-classifier',
    metadata: { requested_by: 'support-service', batch: 17 },
    status: JOB_STATUS.CANCELLED,
    cancel_reason: 'remote',
  },
};

/** Every generated file, by path relative to `events/`. */
export function generatedFiles(): Record<string, string> {
  const files: Record<string, string> = {
    'schemas/job-message.schema.json': toJsonSchema('waterflai-orchestrator/job-message', jobMessageSchema),
    'schemas/outcome-detail.schema.json': toJsonSchema('waterflai-orchestrator/outcome-detail', outcomeDetailSchema),
  };
  for (const status of [JOB_STATUS.COMPLETED, JOB_STATUS.FAILED, JOB_STATUS.CANCELLED] as const) {
    const name = status.toLowerCase();
    files[`schemas/outcome-${name}.schema.json`] = toJsonSchema(`waterflai-orchestrator/outcome-${name}`, outcomeEventSchema(status));
  }
  for (const [name, record] of Object.entries(sampleRecords)) {
    const event = buildOutcomeEvent(record);
    const envelope = {
      version: '0',
      id: '8d3f1b5e-2c4a-4f7e-9b1d-0a6c5e7f9b21',
      'detail-type': event.detailType,
      source: event.source,
      account: '123456789012',
      time: record.finished_at,
      region: 'eu-west-1',
      resources: [],
      detail: event.detail,
    };
    files[`samples/outcomes/${name}.json`] = `${JSON.stringify(envelope, null, 2)}\n`;
  }
  return files;
}

export { eventsDir };

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const [path, content] of Object.entries(generatedFiles())) {
    const target = join(eventsDir, path);
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, content);
    console.log(`wrote events/${path}`);
  }
}
