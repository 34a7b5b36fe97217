import { Logger } from '@aws-lambda-powertools/logger';

/** The logging the domain code uses: Powertools' Logger, or anything shaped like it in tests. */
export type AppLogger = Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;

/**
 * One structured JSON logger per Lambda. Request and message bodies, `input_data`,
 * `final_output` and the API key are never passed to it.
 */
export function createLogger(): Logger {
  return new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'waterflai-orchestrator' });
}
