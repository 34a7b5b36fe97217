/**
 * The package's main entry (`import { WaterflaiOrchestrator } from 'waterflai-orchestrator'`):
 * the construct, its props, and the deployable stack this repository's CDK app uses. The
 * event contract for subscribers and producers is the `waterflai-orchestrator/events` entry
 * (lambdas/contract/index.ts).
 */
export type { OrchestratorConfig } from './config';
export type { HandlerFunctionOverrides } from './handler-function';
export { ORCHESTRATOR_DEFAULTS, WaterflaiOrchestrator, type WaterflaiOrchestratorProps } from './orchestrator';
export { OUTPUT_ID, WaterflaiOrchestratorStack, type WaterflaiOrchestratorStackProps } from './orchestrator-stack';
