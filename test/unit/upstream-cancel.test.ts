import { describe, expect, it } from 'vitest';
import { WaterflaiHttpError, WaterflaiNetworkError } from '../../lambdas/contract/errors';
import { cancelAndConfirm } from '../../lambdas/domain/upstream-cancel';
import type { CancelResult, ExecutionStatus } from '../../lambdas/contract/waterflai-api';
import { execution } from '../support/execution-status';
import { cancelResult, ScriptedWaterflai } from '../support/scripted-waterflai';

const noWait = { remainingMs: () => 60_000, delaysMs: [0, 0, 0], sleep: async () => undefined };

function run(reads: Array<ExecutionStatus | Error>, cancels: Array<CancelResult | Error>) {
  const waterflai = new ScriptedWaterflai(reads, cancels);
  return { waterflai, outcome: cancelAndConfirm(waterflai, 'wf-exec', noWait) };
}

describe('cancelAndConfirm', () => {
  it('cancelled: true is confirmation, without a status read', async () => {
    const { waterflai, outcome } = run([], [cancelResult(true)]);

    expect(await outcome).toEqual({ kind: 'cancelled' });
    expect(waterflai.reads).toEqual([]);
  });

  it('cancelled: false is not success: the status is read, and a still RUNNING execution is asked again', async () => {
    const { waterflai, outcome } = run([execution('RUNNING')], [cancelResult(false, { previous_status: 'RUNNING' }), cancelResult(true)]);

    expect(await outcome).toEqual({ kind: 'cancelled' });
    expect(waterflai.cancelled).toHaveLength(2);
    expect(waterflai.reads).toHaveLength(1);
  });

  it.each<[string, CancelResult | Error]>([
    ['409', new WaterflaiHttpError('cancel', 409)],
    ['400', new WaterflaiHttpError('cancel', 400)],
    ['404', new WaterflaiHttpError('cancel', 404)],
    ['200 cancelled: false', cancelResult(false, { alreadyFinished: true, previous_status: 'COMPLETED' })],
  ])('a refusal answered %s for a finished execution returns the execution as it finished', async (_name, refusal) => {
    const completed = execution('COMPLETED', { final_output: 'x' });
    const { outcome } = run([completed], [refusal]);

    expect(await outcome).toEqual({ kind: 'finished', execution: completed });
  });

  it.each(['FAILED', 'CANCELLED'])('an execution found %s is finished too', async (status) => {
    const { outcome } = run([execution(status)], [cancelResult(false)]);

    expect((await outcome).kind).toBe('finished');
  });

  it('a 404 on the status read after a refusal means the execution is gone', async () => {
    const { outcome } = run([new WaterflaiHttpError('get', 404)], [new WaterflaiHttpError('cancel', 404)]);

    expect(await outcome).toEqual({ kind: 'gone' });
  });

  it('transient DELETE failures are retried without a status read', async () => {
    const { waterflai, outcome } = run(
      [],
      [new WaterflaiHttpError('cancel', 503), new WaterflaiNetworkError('cancel', 'TIMEOUT', 'slow'), cancelResult(true)],
    );

    expect(await outcome).toEqual({ kind: 'cancelled' });
    expect(waterflai.cancelled).toHaveLength(3);
    expect(waterflai.reads).toEqual([]);
  });

  it('after the last attempt the outcome is unconfirmed with the last reason; it never throws', async () => {
    const { waterflai, outcome } = run(
      [execution('RUNNING'), execution('RUNNING'), execution('RUNNING'), execution('RUNNING')],
      [
        new WaterflaiHttpError('cancel', 503),
        new WaterflaiHttpError('cancel', 503),
        new WaterflaiHttpError('cancel', 503),
        cancelResult(false, { previous_status: 'RUNNING' }),
      ],
    );

    const result = await outcome;
    expect(result.kind).toBe('unconfirmed');
    expect(result.kind === 'unconfirmed' && result.reason).toMatch(
      /did not cancel the execution \(previous status RUNNING\); the execution is still RUNNING/,
    );
    expect(waterflai.cancelled).toHaveLength(4);
  });

  it('starts no attempt that could not finish in the time left', async () => {
    const waterflai = new ScriptedWaterflai([], [new WaterflaiHttpError('cancel', 503)]);
    const waits: number[] = [];

    const outcome = await cancelAndConfirm(waterflai, 'wf-exec', { remainingMs: () => 5_000, sleep: async (ms) => void waits.push(ms) });

    expect(outcome.kind).toBe('unconfirmed');
    expect(waterflai.cancelled).toHaveLength(1);
    expect(waits).toEqual([]);
  });

  it('waits the given delays between attempts', async () => {
    const waterflai = new ScriptedWaterflai(
      [],
      [new WaterflaiHttpError('cancel', 503), new WaterflaiHttpError('cancel', 503), cancelResult(true)],
    );
    const waits: number[] = [];

    await cancelAndConfirm(waterflai, 'wf-exec', {
      remainingMs: () => 600_000,
      delaysMs: [100, 200, 400],
      sleep: async (ms) => void waits.push(ms),
    });

    expect(waits).toEqual([100, 200]);
  });
});
