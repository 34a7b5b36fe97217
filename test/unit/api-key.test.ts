import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_API_KEY_TTL_MS, cachedApiKey } from '../../lambdas/aws/api-key';
import { ConfigurationError } from '../../lambdas/contract/errors';

const SECRET_ID = 'waterflai/api-key';
const secrets = mockClient(SecretsManagerClient);
const client = new SecretsManagerClient({ region: 'us-east-1' });

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let current = start;
  return { now: () => current, advance: (ms) => (current += ms) };
}

beforeEach(() => {
  secrets.reset();
});

afterAll(() => {
  secrets.restore();
});

describe('cachedApiKey', () => {
  it('fetches the secret by its id and returns a plain string key trimmed', async () => {
    // Prepare
    secrets.on(GetSecretValueCommand).resolves({ SecretString: '  wf-key-123\n' });
    const apiKey = cachedApiKey(client, SECRET_ID);

    // Act
    const key = await apiKey();

    // Assess
    expect(key).toBe('wf-key-123');
    expect(secrets).toHaveReceivedCommandExactlyOnceWith(GetSecretValueCommand, { SecretId: SECRET_ID });
  });

  it.each([
    { name: 'JSON {"apiKey"}', secret: '{"apiKey":"wf-json-key"}', expected: 'wf-json-key' },
    { name: 'JSON {"api_key"}', secret: '{"api_key":" wf-snake-key "}', expected: 'wf-snake-key' },
    { name: 'JSON with other fields too', secret: '{"apiKey":"wf-json-key","rotatedAt":"2025-01-01"}', expected: 'wf-json-key' },
    { name: 'a string that starts with "{" but is not JSON', secret: '{not-json', expected: '{not-json' },
  ])('accepts a secret holding $name', async ({ secret, expected }) => {
    // Prepare
    secrets.on(GetSecretValueCommand).resolves({ SecretString: secret });
    const apiKey = cachedApiKey(client, SECRET_ID);

    // Act
    const key = await apiKey();

    // Assess
    expect(key).toBe(expected);
  });

  it.each([
    { name: 'no SecretString (binary secret)', output: { SecretBinary: new Uint8Array([1, 2, 3]) }, message: 'has no string value' },
    { name: 'an empty SecretString', output: { SecretString: '' }, message: 'has no string value' },
    { name: 'a blank SecretString', output: { SecretString: '   ' }, message: 'has no string value' },
    { name: 'JSON without an apiKey field', output: { SecretString: '{"token":"x"}' }, message: 'JSON without an "apiKey" string field' },
    { name: 'JSON with an empty apiKey', output: { SecretString: '{"apiKey":"  "}' }, message: 'JSON without an "apiKey" string field' },
    {
      name: 'JSON with a non-string apiKey',
      output: { SecretString: '{"apiKey":12345}' },
      message: 'JSON without an "apiKey" string field',
    },
  ])('throws a ConfigurationError for $name', async ({ output, message }) => {
    // Prepare
    secrets.on(GetSecretValueCommand).resolves(output);
    const apiKey = cachedApiKey(client, SECRET_ID);

    // Act
    const result = apiKey();

    // Assess
    await expect(result).rejects.toBeInstanceOf(ConfigurationError);
    await expect(apiKey()).rejects.toThrow(message);
  });

  it("does not echo the secret's content in a ConfigurationError message", async () => {
    // Prepare
    secrets.on(GetSecretValueCommand).resolves({ SecretString: '{"apiKey":"","password":"sup3r-s3cret"}' });
    const apiKey = cachedApiKey(client, SECRET_ID);

    // Act
    const error = await apiKey().catch((caught: unknown) => caught);

    // Assess
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(String((error as Error).message)).not.toContain('sup3r-s3cret');
  });

  it('reuses the key within the TTL without asking Secrets Manager again', async () => {
    // Prepare
    const clock = manualClock();
    secrets.on(GetSecretValueCommand).resolvesOnce({ SecretString: 'key-1' }).resolves({ SecretString: 'key-2' });
    const apiKey = cachedApiKey(client, SECRET_ID, { ttlMs: 60_000, now: clock.now });

    // Act
    const first = await apiKey();
    clock.advance(59_999);
    const second = await apiKey();

    // Assess
    expect([first, second]).toEqual(['key-1', 'key-1']);
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 1);
  });

  it('fetches the key again once the TTL has passed (a rotated key is picked up)', async () => {
    // Prepare
    const clock = manualClock();
    secrets.on(GetSecretValueCommand).resolvesOnce({ SecretString: 'key-1' }).resolves({ SecretString: 'key-2' });
    const apiKey = cachedApiKey(client, SECRET_ID, { ttlMs: 60_000, now: clock.now });

    // Act
    const first = await apiKey();
    clock.advance(60_000);
    const second = await apiKey();
    const third = await apiKey();

    // Assess
    expect([first, second, third]).toEqual(['key-1', 'key-2', 'key-2']);
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 2);
  });

  it('uses a five-minute TTL by default', async () => {
    // Prepare
    const clock = manualClock();
    secrets.on(GetSecretValueCommand).resolvesOnce({ SecretString: 'key-1' }).resolves({ SecretString: 'key-2' });
    const apiKey = cachedApiKey(client, SECRET_ID, { now: clock.now });

    // Act
    await apiKey();
    clock.advance(DEFAULT_API_KEY_TTL_MS - 1);
    const beforeExpiry = await apiKey();
    clock.advance(1);
    const afterExpiry = await apiKey();

    // Assess
    expect(DEFAULT_API_KEY_TTL_MS).toBe(300_000);
    expect(beforeExpiry).toBe('key-1');
    expect(afterExpiry).toBe('key-2');
  });

  it('shares one request between concurrent callers', async () => {
    // Prepare
    let release: (value: { SecretString: string }) => void = () => undefined;
    const pending = new Promise<{ SecretString: string }>((resolve) => (release = resolve));
    secrets.on(GetSecretValueCommand).callsFake(() => pending);
    const apiKey = cachedApiKey(client, SECRET_ID);

    // Act
    const calls = [apiKey(), apiKey(), apiKey()];
    release({ SecretString: 'shared-key' });
    const keys = await Promise.all(calls);

    // Assess
    expect(keys).toEqual(['shared-key', 'shared-key', 'shared-key']);
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 1);
  });

  it('does not cache a failed fetch: the next call asks again', async () => {
    // Prepare
    secrets
      .on(GetSecretValueCommand)
      .rejectsOnce(new Error('AccessDeniedException: not authorised'))
      .resolves({ SecretString: 'key-after-failure' });
    const apiKey = cachedApiKey(client, SECRET_ID);

    // Act
    const failed = apiKey();
    await expect(failed).rejects.toThrow('not authorised');
    const key = await apiKey();

    // Assess
    expect(key).toBe('key-after-failure');
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 2);
  });

  it('rejects every concurrent caller when the shared request fails', async () => {
    // Prepare
    secrets.on(GetSecretValueCommand).rejects(new Error('ThrottlingException'));
    const apiKey = cachedApiKey(client, SECRET_ID);

    // Act
    const results = await Promise.allSettled([apiKey(), apiKey()]);

    // Assess
    expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 1);
  });
});

describe('cachedApiKey.refresh', () => {
  it('reads the secret again before the cache expires, and later calls get the new key', async () => {
    const clock = manualClock();
    secrets.on(GetSecretValueCommand).resolvesOnce({ SecretString: 'old-key' }).resolves({ SecretString: 'new-key' });
    const apiKey = cachedApiKey(client, SECRET_ID, { now: clock.now });
    expect(await apiKey()).toBe('old-key');
    clock.advance(60_000);

    expect(await apiKey.refresh()).toBe('new-key');
    expect(await apiKey()).toBe('new-key');
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 2);
  });

  it('refreshes within the minimum interval share the last read (a burst of 401s costs one read)', async () => {
    const clock = manualClock();
    secrets.on(GetSecretValueCommand).resolves({ SecretString: 'the-key' });
    const apiKey = cachedApiKey(client, SECRET_ID, { now: clock.now, minRefreshMs: 5_000 });
    await apiKey();

    await Promise.all([apiKey.refresh(), apiKey.refresh(), apiKey.refresh()]);
    clock.advance(4_999);
    await apiKey.refresh();
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 1);

    clock.advance(1);
    await apiKey.refresh();
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 2);
  });

  it('concurrent refreshes before any read share one request', async () => {
    secrets.on(GetSecretValueCommand).resolves({ SecretString: 'k' });
    const apiKey = cachedApiKey(client, SECRET_ID);

    await Promise.all([apiKey.refresh(), apiKey.refresh(), apiKey()]);

    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 1);
  });
});

describe('cachedApiKey.refresh(notBeforeMs)', () => {
  it('reuses a read that started after the refused request was sent, and reads again for a request sent after it', async () => {
    const clock = manualClock();
    secrets
      .on(GetSecretValueCommand)
      .resolvesOnce({ SecretString: 'old-key' })
      .resolvesOnce({ SecretString: 'new-key' })
      .resolves({ SecretString: 'newer-key' });
    const apiKey = cachedApiKey(client, SECRET_ID, { now: clock.now });
    const sentBeforeRotation = clock.now();
    await apiKey();

    // Sent at the same time as the read: that read is not older than the request, so it is reused.
    expect(await apiKey.refresh(sentBeforeRotation)).toBe('old-key');
    clock.advance(10);
    // A request sent after the read was refused: the key that read returned is the refused one.
    expect(await apiKey.refresh(clock.now())).toBe('new-key');
    expect(secrets).toHaveReceivedCommandTimes(GetSecretValueCommand, 2);
  });
});
