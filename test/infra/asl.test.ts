import { describe, expect, it } from 'vitest';
import {
  LOCAL_MAX_TIMEOUT_SECONDS,
  resolveStateMachineDefinition,
  taskFunctionLogicalIds,
  withLocalTimeoutLimit,
  type CloudFormationTemplate,
} from '../../local/asl';

const FUNCTION = { Type: 'AWS::Lambda::Function', Properties: {} };

function templateWith(definitionProperties: Record<string, unknown>, extra: Record<string, unknown> = {}): CloudFormationTemplate {
  return {
    Resources: {
      Fn: FUNCTION,
      Queue: { Type: 'AWS::SQS::Queue', Properties: {} },
      Machine: { Type: 'AWS::StepFunctions::StateMachine', Properties: definitionProperties },
      ...extra,
    },
    Parameters: { Stage: { Default: 'dev' }, NoDefault: {} },
  };
}

describe('resolveStateMachineDefinition', () => {
  it('resolves Fn::Join, Ref, Fn::GetAtt, Fn::Sub and pseudo parameters to fake values', () => {
    // Prepare
    const template = templateWith({
      DefinitionString: {
        'Fn::Join': [
          '',
          [
            '{"StartAt":"Call","States":{"Call":{"Type":"Task","Resource":"',
            { 'Fn::GetAtt': ['Fn', 'Arn'] },
            '","Parameters":{"queue":"',
            { Ref: 'Queue' },
            '","where":"',
            { 'Fn::Sub': '${AWS::Region}/${Stage}/${Queue.QueueName}/${!Literal}' },
            '"},"End":true}}}',
          ],
        ],
      },
    });
    // Act
    const definition = resolveStateMachineDefinition(template);
    // Assess
    expect(definition.States.Call).toEqual({
      Type: 'Task',
      Resource: 'arn:aws:lambda:us-east-1:123456789012:function:Fn',
      Parameters: { queue: 'https://sqs.us-east-1.amazonaws.com/123456789012/Queue', where: 'us-east-1/dev/Queue/${Literal}' },
      End: true,
    });
  });

  it('applies DefinitionSubstitutions', () => {
    const template = templateWith({
      DefinitionString: '{"StartAt":"Call","States":{"Call":{"Type":"Task","Resource":"${fn}","End":true}}}',
      DefinitionSubstitutions: { fn: { 'Fn::GetAtt': ['Fn', 'Arn'] } },
    });
    expect(taskFunctionLogicalIds(template)).toEqual({ Call: 'Fn' });
  });

  it('maps lambda:invoke integrations and nested Parallel branches to their functions', () => {
    const template = templateWith({
      Definition: {
        StartAt: 'Both',
        States: {
          Both: {
            Type: 'Parallel',
            End: true,
            Branches: [
              {
                StartAt: 'Inner',
                States: {
                  Inner: {
                    Type: 'Task',
                    Resource: 'arn:aws:states:::lambda:invoke',
                    Parameters: { FunctionName: { 'Fn::GetAtt': ['Fn', 'Arn'] } },
                    End: true,
                  },
                },
              },
            ],
          },
        },
      },
    });
    expect(taskFunctionLogicalIds(template)).toEqual({ Inner: 'Fn' });
  });

  it.each([
    [
      { DefinitionString: { 'Fn::Join': ['', ['{"StartAt":"', { Ref: 'NoDefault' }, '"}']] } },
      /parameter "NoDefault" which has no Default/,
    ],
    [{ DefinitionString: { 'Fn::Join': ['', ['{"x":"', { Ref: 'Missing' }, '"}']] } }, /"Missing", which is not a resource/],
    [{ DefinitionString: { 'Fn::If': ['Cond', 'a', 'b'] } }, /Fn::If is not supported/],
    [{ DefinitionString: '{"States":{}}' }, /no StartAt\/States/],
  ])('fails loudly on %j', (properties, message) => {
    expect(() => resolveStateMachineDefinition(templateWith(properties))).toThrow(message);
  });

  it('refuses a Task that calls something other than a function of the template', () => {
    const template = templateWith({
      DefinitionString: '{"StartAt":"S","States":{"S":{"Type":"Task","Resource":"arn:aws:states:::sqs:sendMessage","End":true}}}',
    });
    expect(() => taskFunctionLogicalIds(template)).toThrow(/Task "S" does not invoke a Lambda function of this template/);
  });

  it('asks for a logical id when there are several state machines', () => {
    const template = templateWith(
      { DefinitionString: '{"StartAt":"A","States":{"A":{"Type":"Succeed"}}}' },
      {
        Other: {
          Type: 'AWS::StepFunctions::StateMachine',
          Properties: { DefinitionString: '{"StartAt":"B","States":{"B":{"Type":"Succeed"}}}' },
        },
      },
    );
    expect(() => resolveStateMachineDefinition(template)).toThrow(/2 state machines \(Machine, Other\); pass a logical id/);
    expect(resolveStateMachineDefinition(template, 'Other').StartAt).toBe('B');
  });
});

describe('withLocalTimeoutLimit', () => {
  it('caps TimeoutSeconds to what setTimeout can wait, leaving the input untouched', () => {
    const definition = { StartAt: 'A', States: { A: { Type: 'Succeed' } }, TimeoutSeconds: 365 * 24 * 3600 };
    expect(withLocalTimeoutLimit(definition).TimeoutSeconds).toBe(LOCAL_MAX_TIMEOUT_SECONDS);
    expect(definition.TimeoutSeconds).toBe(365 * 24 * 3600);
    expect(withLocalTimeoutLimit({ ...definition, TimeoutSeconds: 90_000 }).TimeoutSeconds).toBe(90_000);
  });
});
