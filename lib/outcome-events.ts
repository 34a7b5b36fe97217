import * as events from 'aws-cdk-lib/aws-events';
import { Construct } from 'constructs';
import { DETAIL_TYPE, EVENT_SOURCE } from '../lambdas/contract/constants';

/** Props of {@link OutcomeEvents}. */
export interface OutcomeEventsProps {
  /**
   * Publish outcome events to this bus instead of creating one.
   * @default - a new custom event bus
   */
  readonly eventBus?: events.IEventBus;
  /**
   * Props of the bus created when `eventBus` is not given.
   * @default - none
   */
  readonly eventBusProps?: events.EventBusProps;
}

/**
 * Where outcome events go: a custom EventBridge bus (or one passed in). Subscribers match
 * on {@link OutcomeEvents.eventPattern}.
 *
 * @example
 * const outcomes = new OutcomeEvents(this, 'Outcomes');
 * new events.Rule(this, 'OnCompleted', {
 *   eventBus: outcomes.eventBus,
 *   eventPattern: outcomes.eventPattern(DETAIL_TYPE.COMPLETED),
 *   targets: [new targets.SqsQueue(resultsQueue)],
 * });
 */
export class OutcomeEvents extends Construct {
  public readonly eventBus: events.IEventBus;
  /** True when this construct created the bus (false when it was passed in). */
  public readonly created: boolean;

  constructor(scope: Construct, id: string, props: OutcomeEventsProps = {}) {
    super(scope, id);
    this.created = props.eventBus === undefined;
    this.eventBus =
      props.eventBus ?? new events.EventBus(this, 'Bus', { description: 'Waterflai execution outcomes', ...props.eventBusProps });
  }

  /**
   * The pattern of the orchestrator's outcome events, optionally narrowed to some detail-types.
   * @param detailTypes e.g. `DETAIL_TYPE.COMPLETED`
   */
  public eventPattern(...detailTypes: string[]): events.EventPattern {
    return {
      source: [EVENT_SOURCE],
      detailType: detailTypes.length > 0 ? detailTypes : Object.values(DETAIL_TYPE),
    };
  }
}
