// Incremental decoders: feed bytes in any chunking, get complete units out
// (mirrors moq/wire/framing.py).
//
// MessageDecoder frames control messages (control stream and request streams).
// UniStreamDecoder recognises a unidirectional stream by its type (§ Unidirectional
// Stream Types) and then yields its header and objects.  Malformed input throws a
// SessionError carrying the draft's code.

import { NeedMoreData, ProtocolViolation } from './errors.js';
import { Reader } from './buffer.js';
import { decodeMessage } from './control.js';
import {
  DATAGRAM_TYPE_PADDING, FetchObjectCodec, STREAM_TYPE_FETCH, STREAM_TYPE_PADDING, STREAM_TYPE_SETUP,
  decodeDatagramAfterType, decodeSubgroupHeaderAfterType, decodeSubgroupObject, isSubgroupType,
} from './data.js';
import { decodeVarint } from './varint.js';

/** A growable byte buffer with a read position; compacted lazily. */
class Buffered {
  constructor() {
    this.buf = new Uint8Array(1024);
    this.len = 0;
    this.pos = 0;
  }

  append(data) {
    if (this.pos && this.pos >= this.len / 2) { // compact
      this.buf.copyWithin(0, this.pos, this.len);
      this.len -= this.pos;
      this.pos = 0;
    }
    if (this.len + data.length > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.len + data.length) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
    this.buf.set(data, this.len);
    this.len += data.length;
  }

  pending() { return this.len - this.pos; }
}

/** Control message frames: Type (vi64), Length (16), Payload (§ Control Messages). */
export class MessageDecoder extends Buffered {
  feed(data) {
    if (data && data.length) this.append(data);
    const out = [];
    for (;;) {
      let type;
      let p;
      try {
        [type, p] = decodeVarint(this.buf, this.pos, this.len);
      } catch (e) {
        if (e instanceof NeedMoreData) break;
        throw e;
      }
      if (p + 2 > this.len) break;
      const length = (this.buf[p] << 8) | this.buf[p + 1];
      const end = p + 2 + length;
      if (end > this.len) break;
      out.push(decodeMessage(type, this.buf.slice(p + 2, end)));
      this.pos = end;
    }
    return out;
  }

  checkFin() {
    if (this.pending()) throw new ProtocolViolation('stream ended inside a control message');
  }
}

/**
 * Decodes one unidirectional stream.  feed(data, fin) returns, in order: the stream's header
 * ({type: 'SubgroupHeader'|'FetchHeader'|'ControlStreamOpened'|'PaddingStreamOpened'}), then
 * its objects (SubgroupObject, FetchObject, EndOfRange) or control messages.
 * `fetchDescending(requestId)` tells the group order of a FETCH once its header is read.
 */
export class UniStreamDecoder extends Buffered {
  constructor({ fetchDescending = null } = {}) {
    super();
    this.fetchDescending = fetchDescending;
    this.kind = null; // 'control' | 'subgroup' | 'fetch' | 'padding'
    this.header = null;
    this.messages = null;
    this.prevObjectId = null;
    this.fetchCodec = new FetchObjectCodec();
    this.objects = 0;
  }

  feed(data, fin = false) {
    const out = [];
    if (this.kind === 'padding') return out;
    if (this.kind === 'control') {
      out.push(...this.messages.feed(data));
      if (fin) throw new ProtocolViolation('control stream closed');
      return out;
    }
    if (data && data.length) this.append(data);
    if (this.kind === null && !this._readHeader(out)) {
      if (fin) throw new ProtocolViolation('stream ended inside its header');
      return out;
    }
    if (this.kind === 'control') {
      // the SETUP type varint was the stream type; the message decoder re-reads it
      const rest = this.buf.slice(this.pos, this.len);
      this.pos = this.len;
      out.push(...this.messages.feed(rest));
      if (fin) throw new ProtocolViolation('control stream closed');
      return out;
    }
    if (this.kind === 'padding') { this.pos = this.len; return out; }
    this._readObjects(out);
    if (fin && this.pending()) throw new ProtocolViolation('stream ended inside an object');
    return out;
  }

  _readHeader(out) {
    const r = new Reader(this.buf, this.pos, this.len);
    let header;
    try {
      const type = r.varint();
      if (type === STREAM_TYPE_SETUP) {
        this.kind = 'control';
        this.messages = new MessageDecoder();
        out.push({ type: 'ControlStreamOpened' });
        return true; // pos stays before the type: the message decoder frames SETUP from it
      }
      if (type === STREAM_TYPE_PADDING) {
        this.kind = 'padding';
        out.push({ type: 'PaddingStreamOpened' });
        return true;
      }
      if (type === STREAM_TYPE_FETCH) {
        header = { type: 'FetchHeader', requestId: r.varint() };
        this.kind = 'fetch';
        if (this.fetchDescending) this.fetchCodec.descending = Boolean(this.fetchDescending(header.requestId));
      } else if (isSubgroupType(type)) {
        header = decodeSubgroupHeaderAfterType(type, r);
        this.kind = 'subgroup';
      } else {
        throw new ProtocolViolation(`unknown unidirectional stream type 0x${type.toString(16)}`);
      }
    } catch (e) {
      if (e instanceof NeedMoreData) return false;
      throw e;
    }
    this.pos = r.pos;
    this.header = header;
    out.push(header);
    return true;
  }

  _readObjects(out) {
    const subgroup = this.kind === 'subgroup';
    const hasProps = subgroup && this.header.hasProperties;
    while (this.pos < this.len) {
      const r = new Reader(this.buf, this.pos, this.len);
      let item;
      try {
        item = subgroup ? decodeSubgroupObject(r, this.prevObjectId, hasProps) : this.fetchCodec.decode(r);
      } catch (e) {
        if (e instanceof NeedMoreData) break;
        throw e;
      }
      if (subgroup) this.prevObjectId = item.objectId;
      this.pos = r.pos;
      this.objects++;
      out.push(item);
    }
  }
}

/** One datagram (§ Object Datagram); null for a padding datagram (to be discarded). */
export function decodeDatagram(data) {
  const r = new Reader(data);
  let t;
  try {
    t = r.varint();
  } catch (e) {
    if (e instanceof NeedMoreData) throw new ProtocolViolation('empty datagram');
    throw e;
  }
  if (t === DATAGRAM_TYPE_PADDING) return null;
  try {
    return decodeDatagramAfterType(t, r);
  } catch (e) {
    if (e instanceof NeedMoreData) throw new ProtocolViolation('truncated datagram');
    throw e;
  }
}
