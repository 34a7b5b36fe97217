/**
 * EventBridge event pattern matching, for the rules the local runtime emulates.
 *
 * Supported, as documented by EventBridge: nested fields; arrays of alternatives; exact
 * strings, numbers, booleans and null (matching an event array when any element matches);
 * `prefix`, `suffix`, `equals-ignore-case`, `anything-but` (a value, a list, or a prefix /
 * suffix), `exists` and `numeric` (`=`, `<`, `<=`, `>`, `>=` pairs). `$or`, `wildcard` and
 * `cidr` are refused with {@link UnsupportedPatternError}, so a rule is never silently
 * matched the wrong way.
 */

export class UnsupportedPatternError extends Error {
  override readonly name = 'UnsupportedPatternError';
}

/** Checks a pattern once (throws {@link UnsupportedPatternError} for what is not supported). */
export function validatePattern(pattern: unknown): void {
  if (!isRecord(pattern)) throw new UnsupportedPatternError('an event pattern must be a JSON object');
  for (const [key, value] of Object.entries(pattern)) {
    if (key === '$or') throw new UnsupportedPatternError('$or patterns are not supported locally');
    if (Array.isArray(value)) for (const matcher of value) validateMatcher(matcher);
    else if (isRecord(value)) validatePattern(value);
    else throw new UnsupportedPatternError(`the value of "${key}" must be an array or an object`);
  }
}

function validateMatcher(matcher: unknown): void {
  if (!isRecord(matcher)) return;
  const [operator] = Object.keys(matcher);
  if (!['prefix', 'suffix', 'equals-ignore-case', 'anything-but', 'exists', 'numeric'].includes(operator ?? '')) {
    throw new UnsupportedPatternError(`the "${operator ?? ''}" matcher is not supported locally`);
  }
}

/** True when `event` (an EventBridge envelope: source, detail-type, detail, ...) matches. */
export function matchesPattern(pattern: unknown, event: unknown): boolean {
  if (!isRecord(pattern)) return false;
  const target = isRecord(event) ? event : {};
  for (const [key, expected] of Object.entries(pattern)) {
    const present = Object.hasOwn(target, key);
    const actual = target[key];
    if (Array.isArray(expected)) {
      if (!expected.some((matcher) => matchesValue(matcher, actual, present))) return false;
    } else if (isRecord(expected)) {
      if (!isRecord(actual) || !matchesPattern(expected, actual)) return false;
    } else {
      return false;
    }
  }
  return true;
}

function matchesValue(matcher: unknown, actual: unknown, present: boolean): boolean {
  if (isRecord(matcher) && Object.hasOwn(matcher, 'exists')) return matcher.exists === (present && actual !== undefined);
  if (!present) return false;
  if (Array.isArray(actual)) return actual.some((item) => matchesValue(matcher, item, true));
  if (!isRecord(matcher)) return matcher === actual;
  const [operator] = Object.keys(matcher);
  const argument = matcher[operator ?? ''];
  switch (operator) {
    case 'prefix':
      return typeof actual === 'string' && typeof argument === 'string' && actual.startsWith(argument);
    case 'suffix':
      return typeof actual === 'string' && typeof argument === 'string' && actual.endsWith(argument);
    case 'equals-ignore-case':
      return typeof actual === 'string' && typeof argument === 'string' && actual.toLowerCase() === argument.toLowerCase();
    case 'anything-but': {
      if (isRecord(argument)) return !matchesValue(argument, actual, true);
      const excluded = Array.isArray(argument) ? argument : [argument];
      return !excluded.includes(actual);
    }
    case 'numeric': {
      if (typeof actual !== 'number' || !Array.isArray(argument)) return false;
      for (let index = 0; index + 1 < argument.length; index += 2) {
        const [op, bound] = [argument[index], Number(argument[index + 1])];
        const ok =
          op === '='
            ? actual === bound
            : op === '<'
              ? actual < bound
              : op === '<='
                ? actual <= bound
                : op === '>'
                  ? actual > bound
                  : op === '>='
                    ? actual >= bound
                    : false;
        if (!ok) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
