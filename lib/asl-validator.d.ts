/** Types for asl-validator@4 (the package ships none). */
declare module 'asl-validator' {
  export interface AslValidationError {
    readonly 'Error code': string;
    readonly Message: string;
    readonly schemaError?: { readonly instancePath: string; readonly schemaPath: string };
  }
  /** Omit the options for both checks; when given, a missing flag means false. */
  export interface AslValidationOptions {
    /** Check the JSONPath/payload template syntax. */
    readonly checkPaths: boolean;
    /** Check that Task `Resource` values are ARNs. */
    readonly checkArn: boolean;
  }
  export interface AslValidationResult {
    readonly isValid: boolean;
    readonly errors: readonly AslValidationError[];
    errorsText(separator?: string): string;
  }
  /**
   * Validates an Amazon States Language definition. NOTE: it mutates `definition` (adds
   * `QueryLanguage` to every state): pass a copy.
   */
  export default function aslValidator(definition: object, options?: AslValidationOptions): AslValidationResult;
}
