/**
 * A local Step Functions (Standard) service: the awsJson1_0 operations the orchestrator
 * uses (`StartExecution`, `DescribeExecution`, `StopExecution`, `ListExecutions`,
 * `DescribeStateMachine`) with AWS's semantics, running each execution in process on
 * aws-local-stepfunctions with every Task routed to local handler code.
 *
 * Semantics kept from AWS:
 * - `StartExecution` with the name of an execution that is RUNNING and the same input
 *   returns that execution again (idempotent); a different input, or a closed execution of
 *   that name, is `ExecutionAlreadyExists`.
 * - Names: 1-80 characters, none of whitespace, `<>{}[]?*"#%\^|~\`$&,;:/` or control chars.
 * - Input: valid JSON, at most 256 KiB (`InvalidExecutionInput`).
 * - A Task that fails carries `Error` = the Lambda `errorType` and `Cause` = Lambda's JSON
 *   `{"errorType","errorMessage","trace"}`, so Retry/Catch match as in AWS.
 * - A Task state without a local handler is refused when the state machine is registered
 *   (aws-local-stepfunctions would otherwise invoke a REAL Lambda function).
 */
// aws-local-stepfunctions calls Promise.withResolvers (Node 22+).
import '../polyfills';
import { randomUUID } from 'node:crypto';
import { ExecutionAbortedError, ExecutionError, ExecutionTimeoutError, StateMachine } from 'aws-local-stepfunctions';
import { assertEveryTaskRouted, withLocalTimeoutLimit, type AslDefinition, type AslState } from '../asl';
import { AwsServiceError, awsTimestamp, optionalString, requireString, type AwsJsonService } from './aws-json-server';
import { nextDocument, scaledRetryOverrides, scaledWaitOverrides } from './time-scale';

type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Runs one Task: receives the Task's effective input, returns its result. */
export type TaskHandler = (input: JsonValue) => Promise<JsonValue>;

export type ExecutionStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED';

export interface LocalStateMachineDefinition {
  readonly arn: string;
  readonly name: string;
  readonly definition: AslDefinition;
  /** Local handler of every Task state, by state name. */
  readonly taskHandlers: Readonly<Record<string, TaskHandler>>;
}

export interface ExecutionView {
  readonly executionArn: string;
  readonly stateMachineArn: string;
  readonly name: string;
  readonly status: ExecutionStatus;
  readonly input: string;
  readonly output?: string;
  readonly error?: string;
  readonly cause?: string;
  readonly startDate: number;
  readonly stopDate?: number;
  /** Task invocations made by this execution, by state name. */
  readonly taskInvocations: Readonly<Record<string, number>>;
}

/** What observers hear about executions. */
export type ExecutionNotice =
  | { readonly type: 'started'; readonly execution: ExecutionView }
  | { readonly type: 'task'; readonly execution: ExecutionView; readonly state: string; readonly output: unknown }
  | { readonly type: 'ended'; readonly execution: ExecutionView };

export interface LocalStepFunctionsOptions {
  readonly stateMachines: readonly LocalStateMachineDefinition[];
  /** Scale of Wait durations and retry intervals. @default 1 */
  readonly timeScale?: number;
}

interface RegisteredMachine {
  readonly arn: string;
  readonly name: string;
  readonly definition: AslDefinition;
  readonly states: ReadonlyMap<string, AslState>;
  readonly machine: StateMachine;
  readonly taskHandlers: Readonly<Record<string, TaskHandler>>;
}

interface Execution {
  readonly executionArn: string;
  readonly stateMachineArn: string;
  readonly name: string;
  readonly input: string;
  readonly startDate: number;
  status: ExecutionStatus;
  output?: string;
  error?: string;
  cause?: string;
  stopDate?: number;
  abort?: () => void;
  done: Promise<void>;
  readonly taskInvocations: Record<string, number>;
}

const MAX_INPUT_BYTES = 256 * 1024;
const INVALID_NAME = /[\s<>{}[\]?*"#%\\^|~`$&,;:/\u0000-\u001f\u007f-\u009f]/;

export class LocalStepFunctions {
  readonly #machines = new Map<string, RegisteredMachine>();
  readonly #executions = new Map<string, Execution>();
  readonly #listeners = new Set<(notice: ExecutionNotice) => void>();
  readonly #timeScale: number;
  readonly #tasksInFlight = new Set<Promise<unknown>>();

  constructor(options: LocalStepFunctionsOptions) {
    this.#timeScale = options.timeScale ?? 1;
    for (const definition of options.stateMachines) this.#register(definition);
  }

  /** Calls `listener` on execution starts, Task results and ends. Returns an unsubscribe function. */
  subscribe(listener: (notice: ExecutionNotice) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Every execution, oldest first. */
  executions(): ExecutionView[] {
    return [...this.#executions.values()].map((execution) => view(execution));
  }

  /** Resolves when no execution is RUNNING. */
  async whenIdle(): Promise<void> {
    for (;;) {
      const running = [...this.#executions.values()].filter((execution) => execution.status === 'RUNNING');
      if (running.length === 0) return;
      await Promise.all(running.map((execution) => execution.done));
    }
  }

  /**
   * Aborts every running execution (status ABORTED), waits for them to end and for the
   * Task invocations under way to return (at most `taskGraceMs`).
   */
  async stopAll(taskGraceMs = 10_000): Promise<void> {
    for (const execution of this.#executions.values()) {
      if (execution.status === 'RUNNING') this.#stop(execution, 'LocalRuntimeShutdown', 'the local runtime is shutting down');
    }
    await this.whenIdle();
    if (this.#tasksInFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.#tasksInFlight]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, taskGraceMs);
      }),
    ]);
    clearTimeout(timer);
  }

  startExecution(input: Record<string, unknown>): { executionArn: string; startDate: number } {
    const stateMachineArn = requireString(input, 'stateMachineArn');
    const machine = this.#machines.get(stateMachineArn);
    if (machine === undefined) throw new AwsServiceError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
    const name = optionalString(input, 'name') ?? randomUUID();
    if (name.length < 1 || name.length > 80 || INVALID_NAME.test(name)) throw new AwsServiceError('InvalidName', `Invalid Name: '${name}'`);
    const inputText = optionalString(input, 'input') ?? '{}';
    if (Buffer.byteLength(inputText) > MAX_INPUT_BYTES)
      throw new AwsServiceError('InvalidExecutionInput', `Execution input is over ${MAX_INPUT_BYTES} bytes`);
    let parsedInput: JsonValue;
    try {
      parsedInput = JSON.parse(inputText) as JsonValue;
    } catch {
      throw new AwsServiceError('InvalidExecutionInput', 'Invalid State Machine Execution Input: the input is not valid JSON');
    }
    const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
    const existing = this.#executions.get(executionArn);
    if (existing !== undefined) {
      if (existing.status === 'RUNNING' && existing.input === inputText) {
        return { executionArn, startDate: awsTimestamp(existing.startDate) };
      }
      throw new AwsServiceError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
    }
    const execution = this.#run(machine, executionArn, name, inputText, parsedInput);
    return { executionArn, startDate: awsTimestamp(execution.startDate) };
  }

  describeExecution(input: Record<string, unknown>): Record<string, unknown> {
    const execution = this.#find(requireString(input, 'executionArn'));
    return {
      executionArn: execution.executionArn,
      stateMachineArn: execution.stateMachineArn,
      name: execution.name,
      status: execution.status,
      startDate: awsTimestamp(execution.startDate),
      input: execution.input,
      inputDetails: { included: true },
      ...(execution.stopDate === undefined ? {} : { stopDate: awsTimestamp(execution.stopDate) }),
      ...(execution.output === undefined ? {} : { output: execution.output, outputDetails: { included: true } }),
      ...(execution.error === undefined ? {} : { error: execution.error }),
      ...(execution.cause === undefined ? {} : { cause: execution.cause }),
    };
  }

  stopExecution(input: Record<string, unknown>): { stopDate: number } {
    const execution = this.#find(requireString(input, 'executionArn'));
    if (execution.status === 'RUNNING') this.#stop(execution, optionalString(input, 'error'), optionalString(input, 'cause'));
    return { stopDate: awsTimestamp(execution.stopDate ?? Date.now()) };
  }

  listExecutions(input: Record<string, unknown>): Record<string, unknown> {
    const stateMachineArn = requireString(input, 'stateMachineArn');
    if (!this.#machines.has(stateMachineArn))
      throw new AwsServiceError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
    const statusFilter = optionalString(input, 'statusFilter');
    const maxResults = typeof input.maxResults === 'number' && input.maxResults > 0 ? Math.min(input.maxResults, 1000) : 100;
    const offset = typeof input.nextToken === 'string' && /^\d+$/.test(input.nextToken) ? Number(input.nextToken) : 0;
    const matching = [...this.#executions.values()]
      .filter(
        (execution) => execution.stateMachineArn === stateMachineArn && (statusFilter === undefined || execution.status === statusFilter),
      )
      .sort((a, b) => b.startDate - a.startDate);
    const page = matching.slice(offset, offset + maxResults);
    return {
      executions: page.map((execution) => ({
        executionArn: execution.executionArn,
        stateMachineArn: execution.stateMachineArn,
        name: execution.name,
        status: execution.status,
        startDate: awsTimestamp(execution.startDate),
        ...(execution.stopDate === undefined ? {} : { stopDate: awsTimestamp(execution.stopDate) }),
      })),
      ...(offset + maxResults < matching.length ? { nextToken: String(offset + maxResults) } : {}),
    };
  }

  describeStateMachine(input: Record<string, unknown>): Record<string, unknown> {
    const arn = requireString(input, 'stateMachineArn');
    const machine = this.#machines.get(arn);
    if (machine === undefined) throw new AwsServiceError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${arn}'`);
    return {
      stateMachineArn: machine.arn,
      name: machine.name,
      status: 'ACTIVE',
      definition: JSON.stringify(machine.definition),
      roleArn: `arn:aws:iam::000000000000:role/${machine.name}Role`,
      type: 'STANDARD',
      creationDate: 0,
    };
  }

  service(): AwsJsonService {
    return {
      name: 'Step Functions',
      targetPrefix: 'AWSStepFunctions',
      contentType: 'application/x-amz-json-1.0',
      operations: {
        StartExecution: (input) => this.startExecution(input),
        DescribeExecution: (input) => this.describeExecution(input),
        StopExecution: (input) => this.stopExecution(input),
        ListExecutions: (input) => this.listExecutions(input),
        DescribeStateMachine: (input) => this.describeStateMachine(input),
      },
    };
  }

  #register(definition: LocalStateMachineDefinition): void {
    // Nested Parallel/Map Tasks included: an unrouted Task would invoke a REAL Lambda.
    assertEveryTaskRouted(definition.definition, definition.taskHandlers);
    const asl = withLocalTimeoutLimit(definition.definition);
    const states = new Map(Object.entries(asl.States));
    // Validation is on (checkPaths/checkArn included): the same definition must pass it.
    const machine = new StateMachine(asl as never);
    this.#machines.set(definition.arn, {
      arn: definition.arn,
      name: definition.name,
      definition: asl,
      states,
      machine,
      taskHandlers: definition.taskHandlers,
    });
  }

  #find(executionArn: string): Execution {
    const execution = this.#executions.get(executionArn);
    if (execution === undefined) throw new AwsServiceError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    return execution;
  }

  #notify(notice: ExecutionNotice): void {
    for (const listener of this.#listeners) {
      try {
        listener(notice);
      } catch {
        // Observers never break executions.
      }
    }
  }

  #stop(execution: Execution, error: string | undefined, cause: string | undefined): void {
    execution.status = 'ABORTED';
    execution.stopDate = Date.now();
    if (error !== undefined) execution.error = error;
    if (cause !== undefined) execution.cause = cause;
    execution.abort?.();
  }

  #run(machine: RegisteredMachine, executionArn: string, name: string, inputText: string, input: JsonValue): Execution {
    let document: unknown = input;
    const execution: Execution = {
      executionArn,
      stateMachineArn: machine.arn,
      name,
      input: inputText,
      startDate: Date.now(),
      status: 'RUNNING',
      done: Promise.resolve(),
      taskInvocations: {},
    };
    const handlers: Record<string, TaskHandler> = {};
    for (const [stateName, handler] of Object.entries(machine.taskHandlers)) {
      const state = machine.states.get(stateName);
      handlers[stateName] = async (taskInput) => {
        execution.taskInvocations[stateName] = (execution.taskInvocations[stateName] ?? 0) + 1;
        const rawInput = document;
        const invocation = handler(taskInput);
        this.#tasksInFlight.add(invocation);
        try {
          const output = await invocation;
          if (state !== undefined) document = nextDocument(state, rawInput, output);
          this.#notify({ type: 'task', execution: view(execution), state: stateName, output });
          return output;
        } catch (error) {
          throw toTaskError(error);
        } finally {
          this.#tasksInFlight.delete(invocation);
        }
      };
    }
    const { abort, result } = machine.machine.run(input, {
      overrides: {
        taskResourceLocalHandlers: handlers,
        waitTimeOverrides: scaledWaitOverrides(machine.definition, this.#timeScale, () => document),
        retryIntervalOverrides: scaledRetryOverrides(machine.definition, this.#timeScale),
      },
      context: {
        Execution: {
          Id: executionArn,
          Input: input,
          Name: name,
          StartTime: new Date(execution.startDate).toISOString(),
          RoleArn: `arn:aws:iam::000000000000:role/${machine.name}Role`,
        },
        StateMachine: { Id: machine.arn, Name: machine.name },
      },
    });
    execution.abort = abort;
    execution.done = result
      .then(
        (output) => {
          if (execution.status !== 'RUNNING') return;
          execution.status = 'SUCCEEDED';
          execution.output = JSON.stringify(output);
          execution.stopDate = Date.now();
        },
        (error: unknown) => {
          if (execution.status !== 'RUNNING') return;
          execution.stopDate = Date.now();
          if (error instanceof ExecutionAbortedError) {
            execution.status = 'ABORTED';
          } else if (error instanceof ExecutionTimeoutError) {
            execution.status = 'TIMED_OUT';
            execution.error = 'States.Timeout';
          } else {
            execution.status = 'FAILED';
            const cause =
              error instanceof ExecutionError && error.cause instanceof Error
                ? error.cause
                : error instanceof Error
                  ? error
                  : new Error(String(error));
            execution.error = cause.name;
            execution.cause = cause.message;
          }
        },
      )
      .finally(() => this.#notify({ type: 'ended', execution: view(execution) }));
    this.#executions.set(executionArn, execution);
    this.#notify({ type: 'started', execution: view(execution) });
    return execution;
  }
}

/**
 * A Task failure that names the error Retry/Catch see (`errorType`) and its `Cause`: the
 * runtime's `LambdaFunctionError` (a handler failure as Lambda reports it) is one.
 */
export interface TaskFailure {
  readonly errorType: string;
  stepFunctionsCause(): string;
}

function isTaskFailure(error: unknown): error is TaskFailure {
  return (
    error instanceof Error &&
    typeof (error as Partial<TaskFailure>).errorType === 'string' &&
    typeof (error as Partial<TaskFailure>).stepFunctionsCause === 'function'
  );
}

/** The error a failed Lambda Task shows to Retry/Catch: Error = errorType, Cause = Lambda's JSON. */
function toTaskError(error: unknown): Error {
  if (isTaskFailure(error)) {
    const taskError = new Error(error.stepFunctionsCause());
    taskError.name = error.errorType;
    return taskError;
  }
  return error instanceof Error ? error : new Error(String(error));
}

function view(execution: Execution): ExecutionView {
  return {
    executionArn: execution.executionArn,
    stateMachineArn: execution.stateMachineArn,
    name: execution.name,
    status: execution.status,
    input: execution.input,
    startDate: execution.startDate,
    taskInvocations: { ...execution.taskInvocations },
    ...(execution.output === undefined ? {} : { output: execution.output }),
    ...(execution.error === undefined ? {} : { error: execution.error }),
    ...(execution.cause === undefined ? {} : { cause: execution.cause }),
    ...(execution.stopDate === undefined ? {} : { stopDate: execution.stopDate }),
  };
}
