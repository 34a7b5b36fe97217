import { s3 } from '../aws/clients';
import { setting } from './env';
import { ENV } from '../contract/constants';
import { OutputStore, type OutputPlacement } from '../aws/output-store';

/**
 * Where a function that records finished executions (poll, reconcile, sweep) puts their
 * outputs: inline up to `MAX_INLINE_OUTPUT_BYTES`, larger ones in the output bucket when
 * `OUTPUT_BUCKET_NAME` is set.
 */
export function outputPlacementFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): OutputPlacement {
  const bucket = env[ENV.OUTPUT_BUCKET_NAME];
  return {
    maxInlineOutputBytes: setting(ENV.MAX_INLINE_OUTPUT_BYTES, env),
    ...(bucket ? { outputs: new OutputStore(s3(), bucket) } : {}),
  };
}
