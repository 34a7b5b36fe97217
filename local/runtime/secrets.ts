/**
 * A local Secrets Manager: `GetSecretValue` (awsJson1_1, `X-Amz-Target:
 * secretsmanager.GetSecretValue`) for the secrets the runtime registers, found by ARN,
 * partial ARN (without the random suffix) or name. The values live in memory only and are
 * never logged.
 */
import { randomUUID } from 'node:crypto';
import { AwsServiceError, awsTimestamp, optionalString, requireString, type AwsJsonService } from './aws-json-server';

interface StoredSecret {
  readonly arn: string;
  readonly name: string;
  readonly value: string;
  readonly versionId: string;
  readonly createdAt: number;
}

export class LocalSecretsManager {
  readonly #secrets: StoredSecret[] = [];
  #reads = 0;

  constructor(
    private readonly region: string,
    private readonly account: string,
  ) {}

  /**
   * Registers a secret. `id` is an ARN (`arn:aws:secretsmanager:...:secret:<name>-XXXXXX`)
   * or a name (an ARN is made up for it).
   */
  put(id: string, value: string): { arn: string; name: string } {
    const match = /^arn:[^:]+:secretsmanager:[^:]*:\d*:secret:(.+?)(-[A-Za-z0-9]{6})?$/.exec(id);
    const name = match?.[1] ?? id;
    const arn = match ? id : `arn:aws:secretsmanager:${this.region}:${this.account}:secret:${name}-${randomUUID().replace(/-/g, '').slice(0, 6)}`;
    const index = this.#secrets.findIndex((secret) => secret.arn === arn);
    const stored = { arn, name, value, versionId: randomUUID(), createdAt: Date.now() };
    if (index >= 0) this.#secrets[index] = stored;
    else this.#secrets.push(stored);
    return { arn, name };
  }

  /** Number of successful `GetSecretValue` calls (the handlers cache the key; tests can check). */
  reads(): number {
    return this.#reads;
  }

  getSecretValue(input: Record<string, unknown>): Record<string, unknown> {
    const id = requireString(input, 'SecretId');
    const stage = optionalString(input, 'VersionStage');
    const versionId = optionalString(input, 'VersionId');
    const secret = this.#secrets.find((candidate) => candidate.arn === id || candidate.name === id || candidate.arn.replace(/-[A-Za-z0-9]{6}$/, '') === id);
    if (secret === undefined || (stage !== undefined && stage !== 'AWSCURRENT') || (versionId !== undefined && versionId !== secret.versionId)) {
      throw new AwsServiceError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    }
    this.#reads += 1;
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: secret.versionId,
      SecretString: secret.value,
      VersionStages: ['AWSCURRENT'],
      CreatedDate: awsTimestamp(secret.createdAt),
    };
  }

  service(): AwsJsonService {
    return {
      name: 'Secrets Manager',
      targetPrefix: 'secretsmanager',
      contentType: 'application/x-amz-json-1.1',
      operations: { GetSecretValue: (input) => this.getSecretValue(input) },
    };
  }
}
