/**
 * A local Secrets Manager: `GetSecretValue` (awsJson1_1, `X-Amz-Target:
 * secretsmanager.GetSecretValue`) for the secrets the runtime registers, found by ARN,
 * partial ARN (without the random suffix) or name. The values live in memory only and are
 * never logged. {@link LocalSecretsManager.update} changes a secret's value while the runtime
 * runs (a rotation: a new version becomes `AWSCURRENT`), e.g. for the chaos run's key rotation.
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
  #updates = 0;

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
    const arn = match
      ? id
      : `arn:aws:secretsmanager:${this.region}:${this.account}:secret:${name}-${randomUUID().replace(/-/g, '').slice(0, 6)}`;
    const index = this.#secrets.findIndex((secret) => secret.arn === arn);
    const stored = { arn, name, value, versionId: randomUUID(), createdAt: Date.now() };
    if (index >= 0) this.#secrets[index] = stored;
    else this.#secrets.push(stored);
    return { arn, name };
  }

  /**
   * Changes the value of a registered secret (found like `GetSecretValue` finds it: ARN,
   * partial ARN or name), as a rotation would: a new version id, and every later
   * `GetSecretValue` answers the new value. Callers that cached the old value keep it until
   * they read again.
   * @throws Error when no such secret is registered
   */
  update(id: string, value: string): { arn: string; versionId: string } {
    const index = this.#secrets.findIndex((secret) => matches(secret, id));
    const current = this.#secrets[index];
    if (current === undefined) throw new Error(`no secret ${JSON.stringify(id)} is registered`);
    const updated = { ...current, value, versionId: randomUUID(), createdAt: Date.now() };
    this.#secrets[index] = updated;
    this.#updates += 1;
    return { arn: updated.arn, versionId: updated.versionId };
  }

  /** Number of {@link update} calls (rotations) so far. */
  updates(): number {
    return this.#updates;
  }

  /** Number of successful `GetSecretValue` calls (the handlers cache the key; tests can check). */
  reads(): number {
    return this.#reads;
  }

  getSecretValue(input: Record<string, unknown>): Record<string, unknown> {
    const id = requireString(input, 'SecretId');
    const stage = optionalString(input, 'VersionStage');
    const versionId = optionalString(input, 'VersionId');
    const secret = this.#secrets.find((candidate) => matches(candidate, id));
    if (
      secret === undefined ||
      (stage !== undefined && stage !== 'AWSCURRENT') ||
      (versionId !== undefined && versionId !== secret.versionId)
    ) {
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

/** Whether `id` names `secret`: its ARN, its name, or its ARN without the random suffix. */
function matches(secret: StoredSecret, id: string): boolean {
  return secret.arn === id || secret.name === id || secret.arn.replace(/-[A-Za-z0-9]{6}$/, '') === id;
}
