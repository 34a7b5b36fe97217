import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventsDir, generatedFiles } from '../../events/generate';
import { DETAIL_TYPE, EVENT_SOURCE } from '../../lambdas/contract/constants';
import { parseJobMessage } from '../../lambdas/contract/job-request';
import { outcomeDetailSchema } from '../../lambdas/contract/outcome-event';

describe('events/', () => {
  it.each(Object.keys(generatedFiles()))('%s is up to date with the code (run `npm run schemas`)', (path) => {
    expect(readFileSync(join(eventsDir, path), 'utf8')).toBe(generatedFiles()[path]);
  });

  const jobSamples = readdirSync(join(eventsDir, 'samples/jobs')).filter((name) => name.endsWith('.json'));

  it('ships sample jobs that complete, fail and are cancelled', () => {
    const outcomes = jobSamples.map((name) => {
      const body = JSON.parse(readFileSync(join(eventsDir, 'samples/jobs', name), 'utf8')) as Record<string, unknown>;
      const request = (body.detail ?? body) as { input_data: { simulate?: { outcome?: string; cancel_after_ms?: number } } };
      const simulate = request.input_data.simulate ?? {};
      return simulate.cancel_after_ms !== undefined ? 'cancelled' : (simulate.outcome ?? 'completed');
    });
    expect(new Set(outcomes)).toEqual(new Set(['completed', 'failed', 'cancelled']));
  });

  it.each(jobSamples)('sample job %s is a valid job message', (name) => {
    const body = readFileSync(join(eventsDir, 'samples/jobs', name), 'utf8');

    expect(() => parseJobMessage(body, 'sample-message-id')).not.toThrow();
  });

  it.each(['completed', 'failed', 'cancelled'])('sample %s outcome event matches the detail schema and the shared names', (name) => {
    const event = JSON.parse(readFileSync(join(eventsDir, `samples/outcomes/${name}.json`), 'utf8')) as Record<string, unknown>;

    expect(event.source).toBe(EVENT_SOURCE);
    expect(Object.values(DETAIL_TYPE)).toContain(event['detail-type']);
    expect(outcomeDetailSchema.safeParse(event.detail).success).toBe(true);
  });
});
