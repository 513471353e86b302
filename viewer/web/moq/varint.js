// The draft's leading-ones variable-length integer (draft-18 § Variable-Length Integers).
//
// The number of leading 1 bits of the first byte gives the length (1..9 bytes); the
// remaining bits, big-endian, are the value.  This is NOT QUIC's 2-bit-prefix varint.
//
// Integers are JS Numbers while they are safe (<= 2^53-1) and BigInts above that, so
// ordinary IDs stay cheap Numbers; `norm()` applies that rule to any result.

import { LocalUsageError, NeedMoreData } from './errors.js';

export const MAX_VARINT = (1n << 64n) - 1n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Number when safe, BigInt otherwise. */
export function norm(v) {
  if (typeof v === 'number') return v;
  return v <= MAX_SAFE ? Number(v) : v;
}

/** a + b (Numbers or BigInts), normalised. */
export function add(a, b) {
  if (typeof a === 'number' && typeof b === 'number') {
    const s = a + b;
    if (Number.isSafeInteger(s)) return s;
  }
  return norm(BigInt(a) + BigInt(b));
}

/** a - b (Numbers or BigInts), normalised; may be negative. */
export function sub(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return norm(BigInt(a) - BigInt(b));
}

export function isOdd(v) {
  return typeof v === 'bigint' ? (v & 1n) === 1n : (v % 2) === 1;
}

function toBig(value) {
  if (typeof value === 'bigint') return value;
  if (!Number.isSafeInteger(value)) throw new LocalUsageError(`varint out of range: ${value}`);
  return BigInt(value);
}

/** Length of the minimal encoding of `value`. */
export function varintSize(value) {
  const v = toBig(value);
  if (v < 0n || v > MAX_VARINT) throw new LocalUsageError(`varint out of range: ${value}`);
  for (let n = 1; n <= 8; n++) if (v < (1n << BigInt(7 * n))) return n;
  return 9;
}

/** Write the minimal encoding of `value` into `out` at `pos`; returns the new position. */
export function writeVarint(out, pos, value) {
  if (typeof value === 'number' && value >= 0 && value < 0x80 && Number.isInteger(value)) {
    out[pos] = value;
    return pos + 1;
  }
  const len = varintSize(value);
  let v = toBig(value);
  if (len === 9) {
    out[pos] = 0xff;
    for (let i = 8; i >= 1; i--) { out[pos + i] = Number(v & 0xffn); v >>= 8n; }
    return pos + 9;
  }
  for (let i = len - 1; i >= 1; i--) { out[pos + i] = Number(v & 0xffn); v >>= 8n; }
  const prefix = (0xff00 >> (len - 1)) & 0xff; // len-1 leading ones
  out[pos] = prefix | Number(v);
  return pos + len;
}

/** The minimal encoding of `value` as a new Uint8Array. */
export function encodeVarint(value) {
  const out = new Uint8Array(varintSize(value));
  writeVarint(out, 0, value);
  return out;
}

/** Encoded length, from the first byte. */
export function varintLength(first) {
  if (first < 0x80) return 1;
  if (first === 0xff) return 9;
  let n = 1;
  while (first & (0x80 >> n)) n++;
  return n + 1;
}

/**
 * Decode one integer from `buf` (a Uint8Array) at `pos`, not reading at or past `end`.
 * Returns [value, newPos]; throws NeedMoreData if the input ends inside the integer.
 */
export function decodeVarint(buf, pos = 0, end = buf.length) {
  if (pos >= end) throw new NeedMoreData();
  const first = buf[pos];
  if (first < 0x80) return [first, pos + 1];
  const len = varintLength(first);
  if (pos + len > end) throw new NeedMoreData();
  if (len <= 7) { // at most 6*8 + 1 = 49 value bits: exact in a Number
    let v = first & (0x7f >> (len - 1));
    for (let i = 1; i < len; i++) v = v * 256 + buf[pos + i];
    return [v, pos + len];
  }
  let v = 0n; // 8- and 9-byte forms keep no value bits in the first byte
  for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(buf[pos + i]);
  return [norm(v), pos + len];
}
