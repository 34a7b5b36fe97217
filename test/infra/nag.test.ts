import { App, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { beforeAll, describe, expect, it } from 'vitest';
import { WaterflaiOrchestratorStack } from '../../lib/orchestrator-stack';

const NO_BUNDLING = { 'aws:cdk:bundling-stacks': [] };

interface Acknowledgment {
  readonly path: string;
  readonly id: string;
  readonly reason: string;
}

/** Every acknowledgment recorded with `Validations.of(...).acknowledge(...)` under `root`. */
function acknowledgments(root: IConstruct): Acknowledgment[] {
  return root.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) =>
        Object.entries(entry.data as Record<string, string>).map(([id, reason]) => ({
          path: construct.node.path,
          id: id.replace(/^annotation::/i, ''),
          reason,
        })),
      ),
  );
}

function describeViolations(report: ReturnType<AwsSolutionsChecks['validateScope']>): string[] {
  return report.violations.map(
    (violation) => `${violation.severity} ${violation.ruleName} at ${violation.violatingResources.map((r) => r.constructPath).join(', ')}`,
  );
}

describe('cdk-nag AwsSolutions on the orchestrator stack', () => {
  let app: App;
  let stack: WaterflaiOrchestratorStack;

  beforeAll(() => {
    // Prepare: the app exactly as bin/app.ts builds it (the pack registered as a validation plugin).
    app = new App({ context: NO_BUNDLING });
    stack = new WaterflaiOrchestratorStack(app, 'Nag');
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  });

  it('reports no unacknowledged error or warning', () => {
    // Act
    const report = new AwsSolutionsChecks().validateScope(stack);
    // Assess
    expect(describeViolations(report)).toEqual([]);
    expect(report.success).toBe(true);
  });

  it('lets the app synthesize with the pack registered, as `cdk synth` does', () => {
    expect(() => app.synth()).not.toThrow();
  });

  it('gives every acknowledgment a reason of at least 10 characters', () => {
    const found = acknowledgments(stack);
    expect(found.length).toBeGreaterThanOrEqual(6);
    for (const ack of found) {
      expect(ack.reason.trim().length, `${ack.id} at ${ack.path}`).toBeGreaterThanOrEqual(10);
    }
  });

  it('acknowledges on single resources and names each IAM5 finding, never the whole rule or the stack', () => {
    const found = acknowledgments(app);
    expect(found.map((ack) => ack.path)).not.toContain(stack.node.path);
    expect(found.map((ack) => ack.path)).not.toContain(app.node.path);
    for (const ack of found.filter((a) => a.id.startsWith('AwsSolutions-IAM5'))) {
      expect(ack.id).toMatch(/^AwsSolutions-IAM5\[Resource::.+\]$/);
      expect(ack.path).toMatch(/\/DefaultPolicy$/);
    }
    expect(found.map((ack) => ack.id)).toContain('AwsSolutions-SMG4');
  });
});

describe('cdk-nag acknowledgments stay narrow', () => {
  it('still reports a new wildcard resource on a function role', () => {
    // Prepare
    const stack = new WaterflaiOrchestratorStack(new App({ context: NO_BUNDLING }), 'Widened');
    stack.orchestrator.pollFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: ['*'] }));
    // Act
    const report = new AwsSolutionsChecks().validateScope(stack);
    // Assess
    expect(describeViolations(report)).toEqual([
      expect.stringMatching(/^error AwsSolutions-IAM5\[Resource::\*\] at .*PollFunctionRole\/DefaultPolicy/),
    ]);
  });

  it('needs no secret acknowledgment when an existing secret is used', () => {
    // Prepare
    const stack = new WaterflaiOrchestratorStack(new App({ context: NO_BUNDLING }), 'External', {
      config: { apiKeySecretArn: 'arn:aws:secretsmanager:us-east-1:111111111111:secret:waterflai-AbCdEf' },
    });
    // Act
    const report = new AwsSolutionsChecks().validateScope(stack);
    // Assess
    expect(describeViolations(report)).toEqual([]);
    expect(acknowledgments(stack).map((ack) => ack.id)).not.toContain('AwsSolutions-SMG4');
  });
});
