import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { CreateTableCommand, DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import dynalite from 'dynalite';
import { JOB_TABLE } from '../../lambdas/contract/constants';

/** A real DynamoDB protocol endpoint (dynalite, in memory) on 127.0.0.1 for unit tests. */
export interface LocalDynamo {
  readonly endpoint: string;
  readonly client: DynamoDBClient;
  readonly documentClient: DynamoDBDocumentClient;
  /** Creates a job table with the construct's key schema and status index; returns its name. */
  createJobTable(): Promise<string>;
  close(): Promise<void>;
}

let tableCounter = 0;

export async function startLocalDynamo(): Promise<LocalDynamo> {
  const server: Server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  const client = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  const documentClient = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  return {
    endpoint,
    client,
    documentClient,
    async createJobTable() {
      tableCounter += 1;
      const name = `jobs-${process.pid}-${tableCounter}`;
      await client.send(
        new CreateTableCommand({
          TableName: name,
          BillingMode: 'PAY_PER_REQUEST',
          KeySchema: [{ AttributeName: JOB_TABLE.PARTITION_KEY, KeyType: 'HASH' }],
          AttributeDefinitions: [
            { AttributeName: JOB_TABLE.PARTITION_KEY, AttributeType: 'S' },
            { AttributeName: JOB_TABLE.STATUS_INDEX_PARTITION_KEY, AttributeType: 'S' },
            { AttributeName: JOB_TABLE.STATUS_INDEX_SORT_KEY, AttributeType: 'S' },
            { AttributeName: JOB_TABLE.PENDING_CANCEL_INDEX_PARTITION_KEY, AttributeType: 'S' },
          ],
          GlobalSecondaryIndexes: [
            {
              IndexName: JOB_TABLE.STATUS_INDEX,
              KeySchema: [
                { AttributeName: JOB_TABLE.STATUS_INDEX_PARTITION_KEY, KeyType: 'HASH' },
                { AttributeName: JOB_TABLE.STATUS_INDEX_SORT_KEY, KeyType: 'RANGE' },
              ],
              Projection: { ProjectionType: 'ALL' },
            },
            {
              IndexName: JOB_TABLE.PENDING_CANCEL_INDEX,
              KeySchema: [
                { AttributeName: JOB_TABLE.PENDING_CANCEL_INDEX_PARTITION_KEY, KeyType: 'HASH' },
                { AttributeName: JOB_TABLE.PENDING_CANCEL_INDEX_SORT_KEY, KeyType: 'RANGE' },
              ],
              Projection: { ProjectionType: 'KEYS_ONLY' },
            },
          ],
        }),
      );
      // dynalite creates tables asynchronously even with createTableMs 0: wait for ACTIVE,
      // or a loaded machine sees ResourceNotFoundException on the first write.
      for (let attempt = 0; attempt < 100; attempt += 1) {
        const { Table } = await client.send(new DescribeTableCommand({ TableName: name }));
        if (Table?.TableStatus === 'ACTIVE' && (Table.GlobalSecondaryIndexes ?? []).every((index) => index.IndexStatus === 'ACTIVE'))
          return name;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw new Error(`dynalite table ${name} did not become ACTIVE`);
    },
    async close() {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
