// Data plane (draft-18 § Data Streams and Datagrams): subgroup and fetch stream headers,
// the objects on them, object datagrams and padding.  Mirrors moq/wire/data.py.
//
// Object Properties stay as their raw encoded block (Uint8Array); end points decode them
// with types.decodeKvpBlock (see media/loc.js).

import { LocalUsageError, ProtocolViolation } from './errors.js';
import { Reader, Writer } from './buffer.js';
import { MAX_VARINT, add, encodeVarint, sub } from './varint.js';

export const STREAM_TYPE_FETCH = 0x05;
export const STREAM_TYPE_SETUP = 0x2f00;
export const STREAM_TYPE_PADDING = 0x132b3e28;
export const DATAGRAM_TYPE_PADDING = 0x132b3e29;

/** § Object Status */
export const ObjectStatus = Object.freeze({ NORMAL: 0x0, END_OF_GROUP: 0x3, END_OF_TRACK: 0x4 });
const VALID_STATUS = new Set(Object.values(ObjectStatus));

export function checkStatus(status) {
  if (!VALID_STATUS.has(status)) throw new ProtocolViolation(`unknown object status ${status}`);
  return status;
}

// --- subgroup streams (§ Subgroup Header) ---------------------------------------------------

export const SG_PROPERTIES = 0x01;
export const SG_ID_MODE_MASK = 0x06;
export const SG_END_OF_GROUP = 0x08;
export const SG_BASE = 0x10;
export const SG_DEFAULT_PRIORITY = 0x20;
export const SG_FIRST_OBJECT = 0x40;

/** Types of the form 0b0XX1XXXX (the reserved ID mode is rejected when decoding). */
export const isSubgroupType = (t) => typeof t === 'number' && t < 0x80 && (t & 0x90) === 0x10;

/**
 * header = {type: 'SubgroupHeader', trackAlias, groupId, subgroupId, publisherPriority,
 *           hasProperties, endOfGroup, firstObject}
 * subgroupId null = "the first object's ID" (SUBGROUP_ID_MODE 0b01);
 * publisherPriority null = the subscription's default priority (DEFAULT_PRIORITY bit).
 */
export function subgroupStreamType(h) {
  let t = SG_BASE;
  if (h.hasProperties) t |= SG_PROPERTIES;
  if (h.subgroupId === null) t |= 0b01 << 1;
  else if (h.subgroupId !== 0) t |= 0b10 << 1;
  if (h.endOfGroup) t |= SG_END_OF_GROUP;
  if (h.publisherPriority === null) t |= SG_DEFAULT_PRIORITY;
  if (h.firstObject) t |= SG_FIRST_OBJECT;
  return t;
}

export function encodeSubgroupHeader(h) {
  const w = new Writer().varint(subgroupStreamType(h)).varint(h.trackAlias).varint(h.groupId);
  if (h.subgroupId) w.varint(h.subgroupId);
  if (h.publisherPriority !== null) w.uint8(h.publisherPriority);
  return w.bytes();
}

export function decodeSubgroupHeaderAfterType(t, r) {
  if (!isSubgroupType(t)) throw new ProtocolViolation(`not a subgroup header type: ${t}`);
  const mode = (t & SG_ID_MODE_MASK) >> 1;
  if (mode === 0b11) throw new ProtocolViolation(`reserved SUBGROUP_ID_MODE in type 0x${t.toString(16)}`);
  const trackAlias = r.varint();
  const groupId = r.varint();
  const subgroupId = mode === 0 ? 0 : mode === 1 ? null : r.varint();
  const publisherPriority = t & SG_DEFAULT_PRIORITY ? null : r.uint8();
  return {
    type: 'SubgroupHeader', trackAlias, groupId, subgroupId, publisherPriority,
    hasProperties: Boolean(t & SG_PROPERTIES), endOfGroup: Boolean(t & SG_END_OF_GROUP),
    firstObject: Boolean(t & SG_FIRST_OBJECT),
  };
}

/**
 * The per-object fields before the payload (§ Subgroup Header, "Subgroup Object Fields").
 * `properties` must be given (maybe empty) exactly when the header has the PROPERTIES bit.
 */
export function encodeSubgroupObject(prevObjectId, objectId, payloadLength,
  { status = ObjectStatus.NORMAL, properties = null } = {}) {
  let delta;
  if (prevObjectId === null) delta = objectId;
  else {
    delta = sub(sub(objectId, prevObjectId), 1);
    if (delta < 0) throw new LocalUsageError(`object ${objectId} not after ${prevObjectId}`);
  }
  const w = new Writer().varint(delta);
  if (properties !== null) {
    if (status !== ObjectStatus.NORMAL && properties.length) throw new LocalUsageError('only Normal objects carry properties');
    w.lpBytes(properties);
  }
  w.varint(payloadLength);
  if (payloadLength === 0) w.varint(status);
  else if (status !== ObjectStatus.NORMAL) throw new LocalUsageError('objects with a status have no payload');
  return w.bytes();
}

/**
 * One object: {type: 'SubgroupObject', objectId, payload, status, properties}.
 * NeedMoreData if incomplete (the caller keeps its bytes; nothing is consumed).
 */
export function decodeSubgroupObject(r, prevObjectId, hasProperties) {
  const delta = r.varint();
  const objectId = prevObjectId === null ? delta : add(add(prevObjectId, delta), 1);
  if (objectId > MAX_VARINT) throw new ProtocolViolation('object ID exceeds 2^64-1');
  let properties = new Uint8Array(0);
  if (hasProperties) properties = r.bytes(r.varint());
  const length = r.varint();
  if (length === 0) {
    const status = checkStatus(r.varint());
    if (properties.length && status !== ObjectStatus.NORMAL) {
      throw new ProtocolViolation('properties on an object whose status is not Normal');
    }
    return { type: 'SubgroupObject', objectId, payload: new Uint8Array(0), status, properties };
  }
  return { type: 'SubgroupObject', objectId, payload: r.bytes(length), status: ObjectStatus.NORMAL, properties };
}

// --- datagrams (§ Object Datagram) ------------------------------------------------------------

export const DG_PROPERTIES = 0x01;
export const DG_END_OF_GROUP = 0x02;
export const DG_ZERO_OBJECT_ID = 0x04;
export const DG_DEFAULT_PRIORITY = 0x08;
export const DG_STATUS = 0x20;

export const isDatagramType = (t) => typeof t === 'number' && t < 0x30 && (t & 0xd0) === 0
  && !((t & DG_STATUS) && (t & DG_END_OF_GROUP));

/**
 * dg = {type: 'ObjectDatagram', trackAlias, groupId, objectId, publisherPriority (null =
 *       default), properties (null = none, else non-empty), status (null = payload
 *       datagram), payload, endOfGroup}
 */
export function encodeDatagram(dg) {
  let t = 0;
  if (dg.properties !== null) {
    if (!dg.properties.length) throw new LocalUsageError('datagram properties must be non-empty (or null)');
    t |= DG_PROPERTIES;
  }
  if (dg.endOfGroup) t |= DG_END_OF_GROUP;
  if (dg.objectId === 0) t |= DG_ZERO_OBJECT_ID;
  if (dg.publisherPriority === null) t |= DG_DEFAULT_PRIORITY;
  if (dg.status !== null) {
    if (dg.endOfGroup) throw new LocalUsageError('a status datagram cannot signal end of group');
    if (dg.payload.length) throw new LocalUsageError('a status datagram has no payload');
    t |= DG_STATUS;
  }
  const w = new Writer().varint(t).varint(dg.trackAlias).varint(dg.groupId);
  if (dg.objectId !== 0) w.varint(dg.objectId);
  if (dg.publisherPriority !== null) w.uint8(dg.publisherPriority);
  if (dg.properties !== null) w.lpBytes(dg.properties);
  if (dg.status !== null) w.varint(dg.status);
  else w.raw(dg.payload);
  return w.bytes();
}

export function decodeDatagramAfterType(t, r) {
  if (!isDatagramType(t)) throw new ProtocolViolation(`invalid datagram type ${t}`);
  const trackAlias = r.varint();
  const groupId = r.varint();
  const objectId = t & DG_ZERO_OBJECT_ID ? 0 : r.varint();
  const publisherPriority = t & DG_DEFAULT_PRIORITY ? null : r.uint8();
  let properties = null;
  if (t & DG_PROPERTIES) {
    properties = r.lpBytes();
    if (!properties.length) throw new ProtocolViolation('datagram PROPERTIES bit with zero-length properties');
  }
  let status = null;
  let payload = new Uint8Array(0);
  if (t & DG_STATUS) {
    status = checkStatus(r.varint());
    if (properties !== null && status !== ObjectStatus.NORMAL) {
      throw new ProtocolViolation('properties on a datagram whose status is not Normal');
    }
    if (!r.atEnd()) throw new ProtocolViolation("bytes after a datagram's object status");
  } else {
    payload = r.rest().slice();
  }
  return {
    type: 'ObjectDatagram', trackAlias, groupId, objectId, publisherPriority, properties, status, payload,
    endOfGroup: Boolean(t & DG_END_OF_GROUP),
  };
}

// --- fetch streams (§ Fetch Header) -------------------------------------------------------------

const FETCH_OBJECT_ID = 0x04;
const FETCH_GROUP_ID = 0x08;
const FETCH_PRIORITY = 0x10;
const FETCH_PROPERTIES = 0x20;
const FETCH_DATAGRAM = 0x40;
export const END_OF_NON_EXISTENT_RANGE = 0x8c;
export const END_OF_UNKNOWN_RANGE = 0x10c;

export function encodeFetchHeader(h) {
  const w = new Writer().varint(STREAM_TYPE_FETCH).varint(h.requestId);
  return w.bytes();
}

/**
 * The prior-object state that fetch Serialization Flags refer to (§ Fetch Header, Flags).
 * One instance per fetch stream on each side; `descending` is the FETCH's group order.
 *
 * Items: {type: 'FetchObject', groupId, subgroupId (null = Datagram preference), objectId,
 *         publisherPriority, payload, properties}
 *     or {type: 'EndOfRange', groupId, objectId, unknown}.
 */
export class FetchObjectCodec {
  constructor(descending = false) {
    this.descending = descending;
    this.group = null;
    this.object = null;
    this.subgroup = null; // from the last real object (datagram: null)
    this.priority = null;
    this.first = true;
  }

  /** Header bytes for `item`; a FetchObject's payload follows them. */
  encode(item) {
    const w = new Writer();
    if (item.type === 'EndOfRange') {
      w.varint(item.unknown ? END_OF_UNKNOWN_RANGE : END_OF_NON_EXISTENT_RANGE).varint(item.groupId).varint(item.objectId);
      this.group = item.groupId; this.object = item.objectId; this.first = false;
      return w.bytes();
    }
    let flags = 0;
    const newGroup = this.group === null || item.groupId !== this.group;
    if (newGroup) flags |= FETCH_GROUP_ID | FETCH_OBJECT_ID;
    else if (this.object === null || item.objectId !== add(this.object, 1)) flags |= FETCH_OBJECT_ID;
    if (item.subgroupId === null) flags |= FETCH_DATAGRAM;
    else if (item.subgroupId === 0) { /* mode 0b00 */ } else if (this.subgroup !== null && item.subgroupId === this.subgroup) flags |= 0x01;
    else if (this.subgroup !== null && item.subgroupId === add(this.subgroup, 1)) flags |= 0x02;
    else flags |= 0x03;
    if (this.priority === null || item.publisherPriority !== this.priority) flags |= FETCH_PRIORITY;
    if (item.properties.length) flags |= FETCH_PROPERTIES;
    w.varint(flags);
    // field order: Group ID Delta, Subgroup ID, Object ID Delta, Priority, Properties, Length
    if (newGroup) {
      if (this.group === null) w.varint(item.groupId);
      else {
        const step = this.descending ? sub(this.group, item.groupId) : sub(item.groupId, this.group);
        if (step < 1) throw new LocalUsageError('fetch groups must follow the requested group order');
        w.varint(sub(step, 1));
      }
    }
    if ((flags & 0x03) === 0x03 && !(flags & FETCH_DATAGRAM)) w.varint(item.subgroupId);
    if (newGroup) w.varint(item.objectId);
    else if (flags & FETCH_OBJECT_ID) {
      const delta = sub(item.objectId, this.object);
      if (delta < 0) throw new LocalUsageError('object IDs must increase within a group');
      w.varint(delta);
    }
    if (flags & FETCH_PRIORITY) w.uint8(item.publisherPriority);
    if (flags & FETCH_PROPERTIES) w.lpBytes(item.properties);
    w.varint(item.payload.length);
    this._advance(item.groupId, item.objectId, item.subgroupId, item.publisherPriority);
    return w.bytes();
  }

  _advance(group, object, subgroup, priority) {
    this.group = group; this.object = object; this.subgroup = subgroup; this.priority = priority; this.first = false;
  }

  /** Parse one item; on NeedMoreData no state has changed (the caller retries later). */
  decode(r) {
    const flags = r.varint();
    if (flags === END_OF_NON_EXISTENT_RANGE || flags === END_OF_UNKNOWN_RANGE) {
      const groupId = r.varint();
      const objectId = r.varint();
      this.group = groupId; this.object = objectId; this.first = false;
      return { type: 'EndOfRange', groupId, objectId, unknown: flags === END_OF_UNKNOWN_RANGE };
    }
    if (flags >= 0x80) throw new ProtocolViolation(`invalid fetch serialization flags ${flags}`);
    const mode = flags & 0x03;
    if (this.first && (!(flags & FETCH_GROUP_ID) || !(flags & FETCH_OBJECT_ID) || !(flags & FETCH_PRIORITY)
      || (!(flags & FETCH_DATAGRAM) && (mode === 0x01 || mode === 0x02)))) {
      throw new ProtocolViolation('first fetch object refers to a prior object');
    }
    let group = this.group;
    if (flags & FETCH_GROUP_ID) {
      const gd = r.varint();
      if (this.group === null) group = gd;
      else if (this.descending) group = sub(sub(this.group, gd), 1);
      else group = add(add(this.group, gd), 1);
      if (group < 0 || group > MAX_VARINT) throw new ProtocolViolation('fetch group ID out of range');
    }
    let subgroup;
    if (flags & FETCH_DATAGRAM) subgroup = null;
    else {
      if ((mode === 0x01 || mode === 0x02) && this.subgroup === null) {
        throw new ProtocolViolation('fetch object refers to a prior subgroup that does not exist');
      }
      if (mode === 0x00) subgroup = 0;
      else if (mode === 0x01) subgroup = this.subgroup;
      else if (mode === 0x02) subgroup = add(this.subgroup, 1);
      else subgroup = r.varint();
    }
    let obj;
    if (flags & FETCH_GROUP_ID) obj = flags & FETCH_OBJECT_ID ? r.varint() : add(this.object, 1);
    else obj = flags & FETCH_OBJECT_ID ? add(this.object, r.varint()) : add(this.object, 1);
    if (obj > MAX_VARINT) throw new ProtocolViolation('fetch object ID exceeds 2^64-1');
    let priority;
    if (flags & FETCH_PRIORITY) priority = r.uint8();
    else if (this.priority === null) throw new ProtocolViolation('fetch object refers to a prior priority that does not exist');
    else priority = this.priority;
    const properties = flags & FETCH_PROPERTIES ? r.lpBytes() : new Uint8Array(0);
    const payload = r.bytes(r.varint());
    this._advance(group, obj, subgroup, priority);
    return { type: 'FetchObject', groupId: group, subgroupId: subgroup, objectId: obj, publisherPriority: priority, payload, properties };
  }
}

// --- padding (§ Padding) --------------------------------------------------------------------------

export const paddingStreamHeader = () => encodeVarint(STREAM_TYPE_PADDING);

export function paddingDatagram(size) {
  const head = encodeVarint(DATAGRAM_TYPE_PADDING);
  const out = new Uint8Array(head.length + size);
  out.set(head);
  return out;
}

export { Reader };
