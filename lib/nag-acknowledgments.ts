import { Stack, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { IConstruct } from 'constructs';
import type { WaterflaiOrchestrator } from './orchestrator';

/**
 * cdk-nag (v3) acknowledgments for what the AwsSolutions pack flags in the orchestrator by
 * design. Each one is put on the narrowest construct (the one IAM policy, the one secret)
 * and names the exact finding (`AwsSolutions-IAM5[Resource::...]`), so any new wildcard
 * still fails the check.
 */
export function acknowledgeNagFindings(orchestrator: WaterflaiOrchestrator): void {
  const stack = Stack.of(orchestrator);
  const ref = (token: string): string => flattenReference(stack.resolve(token));

  // The job table needs none: lib/grants.ts names each index a role queries ("<table arn>/index/<name>",
  // the sweeper only) instead of Table.grant*'s "<table arn>/index/*".

  for (const role of [
    orchestrator.pollLoop.pollFunctionRole,
    orchestrator.lifecycle.reconcileFunctionRole,
    orchestrator.lifecycle.sweepFunctionRole,
  ]) {
    Validations.of(defaultPolicy(role)).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${ref(orchestrator.outputBucket.bucketArn)}/outputs/*]`,
      reason:
        'The poll function (and the reconcile and sweep functions, for a job whose execution they find completed) stores large final ' +
        "outputs as objects under outputs/<job id>/ in the orchestrator's own output bucket; it may only PutObject there (no read, no delete, no other bucket).",
    });
  }
  Validations.of(orchestrator.outputBucket).acknowledge({
    id: 'AwsSolutions-S1',
    reason:
      'The output bucket is private (public access blocked, SSL only), written by one function role and read by explicit grants; ' +
      'object-level auditing is available through CloudTrail data events, without a second log bucket per deployment.',
  });

  const stateMachinePolicy = defaultPolicy(orchestrator.stateMachine.role);
  for (const fn of [orchestrator.pollFunction, orchestrator.finishFunction]) {
    Validations.of(stateMachinePolicy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${ref(fn.functionArn)}:*]`,
      reason: 'From the LambdaInvoke task grant: "<function arn>:*" covers the versions and aliases of this one function only.',
    });
  }
  Validations.of(stateMachinePolicy).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'Added by StateMachine for logging and tracing: the CloudWatch Logs log-delivery actions and the X-Ray ' +
      'PutTraceSegments/PutTelemetryRecords/GetSampling* actions do not support resource-level permissions, so AWS requires "*".',
  });

  if (orchestrator.apiKeySecret instanceof secretsmanager.Secret) {
    Validations.of(orchestrator.apiKeySecret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The secret holds an API key issued by Waterflai, which no rotation Lambda can mint; the operator replaces it with ' +
        'put-secret-value when Waterflai issues a new key (the Lambdas cache it only briefly).',
    });
  }
}

function defaultPolicy(role: iam.IRole): IConstruct {
  const policy = role.node.tryFindChild('DefaultPolicy');
  if (policy === undefined) throw new Error(`role ${role.node.path} has no DefaultPolicy to acknowledge findings on`);
  return policy;
}

/** Same flattening as cdk-nag's finding ids: `{ "Fn::GetAtt": ["Id", "Arn"] }` becomes `<Id.Arn>`. */
function flattenReference(value: unknown): string {
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (typeof value === 'object' && value !== null) {
    const node = value as Record<string, unknown>;
    const getAtt = node['Fn::GetAtt'];
    if (Array.isArray(getAtt)) return `<${flattenReference(getAtt[0])}.${flattenReference(getAtt[1])}>`;
    if (typeof node.Ref === 'string') return `<${node.Ref}>`;
    const join = node['Fn::Join'];
    if (Array.isArray(join) && typeof join[0] === 'string' && Array.isArray(join[1])) {
      return (join[1] as unknown[]).map(flattenReference).join(join[0]);
    }
  }
  return JSON.stringify(value);
}
