import { describe, expect, it } from 'vitest';
import {
  DEFAULT_POLL_SETTINGS,
  MAX_RETRY_AFTER_SECONDS,
  validatePollSettings,
  type FixedIntervalSettings,
} from '../../lambdas/contract/settings';
import { nextPollSeconds } from '../../lambdas/domain/poll-strategy';

const settings = (intervalSeconds: number, minSeconds: number, maxSeconds: number): FixedIntervalSettings => ({
  intervalSeconds,
  minSeconds,
  maxSeconds,
});

describe('nextPollSeconds', () => {
  it.each([
    { name: 'the interval when it lies within [min, max]', given: settings(10, 1, 300), expected: 10 },
    { name: 'min when the interval is below it', given: settings(2, 5, 300), expected: 5 },
    { name: 'max when the interval is above it', given: settings(900, 1, 300), expected: 300 },
    { name: 'the single allowed value when min equals max', given: settings(10, 30, 30), expected: 30 },
    { name: 'the defaults', given: DEFAULT_POLL_SETTINGS, expected: 10 },
  ])('waits $name', ({ given, expected }) => {
    // Prepare: settings only, no server hint

    // Act
    const seconds = nextPollSeconds(given);

    // Assess
    expect(seconds).toBe(expected);
  });

  it.each([
    { name: 'a Retry-After longer than the interval raises the wait to it', retryAfterSeconds: 42, expected: 42 },
    { name: 'a Retry-After above maxSeconds is still honoured (max only bounds the interval)', retryAfterSeconds: 600, expected: 600 },
    { name: 'a Retry-After shorter than the interval does not shorten the wait', retryAfterSeconds: 3, expected: 10 },
    { name: 'a Retry-After of 0 keeps the interval', retryAfterSeconds: 0, expected: 10 },
    { name: 'a fractional Retry-After is rounded up to whole seconds', retryAfterSeconds: 41.2, expected: 42 },
    {
      name: 'a Retry-After above MAX_RETRY_AFTER_SECONDS is capped',
      retryAfterSeconds: MAX_RETRY_AFTER_SECONDS * 24,
      expected: MAX_RETRY_AFTER_SECONDS,
    },
    { name: 'an infinite Retry-After is capped', retryAfterSeconds: Number.POSITIVE_INFINITY, expected: MAX_RETRY_AFTER_SECONDS },
    { name: 'a NaN Retry-After is ignored', retryAfterSeconds: Number.NaN, expected: 10 },
    { name: 'a negative Retry-After is ignored', retryAfterSeconds: -50, expected: 10 },
  ])('$name', ({ retryAfterSeconds, expected }) => {
    // Prepare
    const given = settings(10, 1, 300);

    // Act
    const seconds = nextPollSeconds(given, { retryAfterSeconds });

    // Assess
    expect(seconds).toBe(expected);
  });

  it('caps Retry-After at exactly MAX_RETRY_AFTER_SECONDS (3600, one hour)', () => {
    // Prepare / Act
    const atCap = nextPollSeconds(settings(10, 1, 300), { retryAfterSeconds: 3600 });
    const justAbove = nextPollSeconds(settings(10, 1, 300), { retryAfterSeconds: 3601 });

    // Assess
    expect(MAX_RETRY_AFTER_SECONDS).toBe(3600);
    expect(atCap).toBe(3600);
    expect(justAbove).toBe(3600);
  });

  it('always returns a whole number of at least 1 for any valid settings and Retry-After', () => {
    // Prepare: a grid of valid settings and server hints
    const intervals = [1, 2, 7, 10, 59, 300, 5000];
    const bounds: Array<[number, number]> = [
      [1, 1],
      [1, 300],
      [5, 60],
      [120, 120],
      [1, 100_000],
    ];
    const hints = [undefined, 0, 0.001, 0.5, 1, 1.999, 17.3, 299.01, 3599.5, 3600, 3600.4, 1e9, -3];
    const results: number[] = [];

    // Act
    for (const intervalSeconds of intervals) {
      for (const [minSeconds, maxSeconds] of bounds) {
        for (const retryAfterSeconds of hints) {
          const observation = retryAfterSeconds === undefined ? {} : { retryAfterSeconds };
          results.push(nextPollSeconds(validatePollSettings(settings(intervalSeconds, minSeconds, maxSeconds)), observation));
        }
      }
    }

    // Assess
    expect(results).toHaveLength(intervals.length * bounds.length * hints.length);
    for (const seconds of results) {
      expect(Number.isInteger(seconds)).toBe(true);
      expect(seconds).toBeGreaterThanOrEqual(1);
      expect(seconds).toBeLessThanOrEqual(Math.max(100_000, MAX_RETRY_AFTER_SECONDS));
    }
  });
});

describe('validatePollSettings', () => {
  it('returns valid settings unchanged', () => {
    // Prepare
    const given = settings(15, 5, 60);

    // Act
    const result = validatePollSettings(given);

    // Assess
    expect(result).toBe(given);
  });

  it.each([
    { field: 'intervalSeconds', given: settings(0, 1, 300), value: '0' },
    { field: 'intervalSeconds', given: settings(2.5, 1, 300), value: '2.5' },
    { field: 'minSeconds', given: settings(10, -1, 300), value: '-1' },
    { field: 'minSeconds', given: settings(10, Number.NaN, 300), value: 'NaN' },
    { field: 'maxSeconds', given: settings(10, 1, 0), value: '0' },
    { field: 'maxSeconds', given: settings(10, 1, Number.POSITIVE_INFINITY), value: 'Infinity' },
  ])('throws a RangeError naming $field when it is $value', ({ field, given, value }) => {
    // Act / Assess
    expect(() => validatePollSettings(given)).toThrow(RangeError);
    expect(() => validatePollSettings(given)).toThrow(`poll setting ${field} must be a positive integer, got ${value}`);
  });

  it('throws a RangeError when minSeconds exceeds maxSeconds', () => {
    // Prepare
    const given = settings(10, 61, 60);

    // Act / Assess
    expect(() => validatePollSettings(given)).toThrow(RangeError);
    expect(() => validatePollSettings(given)).toThrow('poll minSeconds (61) must not exceed maxSeconds (60)');
  });
});
