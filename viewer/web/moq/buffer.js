// Reader / Writer over Uint8Array (mirrors moq/wire/buffer.py).
//
// Reader raises NeedMoreData when its input ends early; decoders of length-bounded
// units (a control message payload) turn that into a ProtocolViolation, because there
// all bytes are present and simply malformed.

import { LocalUsageError, NeedMoreData, ProtocolViolation } from './errors.js';
import { decodeVarint, varintSize, writeVarint } from './varint.js';

export class Reader {
  constructor(buf, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  remaining() { return this.end - this.pos; }
  atEnd() { return this.pos >= this.end; }

  varint() {
    const [v, pos] = decodeVarint(this.buf, this.pos, this.end);
    this.pos = pos;
    return v;
  }

  uint8() {
    if (this.pos >= this.end) throw new NeedMoreData();
    return this.buf[this.pos++];
  }

  uint16() {
    if (this.pos + 2 > this.end) throw new NeedMoreData();
    const v = (this.buf[this.pos] << 8) | this.buf[this.pos + 1];
    this.pos += 2;
    return v;
  }

  /** `length` bytes as a view (no copy); only valid while the underlying buffer is. */
  view(length) {
    if (typeof length !== 'number' || this.pos + length > this.end) throw new NeedMoreData();
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  /** `length` bytes as a copy. */
  bytes(length) { return this.view(length).slice(); }

  /** A varint length, then that many bytes; `limit` is the draft's maximum. */
  lpBytes(limit = null, what = 'field') {
    const length = this.varint();
    if (limit !== null && length > limit) throw new ProtocolViolation(`${what} length ${length} exceeds ${limit}`);
    return this.bytes(length);
  }

  rest() { return this.view(this.end - this.pos); }

  /** A reader over the next `length` bytes; advances this one. */
  sub(length) {
    if (typeof length !== 'number' || this.pos + length > this.end) throw new NeedMoreData();
    const r = new Reader(this.buf, this.pos, this.pos + length);
    this.pos += length;
    return r;
  }
}

export class Writer {
  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
    this.length = 0;
  }

  _ensure(n) {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  varint(value) {
    this._ensure(9);
    this.length = writeVarint(this.buf, this.length, value);
    return this;
  }

  uint8(value) {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) throw new LocalUsageError(`uint8 out of range: ${value}`);
    this._ensure(1);
    this.buf[this.length++] = value;
    return this;
  }

  uint16(value) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new LocalUsageError(`uint16 out of range: ${value}`);
    this._ensure(2);
    this.buf[this.length++] = value >> 8;
    this.buf[this.length++] = value & 0xff;
    return this;
  }

  raw(bytes) {
    this._ensure(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
    return this;
  }

  lpBytes(bytes) { return this.varint(bytes.length).raw(bytes); }

  /** The bytes written so far (a copy). */
  bytes() { return this.buf.slice(0, this.length); }
}

export { varintSize };

const textEncoder = new TextEncoder();
export const utf8 = (s) => textEncoder.encode(s);
export const fromUtf8 = (b, fatal = false) => new TextDecoder('utf-8', { fatal }).decode(b);

/** Concatenate Uint8Arrays. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) { out.set(p, pos); pos += p.length; }
  return out;
}
