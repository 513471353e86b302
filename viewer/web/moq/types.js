// Shared wire structures (draft-18 § Notational Conventions, § Track Naming,
// § Message Parameters): Location, Track Namespace, Key-Value-Pairs, Reason Phrase,
// Token, Subscription Filter and the Message Parameters block.  Mirrors moq/wire/types.py.
//
// JS shapes: namespace = array of Uint8Array; Location = {group, object};
// key-value pairs = array of [type, value] (even type: integer, odd type: Uint8Array);
// parameters = object holding only the parameters present (camelCase names below).

import { KeyValueFormattingError, LocalUsageError, NeedMoreData, ProtocolViolation } from './errors.js';
import { Reader, Writer, fromUtf8, utf8 } from './buffer.js';
import { MAX_VARINT, add, isOdd } from './varint.js';

export const MAX_NAMESPACE_FIELDS = 32;
export const MAX_FULL_TRACK_NAME = 4096;
export const MAX_REASON_PHRASE = 1024;
export const MAX_KVP_VALUE = 0xffff;

// --- Location (§ Location Structure) -------------------------------------------------

export function encodeLocation(w, loc) { w.varint(loc.group).varint(loc.object); }
export function decodeLocation(r) { return { group: r.varint(), object: r.varint() }; }

/** Compare two Locations: negative, zero or positive. */
export function compareLocation(a, b) {
  if (a.group !== b.group) return a.group < b.group ? -1 : 1;
  if (a.object !== b.object) return a.object < b.object ? -1 : 1;
  return 0;
}

// --- names (§ Track Naming) -----------------------------------------------------------

export function encodeNamespace(w, ns) {
  if (ns.length > MAX_NAMESPACE_FIELDS) throw new LocalUsageError(`namespace has ${ns.length} fields`);
  w.varint(ns.length);
  for (const part of ns) {
    if (!part.length) throw new LocalUsageError('namespace fields must not be empty');
    w.lpBytes(part);
  }
}

export function decodeNamespace(r) {
  const count = r.varint();
  if (count > MAX_NAMESPACE_FIELDS) throw new ProtocolViolation(`namespace has ${count} fields (max 32)`);
  const parts = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    const length = r.varint();
    if (length === 0) throw new ProtocolViolation('empty namespace field');
    total += Number(length);
    if (total > MAX_FULL_TRACK_NAME) throw new ProtocolViolation('track namespace exceeds 4096 bytes');
    parts.push(r.bytes(length));
  }
  return parts;
}

export function encodeTrackName(w, ns, name) {
  encodeNamespace(w, ns);
  if (ns.reduce((n, p) => n + p.length, 0) + name.length > MAX_FULL_TRACK_NAME) {
    throw new LocalUsageError('full track name exceeds 4096 bytes');
  }
  w.lpBytes(name);
}

export function decodeTrackName(r) {
  const ns = decodeNamespace(r);
  const used = ns.reduce((n, p) => n + p.length, 0);
  return [ns, r.lpBytes(MAX_FULL_TRACK_NAME - used, 'full track name')];
}

/** 'live/demo' -> [utf8('live'), utf8('demo')]: the URL form of a namespace. */
export function namespaceFromString(text) {
  return text.split('/').filter((p) => p).map(utf8);
}

export function namespaceToString(ns) { return ns.map((p) => fromUtf8(p)).join('/'); }

// --- Key-Value-Pairs (§ Key-Value-Pair Structure) -------------------------------------

/** Encode pairs with delta types, sorted stably by type. */
export function encodeKvps(w, pairs) {
  const sorted = pairs.map((p, i) => [p, i]).sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1]));
  let prev = 0n;
  for (const [[key, value]] of sorted) {
    const k = BigInt(key);
    w.varint(k - prev);
    prev = k;
    if (isOdd(key)) {
      if (!(value instanceof Uint8Array) || value.length > MAX_KVP_VALUE) {
        throw new LocalUsageError(`odd key ${key} needs a bytes value <= 65535 bytes`);
      }
      w.lpBytes(value);
    } else {
      if (typeof value !== 'number' && typeof value !== 'bigint') throw new LocalUsageError(`even key ${key} needs an integer`);
      w.varint(value);
    }
  }
}

/** Pairs until the reader's end; a truncated pair is a KEY_VALUE_FORMATTING_ERROR. */
export function decodeKvps(r) {
  const out = [];
  let key = 0;
  try {
    while (!r.atEnd()) {
      key = add(key, r.varint());
      if (key > MAX_VARINT) throw new ProtocolViolation('key-value type exceeds 2^64-1');
      out.push([key, isOdd(key) ? r.lpBytes(MAX_KVP_VALUE, 'key-value') : r.varint()]);
    }
  } catch (e) {
    if (e instanceof NeedMoreData) throw new KeyValueFormattingError('truncated key-value pair');
    throw e;
  }
  return out;
}

export function encodeKvpBlock(pairs) { const w = new Writer(); encodeKvps(w, pairs); return w.bytes(); }
export function decodeKvpBlock(bytes) { return decodeKvps(new Reader(bytes)); }

export function kvpGet(pairs, key, dflt = undefined) {
  for (const [k, v] of pairs) if (k === key) return v;
  return dflt;
}

// --- Reason Phrase (§ Reason Phrase Structure) ----------------------------------------

export function encodeReason(w, reason) {
  let data = utf8(reason);
  if (data.length > MAX_REASON_PHRASE) data = utf8(fromUtf8(data.subarray(0, MAX_REASON_PHRASE)).replace(/\uFFFD+$/, ''));
  w.lpBytes(data);
}

export function decodeReason(r) { return fromUtf8(r.lpBytes(MAX_REASON_PHRASE, 'reason phrase')); }

// --- Token (§ AUTHORIZATION TOKEN Parameter) --------------------------------------------

export const AliasType = Object.freeze({ DELETE: 0, REGISTER: 1, USE_ALIAS: 2, USE_VALUE: 3 });

/** token = {aliasType, alias, tokenType, value}; absent fields are null. */
export function encodeToken(tok) {
  const w = new Writer().varint(tok.aliasType);
  const t = tok.aliasType;
  if (t === AliasType.DELETE || t === AliasType.REGISTER || t === AliasType.USE_ALIAS) {
    if (tok.alias === null || tok.alias === undefined) throw new LocalUsageError('token alias required');
    w.varint(tok.alias);
  }
  if (t === AliasType.REGISTER || t === AliasType.USE_VALUE) {
    if (tok.tokenType == null || tok.value == null) throw new LocalUsageError('token type and value required');
    w.varint(tok.tokenType).raw(tok.value);
  } else if (t !== AliasType.DELETE && t !== AliasType.USE_ALIAS) {
    throw new LocalUsageError(`unknown alias type ${t}`);
  }
  return w.bytes();
}

export function decodeToken(bytes) {
  const r = new Reader(bytes);
  let tok;
  try {
    const t = r.varint();
    if (t === AliasType.DELETE || t === AliasType.USE_ALIAS) {
      tok = { aliasType: t, alias: r.varint(), tokenType: null, value: null };
    } else if (t === AliasType.REGISTER) {
      tok = { aliasType: t, alias: r.varint(), tokenType: r.varint(), value: r.rest().slice() };
    } else if (t === AliasType.USE_VALUE) {
      tok = { aliasType: t, alias: null, tokenType: r.varint(), value: r.rest().slice() };
    } else {
      throw new KeyValueFormattingError(`unknown token alias type ${t}`);
    }
  } catch (e) {
    if (e instanceof NeedMoreData) throw new KeyValueFormattingError('truncated token');
    throw e;
  }
  if (!r.atEnd()) throw new KeyValueFormattingError('trailing bytes in token');
  return tok;
}

// --- Subscription Filter (§ Subscription Filters) ----------------------------------------

export const FilterType = Object.freeze({ NEXT_GROUP_START: 1, LARGEST_OBJECT: 2, ABSOLUTE_START: 3, ABSOLUTE_RANGE: 4 });

/** filter = {filterType, start: Location|null, endGroupDelta: integer|null}. */
export function encodeFilter(f) {
  const w = new Writer().varint(f.filterType);
  if (f.filterType === FilterType.ABSOLUTE_START || f.filterType === FilterType.ABSOLUTE_RANGE) {
    if (!f.start) throw new LocalUsageError('absolute filters need a start location');
    encodeLocation(w, f.start);
  }
  if (f.filterType === FilterType.ABSOLUTE_RANGE) {
    if (f.endGroupDelta == null) throw new LocalUsageError('AbsoluteRange needs endGroupDelta');
    w.varint(f.endGroupDelta);
  }
  return w.bytes();
}

export function decodeFilter(bytes) {
  const r = new Reader(bytes);
  let out;
  try {
    const ft = r.varint();
    if (ft === FilterType.NEXT_GROUP_START || ft === FilterType.LARGEST_OBJECT) {
      out = { filterType: ft, start: null, endGroupDelta: null };
    } else if (ft === FilterType.ABSOLUTE_START) {
      out = { filterType: ft, start: decodeLocation(r), endGroupDelta: null };
    } else if (ft === FilterType.ABSOLUTE_RANGE) {
      const start = decodeLocation(r);
      const delta = r.varint();
      if (add(start.group, delta) > MAX_VARINT) throw new ProtocolViolation('end group exceeds 2^64-1');
      out = { filterType: ft, start, endGroupDelta: delta };
    } else {
      throw new ProtocolViolation(`unknown filter type ${ft}`);
    }
  } catch (e) {
    if (e instanceof NeedMoreData) throw new ProtocolViolation('truncated subscription filter');
    throw e;
  }
  if (!r.atEnd()) throw new ProtocolViolation('trailing bytes in subscription filter');
  return out;
}

// --- Message Parameters (§ Message Parameters) -------------------------------------------

export const ParamType = Object.freeze({
  OBJECT_DELIVERY_TIMEOUT: 0x02, AUTHORIZATION_TOKEN: 0x03, RENDEZVOUS_TIMEOUT: 0x04,
  SUBGROUP_DELIVERY_TIMEOUT: 0x06, EXPIRES: 0x08, LARGEST_OBJECT: 0x09, FILL_TIMEOUT: 0x0a,
  FORWARD: 0x10, SUBSCRIBER_PRIORITY: 0x20, SUBSCRIPTION_FILTER: 0x21, GROUP_ORDER: 0x22,
  NEW_GROUP_REQUEST: 0x32, TRACK_NAMESPACE_PREFIX: 0x34,
});

export const GroupOrder = Object.freeze({ ASCENDING: 1, DESCENDING: 2 });

// [type, name, encoding], ascending by type
const PARAMS = [
  [0x02, 'objectDeliveryTimeout', 'varint'],
  [0x03, 'authorizationTokens', 'token'],
  [0x04, 'rendezvousTimeout', 'varint'],
  [0x06, 'subgroupDeliveryTimeout', 'varint'],
  [0x08, 'expires', 'varint'],
  [0x09, 'largestObject', 'location'],
  [0x0a, 'fillTimeout', 'varint'],
  [0x10, 'forward', 'bool8'],
  [0x20, 'subscriberPriority', 'uint8'],
  [0x21, 'subscriptionFilter', 'filter'],
  [0x22, 'groupOrder', 'order'],
  [0x32, 'newGroupRequest', 'varint'],
  [0x34, 'trackNamespacePrefix', 'namespace'],
];
const BY_TYPE = new Map(PARAMS.map(([t, name, enc]) => [t, [name, enc]]));
const KNOWN_NAMES = new Set(PARAMS.map(([, name]) => name));

export function encodeParameters(w, params = {}) {
  for (const name of Object.keys(params)) {
    if (!KNOWN_NAMES.has(name)) throw new LocalUsageError(`unknown parameter ${name}`);
  }
  const items = [];
  for (const [t, name, enc] of PARAMS) {
    const value = params[name];
    if (value === undefined || value === null) continue;
    if (enc === 'token') for (const tok of value) items.push([t, enc, tok]);
    else items.push([t, enc, value]);
  }
  w.varint(items.length);
  let prev = 0;
  for (const [t, enc, value] of items) {
    w.varint(t - prev);
    prev = t;
    switch (enc) {
      case 'varint': w.varint(value); break;
      case 'uint8': case 'bool8': case 'order': w.uint8(value); break;
      case 'location': encodeLocation(w, value); break;
      case 'token': w.lpBytes(encodeToken(value)); break;
      case 'filter': w.lpBytes(encodeFilter(value)); break;
      case 'namespace': encodeNamespace(w, value); break;
    }
  }
}

/** Count-bounded parameters; unknown, not `allowed` (a Set of types) or repeated ones
 *  close the session (PROTOCOL_VIOLATION). */
export function decodeParameters(r, allowed = null) {
  const count = r.varint();
  const values = {};
  const tokens = [];
  let t = 0;
  for (let i = 0; i < count; i++) {
    t = add(t, r.varint());
    if (t > MAX_VARINT) throw new ProtocolViolation('parameter type exceeds 2^64-1');
    const spec = BY_TYPE.get(t);
    if (spec === undefined) throw new ProtocolViolation(`unknown message parameter 0x${t.toString(16)}`);
    if (allowed !== null && !allowed.has(t)) throw new ProtocolViolation(`parameter 0x${t.toString(16)} not allowed here`);
    const [name, enc] = spec;
    if (enc === 'token') { tokens.push(decodeToken(r.lpBytes(MAX_KVP_VALUE, 'token'))); continue; }
    if (name in values) throw new ProtocolViolation(`duplicate parameter 0x${t.toString(16)}`);
    switch (enc) {
      case 'varint': values[name] = r.varint(); break;
      case 'uint8': values[name] = r.uint8(); break;
      case 'bool8': {
        const v = r.uint8();
        if (v > 1) throw new ProtocolViolation(`FORWARD value ${v} not 0 or 1`);
        values[name] = v;
        break;
      }
      case 'order': {
        const v = r.uint8();
        if (v !== 1 && v !== 2) throw new ProtocolViolation(`GROUP_ORDER value ${v} not 1 or 2`);
        values[name] = v;
        break;
      }
      case 'location': values[name] = decodeLocation(r); break;
      case 'filter': values[name] = decodeFilter(r.lpBytes(MAX_KVP_VALUE, 'filter')); break;
      case 'namespace': values[name] = decodeNamespace(r); break;
    }
  }
  if (tokens.length) values.authorizationTokens = tokens;
  // keep a canonical key order (the table's) so decoded blocks compare equal
  const out = {};
  for (const [, name] of PARAMS) if (name in values) out[name] = values[name];
  return out;
}
