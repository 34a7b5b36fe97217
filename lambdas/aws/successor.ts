import { ExecutionAlreadyExists, StartExecutionCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { PollState } from '../domain/workflow';

/** The ARN of a named execution of a state machine. */
export function executionArnFor(stateMachineArn: string, name: string): string {
  return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`;
}

/**
 * Starts a named poll-loop execution. Idempotent: a retry with the same name finds the
 * execution it started (`ExecutionAlreadyExists` counts as started).
 */
export async function startSuccessorExecution(client: SFNClient, stateMachineArn: string, name: string, input: PollState): Promise<string> {
  try {
    const result = await client.send(new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }));
    return result.executionArn ?? executionArnFor(stateMachineArn, name);
  } catch (error) {
    if (error instanceof ExecutionAlreadyExists) return executionArnFor(stateMachineArn, name);
    throw error;
  }
}
