/**
 * The chaos run's fault mix and the policy that injects it into the local runtime, below the
 * handlers, through the hooks of `local/faults/` (`LocalRuntimeFaults`, with its keyed dice,
 * bursts and ledger):
 *
 * - Waterflai: the simulator's own seeded faults (`SimulatorOptions.faults`), refused cancels
 *   (`refuseCancel`), the answer to a DELETE of a finished execution (`finishedCancelAnswer`),
 *   and the upstream incidents of {@link IncidentMix}: outage windows and key rotations, put
 *   on the run's timeline by the plan (`plan.ts`, `ChaosPlan.incidents`) and started by the run.
 * - DynamoDB: a proxy in front of DynamoDB answers throttling and 500s in DynamoDB's exact
 *   error shape, and sometimes loses the answer to a write that took effect.
 * - Step Functions: `StartExecution` answers `ThrottlingException`.
 * - EventBridge: `PutEvents` answers `ThrottlingException`, or fails single entries
 *   (`FailedEntryCount` > 0, entry `ErrorCode`).
 * - SQS: the event source mapping delivers some received messages twice (the producer side
 *   of duplicates, messages sent twice, is in the plan).
 *
 * Every AWS-side decision is keyed (see {@link Dice}): the n-th request of a job for an
 * operation gets the same fault on every run with the same seed. A "burst" makes the next
 * few attempts of the same job and operation fail too, enough to exhaust the SDK's retries
 * (or the outcome publisher's), so the handlers' own retry paths run as well.
 */
import type { SQSRecord } from 'aws-lambda';
import { AwsServiceError } from '../emulators/aws-json-server';
import { Bursts } from '../faults/bursts';
import { Dice } from '../faults/dice';
import type { AwsFault, DynamoDbFault, LocalRuntimeFaults, PutEventsEntry, PutEventsEntryFault } from '../faults/hooks';
import { FaultLedger } from '../faults/ledger';
import { describeDynamoRequest, dynamoJobId, eventIdOfEntry, isDynamoDbWrite, jobIdOfBody, startExecutionJobId } from '../faults/requests';
import { FAULT_KINDS, type FaultSettings, type OutageAnswer, type RouteName } from '../simulator/server';

/**
 * An outage of Waterflai: every request to `routes` fails for `durationMs` (real ms), with
 * 503s, resets or timeouts as weighted by `answers`.
 */
export interface OutageIncident {
  /** When it begins, as a share (0..1) of the time the plan takes to send its job messages. */
  readonly atShare: number;
  /** How long it lasts, real ms (not scaled: the old poll retries gave up after ~90 s at time scale 0.1). */
  readonly durationMs: number;
  readonly routes: readonly RouteName[];
  readonly answers: Readonly<Partial<Record<OutageAnswer, number>>>;
}

/**
 * A rotation of the API key: the run writes a new key into the local Secrets Manager and the
 * simulator accepts it; `revokeOldAfterMs` later the simulator answers the old key 401, long
 * before the Lambdas' 5-minute key cache would have expired.
 */
export interface KeyRotationIncident {
  /** When it happens, as a share (0..1) of the time the plan takes to send its job messages. */
  readonly atShare: number;
  /** Real ms between the new key and the old one's refusal. */
  readonly revokeOldAfterMs: number;
}

/** Upstream incidents of a run (scheduled by the plan, see `ChaosPlan.incidents`). */
export interface IncidentMix {
  readonly outages: readonly OutageIncident[];
  readonly keyRotations: readonly KeyRotationIncident[];
}

/** No incidents. */
export const NO_INCIDENTS: IncidentMix = { outages: [], keyRotations: [] };

/**
 * The default outage: two minutes of real time (20 minutes of job time at the chaos time
 * scale 0.1), longer than the state machine's old `TransientPollError` retries lasted (about
 * 15 minutes of job time), so a poll loop that gives up on transient errors fails its jobs
 * `POLL_FAILED`. It covers the status, cancel and stream routes; the start route stays up (an
 * outage of starts only delays them through the intake queue's retries, and a long one would
 * turn most of the run into start give-ups).
 */
export const DEFAULT_OUTAGE: OutageIncident = {
  atShare: 0.5,
  durationMs: 120_000,
  routes: ['get', 'cancel', 'stream'],
  answers: { error5xx: 6, reset: 3, hang: 1 },
};

/** The default incidents: a key rotation early in the send phase, then the outage. */
export const DEFAULT_INCIDENTS: IncidentMix = {
  outages: [DEFAULT_OUTAGE],
  keyRotations: [{ atShare: 0.2, revokeOldAfterMs: 2_000 }],
};

/** Probabilities (0..1) of the AWS-side faults, per request (or per entry / per received record). */
export interface AwsFaultRates {
  readonly dynamodb: {
    /** `ProvisionedThroughputExceededException` (400). */
    readonly throughputExceeded: number;
    /** `ThrottlingException` (400). */
    readonly throttling: number;
    /** `InternalServerError` (500), before the request is applied. */
    readonly internalError: number;
    /** A write (PutItem/UpdateItem/DeleteItem) is applied, then answered 500 or reset (a lost response). */
    readonly lostResponse: number;
    /** A throttle that lasts for the next {@link BURST_ATTEMPTS}.dynamodb attempts of the same job and operation. */
    readonly burst: number;
  };
  readonly stepFunctions: {
    /** `StartExecution` answers `ThrottlingException` (400). */
    readonly throttling: number;
    readonly burst: number;
  };
  readonly eventBridge: {
    /** `PutEvents` answers `ThrottlingException` (400): nothing is accepted. */
    readonly throttling: number;
    /** One entry fails (`FailedEntryCount` 1, `ErrorCode` `InternalFailure` or `ThrottlingException`). */
    readonly failedEntry: number;
    /** An entry fails on the next {@link BURST_ATTEMPTS}.eventBridge attempts. */
    readonly burst: number;
  };
  readonly sqs: {
    /** A received record is delivered a second time, in another invocation, 0-300 ms later. */
    readonly redelivery: number;
  };
}

/** The whole fault mix: the simulator's settings plus the AWS-side rates. */
export interface FaultMix {
  readonly waterflai: FaultSettings;
  readonly aws: AwsFaultRates;
  /** Outages and key rotations. @default NO_INCIDENTS */
  readonly incidents?: IncidentMix;
}

/** Attempts a burst lasts: the SDK's `maxAttempts` (4) for AWS calls, the publisher's 5 for PutEvents entries. */
export const BURST_ATTEMPTS = { dynamodb: 4, stepFunctions: 4, eventBridge: 5 } as const;

/** The documented default fault mix (local/chaos/README.md). */
export const DEFAULT_FAULT_MIX: FaultMix = {
  waterflai: {
    error5xx: 0.03,
    rateLimit: 0.02,
    reset: 0.015,
    slow: 0.01,
    hang: 0.002,
    malformedJson: 0.015,
    unknownStatus: 0.03,
    statusRegression: 0.03,
    acceptThenFail: 0.02,
    refuseCancel: 0.25,
    retryAfterSeconds: 1,
    slowMs: 1500,
    // The contract does not say how a DELETE of a finished execution is answered: every reading.
    finishedCancelAnswer: [409, 400, 404, 200],
  },
  aws: {
    dynamodb: { throughputExceeded: 0.02, throttling: 0.01, internalError: 0.01, lostResponse: 0.004, burst: 0.003 },
    stepFunctions: { throttling: 0.08, burst: 0.02 },
    eventBridge: { throttling: 0.03, failedEntry: 0.08, burst: 0.02 },
    sqs: { redelivery: 0.05 },
  },
  incidents: DEFAULT_INCIDENTS,
};

/** No faults at all (a baseline run). */
export const NO_FAULTS: FaultMix = {
  waterflai: {},
  aws: {
    dynamodb: { throughputExceeded: 0, throttling: 0, internalError: 0, lostResponse: 0, burst: 0 },
    stepFunctions: { throttling: 0, burst: 0 },
    eventBridge: { throttling: 0, failedEntry: 0, burst: 0 },
    sqs: { redelivery: 0 },
  },
  incidents: NO_INCIDENTS,
};

/** Names of the AWS-side fault kinds, as counted and reported. */
export const AWS_FAULT_KINDS = [
  'dynamodb.throughputExceeded',
  'dynamodb.throttling',
  'dynamodb.internalError',
  'dynamodb.lostResponse',
  'dynamodb.burst',
  'stepFunctions.throttling',
  'stepFunctions.burst',
  'eventBridge.throttling',
  'eventBridge.failedEntry',
  'eventBridge.burst',
  'sqs.redelivery',
] as const;
export type AwsFaultKind = (typeof AWS_FAULT_KINDS)[number];

/** Every fault kind of a run: the simulator's (prefixed `waterflai.`), the AWS-side ones, and the planned duplicate sends. */
export const PLANNED_FAULT_KINDS = ['sqs.duplicateSend', 'sqs.lateDuplicateSend'] as const;
/**
 * What the incidents did, counted by the simulator: requests failed by an outage, 401s for a
 * key revoked by a rotation.
 */
export const INCIDENT_FAULT_KINDS = ['waterflai.outage', 'waterflai.revokedKey'] as const;
export const ALL_FAULT_KINDS = [
  ...FAULT_KINDS.map((kind) => `waterflai.${kind}` as const),
  ...INCIDENT_FAULT_KINDS,
  ...AWS_FAULT_KINDS,
  ...PLANNED_FAULT_KINDS,
] as const;

/**
 * Injects the AWS-side faults of a mix, counts what it injected, and watches DynamoDB's own
 * answers (conditional-check failures are the races duplicates cause).
 */
export class ChaosFaults {
  readonly #dice: Dice;
  readonly #rates: AwsFaultRates;
  readonly #bursts = new Bursts();
  readonly #ledger = new FaultLedger<AwsFaultKind>(AWS_FAULT_KINDS);
  #enabled = true;

  constructor(mix: FaultMix, seed: number) {
    this.#rates = mix.aws;
    this.#dice = new Dice(seed);
  }

  /**
   * What happened to each job below the handlers: every injected fault and every
   * conditional-check failure DynamoDB answered, with the time since the faults were
   * created (`+12.345s DynamoDB UpdateItem[execution_id,status] lost response (reset)`).
   */
  trace(jobId: string): readonly string[] {
    return this.#ledger.trace(jobId);
  }

  /** Adds a line to a job's trace (the run adds the simulator's lines). */
  note(jobId: string, line: string, atMs: number = Date.now()): void {
    this.#ledger.note(jobId, line, atMs);
  }

  /** Seconds from the creation of the faults (the origin of the traces) to `atMs`. */
  since(atMs: number): number {
    return this.#ledger.since(atMs);
  }

  /** AWS-side faults injected into each job's requests so far (by job id). */
  struckByJob(): Record<string, number> {
    return this.#ledger.struckByJob();
  }

  /** Stops injecting (the run is over; the checks read state without faults). */
  disable(): void {
    this.#enabled = false;
  }

  /** Faults injected so far, by kind. */
  counts(): Record<AwsFaultKind, number> {
    return this.#ledger.counts();
  }

  /** DynamoDB error answers that were not injected, by error code (e.g. `ConditionalCheckFailedException`). */
  observed(): Record<string, number> {
    return this.#ledger.observed();
  }

  /** The runtime hooks. */
  hooks(): LocalRuntimeFaults {
    return {
      dynamodb: (operation, input) => this.#dynamodb(operation, input),
      dynamodbResponses: (operation, _status, errorCode, injected, input) => {
        if (errorCode === undefined) return;
        const jobId = dynamoJobId(input);
        if (!injected) this.#ledger.observe(errorCode);
        if (jobId !== undefined)
          this.note(jobId, `DynamoDB ${describeDynamoRequest(operation, input)} -> ${errorCode}${injected ? ' (injected)' : ''}`);
      },
      aws: (operation, input) => this.#aws(operation, input),
      putEventsEntries: (entry) => this.#putEventsEntry(entry),
      duplicateDelivery: (record) => this.#redelivery(record),
    };
  }

  #dynamodb(operation: string, input: Record<string, unknown>): DynamoDbFault | undefined {
    if (!this.#enabled) return undefined;
    const jobId = dynamoJobId(input) ?? '-';
    const burstKey = `dynamodb|${operation}|${jobId}`;
    if (this.#bursts.next(burstKey) !== undefined) {
      this.#ledger.count('dynamodb.throughputExceeded');
      this.#ledger.strike(jobId);
      return { error: 'ProvisionedThroughputExceededException' };
    }
    const n = this.#dice.occurrence(burstKey);
    const r = this.#dice.roll('dynamodb', `${burstKey}|${n}`);
    const fault = this.#dynamodbRoll(operation, input, jobId, burstKey, n, r);
    if (fault !== undefined) this.#ledger.strike(jobId);
    return fault;
  }

  #dynamodbRoll(
    operation: string,
    input: Record<string, unknown>,
    jobId: string,
    burstKey: string,
    n: number,
    r: number,
  ): DynamoDbFault | undefined {
    const rates = this.#rates.dynamodb;
    let edge = rates.burst;
    if (r < edge) {
      this.#ledger.count('dynamodb.burst');
      this.#ledger.count('dynamodb.throughputExceeded');
      this.#bursts.start(burstKey, BURST_ATTEMPTS.dynamodb, 'ProvisionedThroughputExceededException');
      return { error: 'ProvisionedThroughputExceededException' };
    }
    if (r < (edge += rates.throughputExceeded)) {
      this.#ledger.count('dynamodb.throughputExceeded');
      return { error: 'ProvisionedThroughputExceededException' };
    }
    if (r < (edge += rates.throttling)) {
      this.#ledger.count('dynamodb.throttling');
      return { error: 'ThrottlingException' };
    }
    if (r < (edge += rates.internalError)) {
      this.#ledger.count('dynamodb.internalError');
      return { error: 'InternalServerError' };
    }
    if (isDynamoDbWrite(operation) && r < edge + rates.lostResponse) {
      this.#ledger.count('dynamodb.lostResponse');
      const reset = this.#dice.roll('dynamodb-lost-mode', `${burstKey}|${n}`) < 0.5;
      if (jobId !== '-') this.note(jobId, `DynamoDB ${describeDynamoRequest(operation, input)} applied, then its answer lost (injected)`);
      return { error: reset ? 'reset' : 'InternalServerError', afterApplying: true };
    }
    return undefined;
  }

  #aws(operation: string, input: Record<string, unknown>): AwsFault | undefined {
    if (!this.#enabled) return undefined;
    if (operation === 'AWSStepFunctions.StartExecution') {
      const rates = this.#rates.stepFunctions;
      const jobId = startExecutionJobId(input);
      const key = `sfn|${jobId}|${typeof input.name === 'string' ? input.name : ''}`;
      const throttled = (): AwsFault => {
        this.#ledger.strike(jobId);
        this.note(jobId, `StartExecution ${String(input.name)} -> ThrottlingException (injected)`);
        return { error: new AwsServiceError('ThrottlingException', 'Rate exceeded') };
      };
      if (this.#bursts.next(key) !== undefined) {
        this.#ledger.count('stepFunctions.throttling');
        return throttled();
      }
      const n = this.#dice.occurrence(key);
      const r = this.#dice.roll('stepFunctions', `${key}|${n}`);
      if (r < rates.burst) {
        this.#ledger.count('stepFunctions.burst');
        this.#ledger.count('stepFunctions.throttling');
        this.#bursts.start(key, BURST_ATTEMPTS.stepFunctions, 'ThrottlingException');
        return throttled();
      }
      if (r < rates.burst + rates.throttling) {
        this.#ledger.count('stepFunctions.throttling');
        return throttled();
      }
      return undefined;
    }
    if (operation === 'AWSEvents.PutEvents') {
      const entries = Array.isArray(input.Entries) ? input.Entries : [];
      const key = `events|${entries.map((entry) => eventIdOfEntry(entry)).join(',')}`;
      const n = this.#dice.occurrence(key);
      if (this.#dice.roll('eventBridge-request', `${key}|${n}`) < this.#rates.eventBridge.throttling) {
        this.#ledger.count('eventBridge.throttling');
        for (const eventId of key.slice('events|'.length).split(',')) {
          const jobId = eventId.slice(0, eventId.lastIndexOf(':'));
          if (jobId !== '') this.note(jobId, `PutEvents ${eventId} -> ThrottlingException (injected)`);
          this.#ledger.strike(jobId);
        }
        return { error: new AwsServiceError('ThrottlingException', 'Rate exceeded') };
      }
    }
    return undefined;
  }

  #putEventsEntry(entry: PutEventsEntry): PutEventsEntryFault | undefined {
    if (!this.#enabled) return undefined;
    const rates = this.#rates.eventBridge;
    const eventId = typeof entry.detail.event_id === 'string' ? entry.detail.event_id : `${entry.source}|${entry.detailType}`;
    const key = `entry|${eventId}`;
    const jobId = typeof entry.detail.job_id === 'string' ? entry.detail.job_id : undefined;
    const failure = (code: string): PutEventsEntryFault => {
      if (jobId !== undefined) this.note(jobId, `PutEvents entry ${eventId} -> ${code} (injected)`);
      this.#ledger.strike(jobId);
      return {
        ErrorCode: code,
        ErrorMessage: code === 'ThrottlingException' ? 'Rate exceeded.' : 'An internal error occurred while processing the entry.',
      };
    };
    const running = this.#bursts.next(key);
    if (running !== undefined) {
      this.#ledger.count('eventBridge.failedEntry');
      return failure(running);
    }
    const n = this.#dice.occurrence(key);
    const r = this.#dice.roll('eventBridge-entry', `${key}|${n}`);
    const code = this.#dice.roll('eventBridge-entry-code', `${key}|${n}`) < 0.5 ? 'InternalFailure' : 'ThrottlingException';
    if (r < rates.burst) {
      this.#ledger.count('eventBridge.burst');
      this.#ledger.count('eventBridge.failedEntry');
      this.#bursts.start(key, BURST_ATTEMPTS.eventBridge, code);
      return failure(code);
    }
    if (r < rates.burst + rates.failedEntry) {
      this.#ledger.count('eventBridge.failedEntry');
      return failure(code);
    }
    return undefined;
  }

  #redelivery(record: SQSRecord): number | undefined {
    if (!this.#enabled) return undefined;
    const deliveredJob = jobIdOfBody(record.body);
    if (deliveredJob !== undefined)
      this.note(deliveredJob, `SQS message ${record.messageId} delivered (receive ${record.attributes.ApproximateReceiveCount})`);
    const key = `${record.messageId}|${record.attributes.ApproximateReceiveCount}`;
    if (this.#dice.roll('sqs-redelivery', key) >= this.#rates.sqs.redelivery) return undefined;
    this.#ledger.count('sqs.redelivery');
    this.#ledger.strike(deliveredJob);
    const delay = Math.floor(this.#dice.roll('sqs-redelivery-delay', key) * 300);
    if (deliveredJob !== undefined)
      this.note(
        deliveredJob,
        `SQS message ${record.messageId} (receive ${record.attributes.ApproximateReceiveCount}) delivered again after ${delay} ms (injected)`,
      );
    return delay;
  }
}

/**
 * `mix` plus one scheduled fault of every simulator kind (the simulator's `failNext`), so a
 * short run is sure to meet each kind at least once, whatever the random draws.
 */
export function withEveryWaterflaiKind(mix: FaultMix): FaultMix {
  return {
    ...mix,
    waterflai: {
      ...mix.waterflai,
      failNext: [
        ...(mix.waterflai.failNext ?? []),
        { kind: 'error5xx', route: 'start' },
        { kind: 'malformedJson', route: 'start' },
        { kind: 'acceptThenFail', route: 'start' },
        { kind: 'rateLimit', route: 'get' },
        { kind: 'reset', route: 'get' },
        { kind: 'slow', route: 'get' },
        { kind: 'hang', route: 'get' },
        { kind: 'unknownStatus', route: 'get' },
        { kind: 'statusRegression', route: 'get' },
        { kind: 'refuseCancel', route: 'cancel' },
      ],
    },
  };
}
