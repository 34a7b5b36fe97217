/**
 * A local EventBridge: `PutEvents` (awsJson1_1, `X-Amz-Target: AWSEvents.PutEvents`) onto
 * named buses, recording every accepted event with its `Detail` parsed, and telling
 * subscribers as each one is published. Entries are validated the way EventBridge does
 * (Source, DetailType and a JSON-object Detail are required; at most 10 entries; 256 KB),
 * and a bad entry fails alone with an entry-level error code. Rules (an event pattern on a
 * bus) get every matching event delivered, as EventBridge would to their targets.
 */
import { randomUUID } from 'node:crypto';
import type { PutEventsEntryFaultHook } from '../faults/hooks';
import { AwsServiceError, type AwsJsonService } from './aws-json-server';
import { matchesPattern, validatePattern } from './event-pattern';

/** An event as a rule target would receive it. */
export interface PublishedEvent {
  readonly version: '0';
  readonly id: string;
  readonly source: string;
  readonly 'detail-type': string;
  /** The parsed `Detail`. */
  readonly detail: unknown;
  readonly time: string;
  readonly region: string;
  readonly account: string;
  readonly resources: readonly string[];
  /** The bus it was put on (not part of the AWS envelope; for local inspection). */
  readonly eventBusName: string;
}

export type EventListener = (event: PublishedEvent) => void;

/** A rule: events on `busName` matching `pattern` are handed to `deliver`. */
export interface LocalRule {
  readonly name: string;
  readonly busName: string;
  readonly pattern: unknown;
  readonly deliver: (event: PublishedEvent) => void;
}

/** An event published by the runtime itself (e.g. an `aws.states` status change). */
export interface ServiceEvent {
  readonly source: string;
  readonly detailType: string;
  readonly detail: Record<string, unknown>;
  readonly busName?: string;
  readonly resources?: readonly string[];
}

export interface LocalEventBridgeOptions {
  readonly region: string;
  readonly account: string;
  /** Buses that exist besides `default`. */
  readonly busNames: readonly string[];
  /** Entry-level faults of `PutEvents` (`local/faults/hooks.ts`); replaceable with `setEntryFaultHook`. @default none */
  readonly entryFaultHook?: PutEventsEntryFaultHook;
}

/** Largest entry EventBridge accepts. */
const MAX_ENTRY_BYTES = 256 * 1024;
const MAX_ENTRIES = 10;

export class LocalEventBridge {
  readonly #events: PublishedEvent[] = [];
  readonly #listeners = new Set<EventListener>();
  readonly #buses: Set<string>;
  readonly #rules: LocalRule[] = [];
  #entryFaultHook: PutEventsEntryFaultHook | undefined;

  constructor(private readonly options: LocalEventBridgeOptions) {
    this.#buses = new Set(['default', ...options.busNames]);
    this.#entryFaultHook = options.entryFaultHook;
  }

  /** Replaces the entry fault hook (`undefined`: no faults). */
  setEntryFaultHook(hook: PutEventsEntryFaultHook | undefined): void {
    this.#entryFaultHook = hook;
  }

  /** Every event accepted so far, oldest first (copies). */
  events(): PublishedEvent[] {
    return [...this.#events];
  }

  /** Calls `listener` for each event accepted from now on. Returns an unsubscribe function. */
  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Adds a rule. @throws UnsupportedPatternError for a pattern the local matcher does not
   *   support, Error for an unknown bus
   */
  addRule(rule: LocalRule): void {
    validatePattern(rule.pattern);
    if (!this.#buses.has(rule.busName)) throw new Error(`rule ${rule.name}: event bus ${rule.busName} does not exist`);
    this.#rules.push(rule);
  }

  /** Publishes an event on behalf of an AWS service (no `aws.*` source restriction). */
  publish(event: ServiceEvent): PublishedEvent {
    return this.#accept(event.source, event.detailType, event.detail, event.busName ?? 'default', [...(event.resources ?? [])], new Date());
  }

  /** `PutEvents` with the SDK's input shape; returns its output shape. */
  putEvents(input: Record<string, unknown>): { FailedEntryCount: number; Entries: Array<Record<string, string>> } {
    const entries = input.Entries;
    if (!Array.isArray(entries) || entries.length === 0 || entries.length > MAX_ENTRIES) {
      throw new AwsServiceError(
        'ValidationException',
        `1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and ${MAX_ENTRIES}`,
      );
    }
    let failed = 0;
    const results = entries.map((raw: unknown) => {
      const result = this.#putEntry(raw);
      if ('ErrorCode' in result) failed += 1;
      return result;
    });
    return { FailedEntryCount: failed, Entries: results };
  }

  /** The service definition for {@link startAwsJsonServer}. */
  service(): AwsJsonService {
    return {
      name: 'EventBridge',
      targetPrefix: 'AWSEvents',
      contentType: 'application/x-amz-json-1.1',
      operations: {
        PutEvents: (input) => this.putEvents(input),
        ListEventBuses: () => ({ EventBuses: [...this.#buses].map((name) => ({ Name: name, Arn: this.#busArn(name) })) }),
      },
    };
  }

  #busArn(name: string): string {
    return `arn:aws:events:${this.options.region}:${this.options.account}:event-bus/${name}`;
  }

  #putEntry(raw: unknown): Record<string, string> {
    if (typeof raw !== 'object' || raw === null) return { ErrorCode: 'InvalidArgument', ErrorMessage: 'Entry is not an object.' };
    const entry = raw as Record<string, unknown>;
    const { Source: source, DetailType: detailType, Detail: detailText } = entry;
    if (
      typeof source !== 'string' ||
      source === '' ||
      typeof detailType !== 'string' ||
      detailType === '' ||
      typeof detailText !== 'string'
    ) {
      return { ErrorCode: 'InvalidArgument', ErrorMessage: 'Parameters Source, DetailType and Detail are required.' };
    }
    let detail: unknown;
    try {
      detail = JSON.parse(detailText);
    } catch {
      return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed.' };
    }
    if (typeof detail !== 'object' || detail === null || Array.isArray(detail)) {
      return { ErrorCode: 'MalformedDetail', ErrorMessage: 'Detail is malformed: it must be a JSON object.' };
    }
    if (source.startsWith('aws.')) {
      return { ErrorCode: 'NotAuthorizedForSourceException', ErrorMessage: `Not authorized for the source ${source}.` };
    }
    const busValue = typeof entry.EventBusName === 'string' && entry.EventBusName !== '' ? entry.EventBusName : 'default';
    const busName = /^arn:[^:]+:events:[^:]*:\d*:event-bus\/(.+)$/.exec(busValue)?.[1] ?? busValue;
    if (!this.#buses.has(busName)) {
      return { ErrorCode: 'NotFoundException', ErrorMessage: `Event bus ${busName} does not exist.` };
    }
    const resources = Array.isArray(entry.Resources) ? entry.Resources.filter((item): item is string => typeof item === 'string') : [];
    const size =
      Buffer.byteLength(source) +
      Buffer.byteLength(detailType) +
      Buffer.byteLength(detailText) +
      resources.reduce((sum, item) => sum + Buffer.byteLength(item), 0);
    if (size > MAX_ENTRY_BYTES)
      return { ErrorCode: 'InvalidArgument', ErrorMessage: `Entry is ${size} bytes, over the ${MAX_ENTRY_BYTES} byte limit.` };
    const fault = this.#entryFaultHook?.({ source, detailType, detail: detail as Record<string, unknown>, busName });
    if (fault !== undefined) return { ErrorCode: fault.ErrorCode, ErrorMessage: fault.ErrorMessage };
    const time = typeof entry.Time === 'number' ? new Date(entry.Time * 1000) : new Date();
    const event = this.#accept(source, detailType, detail, busName, resources, time);
    return { EventId: event.id };
  }

  #accept(source: string, detailType: string, detail: unknown, busName: string, resources: string[], time: Date): PublishedEvent {
    const event: PublishedEvent = {
      version: '0',
      id: randomUUID(),
      source,
      'detail-type': detailType,
      detail,
      time: time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      region: this.options.region,
      account: this.options.account,
      resources,
      eventBusName: busName,
    };
    this.#events.push(event);
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A failing observer must not fail the publisher.
      }
    }
    const { eventBusName: _bus, ...envelope } = event;
    for (const rule of this.#rules) {
      if (rule.busName !== busName || !matchesPattern(rule.pattern, envelope)) continue;
      try {
        rule.deliver(event);
      } catch {
        // Delivery is the target's business (it retries on its own).
      }
    }
    return event;
  }
}
