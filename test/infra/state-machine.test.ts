import aslValidator from 'asl-validator';
import { ExecutionError, StateMachine, type RunOptions, type StateMachineDefinition } from 'aws-local-stepfunctions';
import { beforeAll, describe, expect, it } from 'vitest';
import { JOB_STATUS, STATE_NAME, type JobStatus } from '../../lambdas/contract/constants';
import { TransientPollError } from '../../lambdas/contract/errors';
import type { FinishInput, FinishOutput, PollState } from '../../lambdas/domain/workflow';
import { LAMBDA_SERVICE_ERRORS, POLLING_FAILED_ERROR, RETRY_POLICY, TRANSIENT_POLL_ERROR } from '../../lib/poll-state-machine';
import {
  assertEveryTaskRouted,
  fakeFunctionArn,
  resolveStateMachineDefinition,
  synthesizeTemplate,
  taskFunctionLogicalIds,
  taskStates,
  type AslDefinition,
  type CloudFormationTemplate,
} from '../../local/asl';

/** The Task states the local runtime routes to handler code. */
const ROUTED_TASKS = [STATE_NAME.POLL, STATE_NAME.GIVE_UP, STATE_NAME.FINISH, STATE_NAME.RECORD_FAILURE] as const;

const INITIAL_STATE: PollState = {
  job_id: 'job-1',
  chatbot_id: 'bot-1',
  execution_id: 'exec-1',
  accepted_at: '2030-01-01T00:00:00.000Z',
  deadline_at: '2030-01-02T00:00:00.000Z',
  status: JOB_STATUS.PENDING,
  progress: null,
  current_node: null,
  poll_count: 0,
  next_poll_seconds: 10,
};

/** aws-local-stepfunctions' JSON types (not exported): our interfaces are JSON but lack index signatures. */
type ExecutionInput = Parameters<StateMachine['run']>[0];
type LocalHandlers = NonNullable<NonNullable<RunOptions['overrides']>['taskResourceLocalHandlers']>;

/** One scripted poll: the status Waterflai reports, an error the poll Lambda throws, or a hand-over to a successor. */
type PollStep = JobStatus | Error | 'HAND_OVER';

function namedError(name: string, message = `${name} (scripted)`): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

interface Run {
  /** Task invocations, in order. */
  readonly calls: string[];
  /** Inputs the finish Lambda got (both finish Tasks). */
  readonly finishInputs: FinishInput[];
  /** Inputs the give-up step got. */
  readonly giveUpInputs: FinishInput[];
  readonly result: Promise<unknown>;
}

describe('poll state machine definition', () => {
  let template: CloudFormationTemplate;
  let definition: AslDefinition;
  let machine: StateMachine;

  beforeAll(() => {
    template = synthesizeTemplate();
    definition = resolveStateMachineDefinition(template);
    // Validated once here (aws-local-stepfunctions runs asl-validator on construction).
    machine = new StateMachine(structuredClone(definition) as unknown as StateMachineDefinition, {
      validationOptions: { checkArn: true, checkPaths: true },
    });
  });

  /** Runs the definition in process with scripted handlers, without waits or retry pauses. */
  function run(pollSteps: readonly PollStep[], finishFailures: readonly Error[] = [], giveUpFailures: readonly Error[] = []): Run {
    const calls: string[] = [];
    const finishInputs: FinishInput[] = [];
    const giveUpInputs: FinishInput[] = [];
    const giveUpErrors = [...giveUpFailures];
    const polls = [...pollSteps];
    const finishErrors = [...finishFailures];
    const finish =
      (stateName: string) =>
      async (input: unknown): Promise<FinishOutput> => {
        calls.push(stateName);
        const failure = finishErrors.shift();
        if (failure !== undefined) throw failure;
        const state = input as FinishInput;
        finishInputs.push(state);
        return {
          job_id: state.job_id,
          status: state.error === undefined ? state.status : JOB_STATUS.FAILED,
          event_id: `event-${state.job_id}`,
        };
      };
    const handlers = {
      [STATE_NAME.POLL]: async (input: unknown): Promise<PollState> => {
        calls.push(STATE_NAME.POLL);
        const step = polls.shift();
        if (step === undefined) throw new Error('poll called more often than scripted');
        if (step instanceof Error) throw step;
        const state = input as PollState;
        if (step === 'HAND_OVER') return { ...state, status: JOB_STATUS.RUNNING, poll_count: state.poll_count + 1, handed_over: true };
        return { ...state, status: step, poll_count: state.poll_count + 1, next_poll_seconds: 10 };
      },
      [STATE_NAME.GIVE_UP]: async (input: unknown): Promise<PollState> => {
        calls.push(STATE_NAME.GIVE_UP);
        const failure = giveUpErrors.shift();
        if (failure !== undefined) throw failure;
        const { error: _error, ...state } = input as FinishInput;
        giveUpInputs.push(input as FinishInput);
        return { ...state, status: JOB_STATUS.FAILED };
      },
      [STATE_NAME.FINISH]: finish(STATE_NAME.FINISH),
      [STATE_NAME.RECORD_FAILURE]: finish(STATE_NAME.RECORD_FAILURE),
    };
    assertEveryTaskRouted(definition, handlers);
    const execution = machine.run(structuredClone(INITIAL_STATE) as unknown as ExecutionInput, {
      overrides: {
        taskResourceLocalHandlers: handlers as unknown as LocalHandlers,
        waitTimeOverrides: { [STATE_NAME.WAIT]: 0 },
        retryIntervalOverrides: Object.fromEntries(ROUTED_TASKS.map((name) => [name, 0])),
      },
    });
    return { calls, finishInputs, giveUpInputs, result: execution.result };
  }

  describe('shape', () => {
    it('passes asl-validator with ARN and path checks', () => {
      const { isValid, errorsText } = aslValidator(structuredClone(definition), { checkArn: true, checkPaths: true });
      expect(errorsText('\n')).toBe('');
      expect(isValid).toBe(true);
    });

    it('uses JSONPath only: no JSONata, no Assign, no Arguments/Output', () => {
      const text = JSON.stringify(definition);
      expect(text).not.toMatch(/JSONata|"QueryLanguage"|"Assign"|"Arguments"|"Output"|\{%/);
    });

    it('routes every Task state to handler code, and each one to the right function', () => {
      expect(
        taskStates(definition)
          .map(([name]) => name)
          .sort(),
      ).toEqual([...ROUTED_TASKS].sort());
      const routes = taskFunctionLogicalIds(template);
      expect(routes[STATE_NAME.POLL]).toMatch(/PollFunction/);
      expect(routes[STATE_NAME.FINISH]).toMatch(/FinishFunction/);
      expect(routes[STATE_NAME.RECORD_FAILURE]).toBe(routes[STATE_NAME.FINISH]);
      // The give-up step cancels upstream: the poll function (the finish function cannot read the key).
      expect(routes[STATE_NAME.GIVE_UP]).toBe(routes[STATE_NAME.POLL]);
      expect(definition.States[STATE_NAME.POLL]?.Resource).toBe(fakeFunctionArn(routes[STATE_NAME.POLL] ?? ''));
    });

    it('refuses to run with an unrouted Task (it would call a real Lambda)', () => {
      expect(() => assertEveryTaskRouted(definition, { [STATE_NAME.POLL]: () => ({}) })).toThrow(
        /GiveUpPolling, PublishOutcome, RecordPollFailure|PublishOutcome, RecordPollFailure, GiveUpPolling|GiveUpPolling/,
      );
    });

    it('waits the seconds the last poll asked for, starts with the wait, and times out after 24 h + 1 h', () => {
      expect(definition.StartAt).toBe(STATE_NAME.WAIT);
      expect(definition.States[STATE_NAME.WAIT]).toMatchObject({ Type: 'Wait', SecondsPath: '$.next_poll_seconds', Next: STATE_NAME.POLL });
      expect(definition.TimeoutSeconds).toBe(25 * 3600);
    });

    it('retries Lambda service errors, then TransientPollError with a capped, jittered backoff, and catches the rest', () => {
      expect(definition.States[STATE_NAME.POLL]).toMatchObject({
        Retry: [
          { ErrorEquals: [...LAMBDA_SERVICE_ERRORS], IntervalSeconds: 2, BackoffRate: 2, MaxAttempts: 6 },
          {
            ErrorEquals: [TRANSIENT_POLL_ERROR],
            IntervalSeconds: 5,
            BackoffRate: 2,
            MaxAttempts: 8,
            MaxDelaySeconds: 300,
            JitterStrategy: 'FULL',
          },
        ],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: STATE_NAME.GIVE_UP }],
      });
      expect(definition.States[STATE_NAME.GIVE_UP]).toMatchObject({
        Retry: [
          { ErrorEquals: [...LAMBDA_SERVICE_ERRORS], IntervalSeconds: 2, BackoffRate: 2, MaxAttempts: 6 },
          {
            ErrorEquals: [TRANSIENT_POLL_ERROR],
            IntervalSeconds: 5,
            BackoffRate: 2,
            MaxAttempts: 8,
            MaxDelaySeconds: 300,
            JitterStrategy: 'FULL',
          },
        ],
        Catch: [{ ErrorEquals: ['States.ALL'], ResultPath: '$.give_up_error', Next: STATE_NAME.RECORD_FAILURE }],
        Next: STATE_NAME.FINISH,
      });
      expect(TRANSIENT_POLL_ERROR).toBe('TransientPollError');
      expect(definition.States[STATE_NAME.FAIL]).toMatchObject({ Type: 'Fail', Error: POLLING_FAILED_ERROR });
    });
  });

  describe('execution (aws-local-stepfunctions)', () => {
    it.each([JOB_STATUS.COMPLETED, JOB_STATUS.FAILED, JOB_STATUS.CANCELLED])('finishes when Waterflai reports %s', async (terminal) => {
      // Act
      const execution = run([JOB_STATUS.RUNNING, terminal]);
      const output = await execution.result;
      // Assess
      expect(execution.calls).toEqual([STATE_NAME.POLL, STATE_NAME.POLL, STATE_NAME.FINISH]);
      expect(execution.finishInputs[0]).toMatchObject({ status: terminal, poll_count: 2 });
      expect(output).toMatchObject({
        job_id: 'job-1',
        status: terminal,
        poll_count: 2,
        outcome: { job_id: 'job-1', status: terminal, event_id: 'event-job-1' },
      });
    });

    it('ends the execution without an outcome when the poll hands the job over to a successor (continue-as-new)', async () => {
      const execution = run([JOB_STATUS.RUNNING, 'HAND_OVER']);
      const output = await execution.result;
      expect(execution.calls).toEqual([STATE_NAME.POLL, STATE_NAME.POLL]);
      expect(output).toMatchObject({ status: JOB_STATUS.RUNNING, handed_over: true, poll_count: 2 });
      expect(output).not.toHaveProperty('outcome');
    });

    it('keeps polling on an unknown status', async () => {
      const execution = run([JOB_STATUS.UNKNOWN, JOB_STATUS.UNKNOWN, JOB_STATUS.COMPLETED]);
      const output = await execution.result;
      expect(execution.calls).toEqual([STATE_NAME.POLL, STATE_NAME.POLL, STATE_NAME.POLL, STATE_NAME.FINISH]);
      expect(output).toMatchObject({ status: JOB_STATUS.COMPLETED, poll_count: 3 });
    });

    it('retries TransientPollError, then goes on', async () => {
      const execution = run([new TransientPollError('Waterflai 503'), new TransientPollError('Waterflai timeout'), JOB_STATUS.COMPLETED]);
      const output = await execution.result;
      expect(execution.calls).toEqual([STATE_NAME.POLL, STATE_NAME.POLL, STATE_NAME.POLL, STATE_NAME.FINISH]);
      expect(output).toMatchObject({ status: JOB_STATUS.COMPLETED, poll_count: 1 });
      expect(output).not.toHaveProperty('error');
    });

    it('retries Lambda.TooManyRequestsException', async () => {
      const execution = run([namedError('Lambda.TooManyRequestsException'), namedError('Lambda.ServiceException'), JOB_STATUS.COMPLETED]);
      const output = await execution.result;
      expect(execution.calls).toEqual([STATE_NAME.POLL, STATE_NAME.POLL, STATE_NAME.POLL, STATE_NAME.FINISH]);
      expect(output).toMatchObject({ status: JOB_STATUS.COMPLETED });
    });

    it('gives up when TransientPollError outlasts the retry budget: the give-up step settles the job, which is announced', async () => {
      // Prepare: one attempt plus every retry fails.
      const attempts = 1 + RETRY_POLICY.transientPoll.maxAttempts;
      const execution = run(Array.from({ length: attempts }, (_, i) => new TransientPollError(`DynamoDB 500 #${i + 1}`)));
      // Act
      const output = await execution.result;
      // Assess
      expect(execution.calls).toEqual([...Array<string>(attempts).fill(STATE_NAME.POLL), STATE_NAME.GIVE_UP, STATE_NAME.FINISH]);
      expect(execution.giveUpInputs[0]).toMatchObject({
        job_id: 'job-1',
        error: { Error: TRANSIENT_POLL_ERROR, Cause: `DynamoDB 500 #${attempts}` },
      });
      expect(execution.finishInputs[0]).not.toHaveProperty('error');
      expect(output).toMatchObject({ status: JOB_STATUS.FAILED, outcome: { status: JOB_STATUS.FAILED } });
    });

    it('does not retry a programming error: it goes to the give-up step at once', async () => {
      const execution = run([new TypeError('cannot read properties of undefined')]);
      await execution.result;
      expect(execution.calls).toEqual([STATE_NAME.POLL, STATE_NAME.GIVE_UP, STATE_NAME.FINISH]);
      expect(execution.giveUpInputs[0]?.error).toMatchObject({ Error: 'TypeError' });
    });

    it('when the give-up step fails too, the finish function records the failure and the execution fails with PollingFailed', async () => {
      const execution = run([new TypeError('bug')], [], [new TypeError('another bug')]);
      const failure = await execution.result.then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(execution.calls).toEqual([STATE_NAME.POLL, STATE_NAME.GIVE_UP, STATE_NAME.RECORD_FAILURE]);
      expect(execution.finishInputs[0]).toMatchObject({
        job_id: 'job-1',
        error: { Error: 'TypeError' },
        give_up_error: { Error: 'TypeError' },
      });
      expect(failure).toBeInstanceOf(ExecutionError);
      expect((failure as Error & { cause?: Error }).cause?.name).toBe(POLLING_FAILED_ERROR);
    });

    it('retries the idempotent finish step on any error', async () => {
      const execution = run([JOB_STATUS.COMPLETED], [namedError('Lambda.Unknown'), new Error('DynamoDB throttled')]);
      const output = await execution.result;
      expect(execution.calls).toEqual([STATE_NAME.POLL, STATE_NAME.FINISH, STATE_NAME.FINISH, STATE_NAME.FINISH]);
      expect(output).toMatchObject({ outcome: { status: JOB_STATUS.COMPLETED } });
    });
  });
});
