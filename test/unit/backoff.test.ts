import { describe, expect, it } from 'vitest';
import { type BackoffDelaySettings, backoffDelay, backoffSeconds } from '../../lambdas/domain/backoff';

describe('backoffSeconds', () => {
  it.each([
    [1, 0, 5],
    [1, 0.999, 10],
    [2, 0, 10],
    [3, 0.5, 30],
    [4, 1, 80],
  ])('attempt %i with random %d waits %i s (base 10, equal jitter)', (attempt, random, expected) => {
    expect(backoffSeconds(attempt, { baseSeconds: 10, capSeconds: 600, random: () => random })).toBe(expected);
  });

  it('never waits longer than the cap, however many attempts, and never less than 1 s', () => {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      for (const random of [0, 0.5, 0.9999]) {
        const wait = backoffSeconds(attempt, { baseSeconds: 10, capSeconds: 600, random: () => random });
        expect(wait).toBeLessThanOrEqual(600);
        expect(wait).toBeGreaterThanOrEqual(1);
      }
    }
    expect(backoffSeconds(50, { baseSeconds: 10, capSeconds: 600, random: () => 0 })).toBe(300);
    expect(backoffSeconds(1, { baseSeconds: 0.1, capSeconds: 600, random: () => 0 })).toBe(1);
  });

  it('a random number outside [0, 1) cannot push the wait past the cap', () => {
    expect(backoffSeconds(20, { baseSeconds: 10, capSeconds: 60, random: () => 7 })).toBe(60);
    expect(backoffSeconds(20, { baseSeconds: 10, capSeconds: 60, random: () => -3 })).toBe(30);
  });
});

describe('backoffDelay', () => {
  it.each<[string, BackoffDelaySettings, number, number]>([
    ['full jitter at random 0', { base: 100, jitter: 'full', random: () => 0 }, 3, 0],
    ['full jitter at random 0.5', { base: 100, jitter: 'full', random: () => 0.5 }, 3, 200],
    ['equal jitter at random 0', { base: 100, jitter: 'equal', random: () => 0 }, 3, 200],
    ['a cap', { base: 5, cap: 900, jitter: 'full', random: () => 1 }, 20, 900],
    ['no cap given', { base: 5, jitter: 'full', random: () => 1 }, 11, 5 * 1024],
  ])('%s', (_name, settings, attempt, expected) => {
    expect(backoffDelay(attempt, settings)).toBe(expected);
  });
});
