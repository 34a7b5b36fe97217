/**
 * A small seeded pseudo-random number generator (mulberry32). Not for cryptography: it only
 * makes the simulator's fault decisions and ids reproducible for a given seed.
 */
export type RandomSource = () => number;

/** Returns a function yielding floats in [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): RandomSource {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Derives an independent 32-bit seed from `seed` for a named stream (FNV-1a of the name). */
export function deriveSeed(seed: number, stream: string): number {
  let hash = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < stream.length; i += 1) {
    hash ^= stream.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Lower-case hex string of `length` characters drawn from `random`. */
export function randomHex(random: RandomSource, length: number): string {
  let out = '';
  while (out.length < length) {
    out += Math.floor(random() * 0x100000000)
      .toString(16)
      .padStart(8, '0');
  }
  return out.slice(0, length);
}
