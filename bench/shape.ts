/**
 * The cost-relevant shape of the real poll loop, read from the synthesized CloudFormation
 * template (not assumed): which states one loop iteration runs, which states finish a job,
 * the state transitions and history events each of those adds, and the poll and finish
 * functions' memory and timeout.
 */
import { STATE_NAME, TERMINAL_STATUSES } from '../lambdas/contract/constants';
import {
  resolveStateMachineDefinition,
  synthesizeTemplate,
  taskFunctionLogicalIds,
  type AslDefinition,
  type AslState,
  type CloudFormationTemplate,
} from '../local/asl';

/**
 * History events Step Functions writes when it runs one state of a type: every state has
 * an Entered and an Exited event; a Lambda Task adds Scheduled, Started and Succeeded.
 * (Wait 2, Task 5, Choice 2, Succeed 2.)
 */
export const HISTORY_EVENTS_BY_TYPE: Readonly<Record<string, number>> = { Wait: 2, Task: 5, Choice: 2, Succeed: 2, Pass: 2, Fail: 2 };
/** ExecutionStarted and ExecutionSucceeded. */
export const EXECUTION_HISTORY_EVENTS = 2;

export interface LoopShape {
  /** States one poll iteration runs, in order (Wait, poll Task, Choice). */
  readonly iterationStates: readonly string[];
  /** States after the Choice sees a terminal status, in order. */
  readonly finishStates: readonly string[];
  readonly transitionsPerIteration: number;
  readonly transitionsToFinish: number;
  readonly historyEventsPerIteration: number;
  /** Finish states plus ExecutionStarted/ExecutionSucceeded. */
  readonly historyEventsFixed: number;
  readonly poll: FunctionShape;
  readonly finish: FunctionShape;
}

export interface FunctionShape {
  readonly logicalId: string;
  readonly memoryMb: number;
  readonly timeoutSeconds: number;
}

function state(definition: AslDefinition, name: string): AslState {
  const found = definition.States[name];
  if (found === undefined) throw new Error(`the definition has no state "${name}"`);
  return found;
}

/** Follows `Next` (and a Choice's `Default`) from StartAt until the loop closes. */
function loopFrom(definition: AslDefinition): string[] {
  const path: string[] = [];
  let current: string | undefined = definition.StartAt;
  while (current !== undefined && !path.includes(current)) {
    path.push(current);
    const s = state(definition, current);
    current = (s.Type === 'Choice' ? s.Default : s.Next) as string | undefined;
  }
  if (current !== definition.StartAt) throw new Error(`the poll loop does not return to ${definition.StartAt}: ${path.join(' -> ')}`);
  return path;
}

/** From the Choice, the states run for a terminal status (COMPLETED), up to the end. */
function finishFrom(definition: AslDefinition, choiceName: string): string[] {
  const choice = state(definition, choiceName);
  const rules = (choice.Choices ?? []) as Array<{ Variable?: string; StringEquals?: string; Next?: string }>;
  const rule = rules.find((r) => r.Variable === '$.status' && r.StringEquals === TERMINAL_STATUSES[0]);
  if (rule?.Next === undefined) throw new Error(`the Choice "${choiceName}" has no rule for status ${TERMINAL_STATUSES[0]}`);
  const path: string[] = [];
  let current: string | undefined = rule.Next;
  while (current !== undefined) {
    if (path.includes(current)) throw new Error('the finishing path loops');
    path.push(current);
    const s = state(definition, current);
    if (s.Type === 'Succeed' || s.Type === 'Fail' || s.End === true) break;
    current = s.Next as string | undefined;
  }
  return path;
}

function eventsOf(definition: AslDefinition, names: readonly string[]): number {
  return names.reduce((sum, name) => {
    const type = state(definition, name).Type;
    const events = HISTORY_EVENTS_BY_TYPE[type];
    if (events === undefined) throw new Error(`no history-event count for state type ${type}`);
    return sum + events;
  }, 0);
}

function functionShape(template: CloudFormationTemplate, logicalId: string): FunctionShape {
  const properties = template.Resources?.[logicalId]?.Properties ?? {};
  const memoryMb = typeof properties.MemorySize === 'number' ? properties.MemorySize : 128;
  const timeoutSeconds = typeof properties.Timeout === 'number' ? properties.Timeout : 3;
  return { logicalId, memoryMb, timeoutSeconds };
}

/** Reads the loop shape from a template (default: the orchestrator stack synthesized now). */
export function loopShape(template: CloudFormationTemplate = synthesizeTemplate()): LoopShape {
  const definition = resolveStateMachineDefinition(template);
  const iterationStates = loopFrom(definition);
  const choice = iterationStates.find((name) => state(definition, name).Type === 'Choice');
  if (choice === undefined) throw new Error('the poll loop has no Choice state');
  const finishStates = finishFrom(definition, choice);
  const routes = taskFunctionLogicalIds(template);
  const pollId = routes[STATE_NAME.POLL];
  const finishId = routes[STATE_NAME.FINISH];
  if (pollId === undefined || finishId === undefined) throw new Error('the poll or finish Task does not invoke a function of the template');
  if (!iterationStates.includes(STATE_NAME.POLL)) throw new Error(`the loop does not run ${STATE_NAME.POLL}`);
  return {
    iterationStates,
    finishStates,
    transitionsPerIteration: iterationStates.length,
    transitionsToFinish: finishStates.length,
    historyEventsPerIteration: eventsOf(definition, iterationStates),
    historyEventsFixed: eventsOf(definition, finishStates) + EXECUTION_HISTORY_EVENTS,
    poll: functionShape(template, pollId),
    finish: functionShape(template, finishId),
  };
}
