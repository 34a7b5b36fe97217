import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { ENV } from '../../lambdas/contract/constants';
import { CONTEXT_KEYS, readOrchestratorConfig } from '../../lib/config';
import { WaterflaiOrchestratorStack } from '../../lib/orchestrator-stack';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111111111111:secret:waterflai/api-key-AbCdEf';

/** Context as an App receives it from cdk.json and `-c`. */
function read(context: Record<string, unknown>) {
  return readOrchestratorConfig(new App({ context }).node);
}

describe('readOrchestratorConfig', () => {
  it('returns no settings when nothing is configured', () => {
    expect(read({ 'some-other-tool:flag': true })).toEqual({});
  });

  it('reads the waterflai object from cdk.json', () => {
    const config = read({
      waterflai: { baseUrl: 'https://eu.waterflai.example', maxJobDurationHours: 1.5, pollIntervalSeconds: 30, removalPolicy: 'destroy' },
    });
    expect(config).toEqual({
      baseUrl: 'https://eu.waterflai.example',
      maxJobDurationHours: 1.5,
      pollIntervalSeconds: 30,
      removalPolicy: 'destroy',
    });
  });

  it('reads flat -c keys (strings) and lets them win over the object', () => {
    const config = read({
      waterflai: { pollIntervalSeconds: 30, batchSize: 5 },
      'waterflai:pollIntervalSeconds': '60',
      'waterflai:apiKeySecretArn': SECRET_ARN,
      'waterflai:logRetentionDays': '90',
    });
    expect(config).toEqual({ pollIntervalSeconds: 60, batchSize: 5, apiKeySecretArn: SECRET_ARN, logRetentionDays: 90 });
  });

  it('accepts the object as a JSON string (`-c waterflai={...}`)', () => {
    expect(read({ waterflai: '{"eventBusName":"shared-bus"}' })).toEqual({ eventBusName: 'shared-bus' });
  });

  it('documents every key', () => {
    expect(CONTEXT_KEYS).toContain('waterflai:baseUrl');
    expect(CONTEXT_KEYS).toContain('waterflai:apiKeySecretArn');
    expect(CONTEXT_KEYS).toContain('waterflai:maxJobDurationHours');
  });

  it.each([
    [{ 'waterflai:baseURL': 'https://x' }, /unknown context key "waterflai:baseURL"; known keys: waterflai:stackName/],
    [{ waterflai: { pollInterval: 10 } }, /unknown context key "waterflai:pollInterval"/],
    [{ waterflai: ['baseUrl'] }, /context "waterflai" must be an object/],
    [{ waterflai: '{not json' }, /context "waterflai" must be a JSON object/],
    [{ 'waterflai:pollIntervalSeconds': 'ten' }, /"waterflai:pollIntervalSeconds" must be a positive integer, got "ten"/],
    [{ 'waterflai:batchSize': 2.5 }, /"waterflai:batchSize" must be a positive integer/],
    [{ 'waterflai:maxJobDurationHours': '0' }, /"waterflai:maxJobDurationHours" must be a positive number/],
    [{ 'waterflai:apiKeySecretArn': 'waterflai/api-key' }, /"waterflai:apiKeySecretArn" must be the complete ARN/],
    [{ 'waterflai:logRetentionDays': '31' }, /"waterflai:logRetentionDays" must be one of the CloudWatch Logs retention values 1, 3, 5/],
    [{ 'waterflai:removalPolicy': 'keep' }, /"waterflai:removalPolicy" must be "retain" or "destroy"/],
    [{ 'waterflai:baseUrl': 42 }, /"waterflai:baseUrl" must be a non-empty string/],
  ])('rejects %j', (context, message) => {
    expect(() => read(context)).toThrow(message);
  });
});

describe('WaterflaiOrchestratorStack built from context settings', () => {
  let template: Template;

  beforeAll(() => {
    // Prepare
    const app = new App({
      context: {
        'aws:cdk:bundling-stacks': [],
        waterflai: {
          apiKeySecretArn: SECRET_ARN,
          eventBusName: 'shared-bus',
          maxJobDurationHours: 6,
          removalPolicy: 'destroy',
          logRetentionDays: 7,
          jobRetentionDays: 30,
        },
      },
    });
    const config = readOrchestratorConfig(app.node);
    // Act
    template = Template.fromStack(new WaterflaiOrchestratorStack(app, 'FromContext', { config }));
  });

  it('uses the existing secret and bus instead of creating them', () => {
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    template.resourceCountIs('AWS::Events::EventBus', 0);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: { [ENV.WATERFLAI_API_KEY_SECRET_ID]: SECRET_ARN, [ENV.EVENT_BUS_NAME]: 'shared-bus', [ENV.JOB_RETENTION_DAYS]: '30' },
      },
    });
  });

  it('applies the duration, retention and removal settings', () => {
    expect(JSON.stringify(template.toJSON())).toContain(`\\"TimeoutSeconds\\":${7 * 3600}`);
    template.allResourcesProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete' });
    template.allResources('AWS::SQS::Queue', { DeletionPolicy: 'Delete' });
  });
});
