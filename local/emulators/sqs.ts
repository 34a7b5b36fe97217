/**
 * SQS on fauxqs (the real SQS JSON protocol of SDK v3; redrive, visibility timeouts and long
 * polling behave as in AWS), bound to 127.0.0.1 only. The same endpoint serves fauxqs' S3
 * emulation (path-style), for the buckets of the template.
 *
 * fauxqs' `startFauxqs()` listens on 0.0.0.0 and builds queue URLs on
 * `sqs.<region>.localhost`, which the SDK would then use as the endpoint (a DNS lookup).
 * So the app is built with `buildApp()` over a store whose URL host is the request's
 * `Host` header, and listened on 127.0.0.1: queue URLs are `http://127.0.0.1:<port>/...`.
 * fauxqs does not export its store class, so it is imported from the package's files.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';

/** A message held by a queue (not removed by reading it). */
export interface QueuedMessage {
  readonly messageId: string;
  readonly body: string;
  readonly messageAttributes: Readonly<Record<string, { DataType: string; StringValue?: string; BinaryValue?: string }>>;
  readonly receiveCount: number;
  readonly sentTimestamp: number;
  readonly state: 'ready' | 'delayed' | 'inflight';
  /** In flight: when it becomes visible again (epoch ms), unless deleted first. */
  readonly visibleAt?: number;
}

export interface QueueSpec {
  readonly name: string;
  readonly attributes: Readonly<Record<string, string>>;
}

export interface LocalSqsOptions {
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly deadLetterQueue: QueueSpec;
  /** The intake queue; its redrive policy points at the dead-letter queue. */
  readonly intakeQueue: QueueSpec & { readonly maxReceiveCount: number };
}

export interface LocalQueue {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
}

export interface LocalSqs {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly intakeQueue: LocalQueue;
  readonly deadLetterQueue: LocalQueue;
  /** A client for the runtime's own calls (explicit endpoint, region and dummy credentials). */
  readonly client: SQSClient;
  /** Every message a queue holds (ready, delayed or in flight), without receiving it. */
  messages(queueName: string): QueuedMessage[];
  /** Creates an S3 bucket (fauxqs also emulates S3, path-style, on the same endpoint). */
  createBucket(name: string): Promise<void>;
  close(): Promise<void>;
}

/** The part of fauxqs' SqsStore used here. */
interface FauxqsStore {
  host: string;
  region?: string;
  inspectQueue(name: string):
    | {
        messages: {
          ready: FauxqsMessage[];
          delayed: FauxqsMessage[];
          inflight: Array<{ message: FauxqsMessage; visibilityDeadline?: number }>;
        };
      }
    | undefined;
}
interface FauxqsMessage {
  messageId: string;
  body: string;
  messageAttributes: Record<string, { DataType: string; StringValue?: string; BinaryValue?: string }>;
  approximateReceiveCount: number;
  sentTimestamp: number;
}

async function loadStoreClass(): Promise<new () => FauxqsStore> {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'node_modules', 'fauxqs', 'dist', 'sqs', 'sqsStore.js');
    if (existsSync(candidate)) {
      const module = (await import(pathToFileURL(candidate).href)) as { SqsStore: new () => FauxqsStore };
      return module.SqsStore;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find node_modules/fauxqs (run npm ci)');
    dir = parent;
  }
}

/** Starts fauxqs on 127.0.0.1 and creates the dead-letter queue and the intake queue. */
export async function startLocalSqs(options: LocalSqsOptions): Promise<LocalSqs> {
  const SqsStore = await loadStoreClass();
  const store = new SqsStore();
  store.host = ''; // queue URLs on the request's Host: http://127.0.0.1:<port>/<account>/<name>
  store.region = options.region;
  const app = buildApp({ logger: false, defaultRegion: options.region, stores: { sqsStore: store } as never });
  let listening = false;
  try {
    await app.listen({ port: 0, host: '127.0.0.1' });
    listening = true;
    const address = app.server.address();
    if (address === null || typeof address === 'string') throw new Error('fauxqs did not bind a TCP port');
    const endpoint = `http://127.0.0.1:${address.port}`;
    const client = new SQSClient({ endpoint, region: options.region, credentials: options.credentials, maxAttempts: 3 });

    const create = async (spec: QueueSpec, extra: Record<string, string> = {}): Promise<LocalQueue> => {
      const created = await client.send(new CreateQueueCommand({ QueueName: spec.name, Attributes: { ...spec.attributes, ...extra } }));
      const url = created.QueueUrl;
      if (url === undefined) throw new Error(`fauxqs returned no URL for queue ${spec.name}`);
      const attributes = await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
      const arn = attributes.Attributes?.QueueArn;
      if (arn === undefined) throw new Error(`fauxqs returned no ARN for queue ${spec.name}`);
      return { name: spec.name, url, arn };
    };
    const deadLetterQueue = await create(options.deadLetterQueue);
    const intakeQueue = await create(options.intakeQueue, {
      RedrivePolicy: JSON.stringify({
        deadLetterTargetArn: deadLetterQueue.arn,
        maxReceiveCount: String(options.intakeQueue.maxReceiveCount),
      }),
    });
    for (const queue of [deadLetterQueue, intakeQueue]) {
      if (!queue.url.startsWith(`${endpoint}/`)) throw new Error(`queue URL ${queue.url} is not on ${endpoint}`);
    }

    return {
      endpoint,
      intakeQueue,
      deadLetterQueue,
      client,
      messages(queueName) {
        const inspected = store.inspectQueue(queueName);
        if (inspected === undefined) return [];
        const toMessage = (message: FauxqsMessage, state: QueuedMessage['state'], visibleAt?: number): QueuedMessage => ({
          messageId: message.messageId,
          body: message.body,
          messageAttributes: structuredClone(message.messageAttributes ?? {}),
          receiveCount: message.approximateReceiveCount,
          sentTimestamp: message.sentTimestamp,
          state,
          ...(visibleAt === undefined ? {} : { visibleAt }),
        });
        return [
          ...inspected.messages.ready.map((message) => toMessage(message, 'ready')),
          ...inspected.messages.delayed.map((message) => toMessage(message, 'delayed')),
          ...inspected.messages.inflight.map((entry) => toMessage(entry.message, 'inflight', entry.visibilityDeadline)),
        ];
      },
      async createBucket(name) {
        const response = await fetch(`${endpoint}/${encodeURIComponent(name)}`, { method: 'PUT' });
        await response.arrayBuffer();
        if (!response.ok) throw new Error(`fauxqs refused to create bucket ${name}: HTTP ${response.status}`);
      },
      async close() {
        client.destroy();
        await app.close();
      },
    };
  } catch (error) {
    if (listening) await app.close().catch(() => undefined);
    throw error;
  }
}
