#!/usr/bin/env node
/**
 * CDK app entry: creates the App and the stack, nothing else. Settings come from CDK
 * context (the `waterflai` object in cdk.json, or `-c waterflai:<key>=<value>`); see
 * lib/config.ts for the keys.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { readOrchestratorConfig } from '../lib/config';
import { WaterflaiOrchestratorStack } from '../lib/orchestrator-stack';

const app = new App();
try {
  const config = readOrchestratorConfig(app.node);
  new WaterflaiOrchestratorStack(app, config.stackName ?? 'WaterflaiOrchestrator', { config });
} catch (error) {
  // A configuration mistake: say what is wrong without a stack trace (set CDK_DEBUG=true for one).
  console.error(`waterflai-orchestrator: invalid configuration: ${error instanceof Error ? error.message : String(error)}`);
  if (process.env.CDK_DEBUG === 'true') console.error(error);
  process.exit(1);
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
