// Reads tests/vectors/*.json (schema: tests/vectors/README.md) into the JS codec's shapes,
// the JS counterpart of the converters in tests/wire/test_vectors.py.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const VECTORS = join(dirname(fileURLToPath(import.meta.url)), '..', 'vectors');

export function load(name) {
  return JSON.parse(readFileSync(join(VECTORS, name), 'utf-8')).vectors;
}

export function raw(vector) {
  return Uint8Array.from(Buffer.from(vector.hex.replace(/\s+/g, ''), 'hex'));
}

export function hex(bytes) {
  return Buffer.from(bytes).toString('hex');
}

// integers: a JSON number <= 2^53-1, or a decimal string above that (decoded as BigInt)
export function jInt(v) {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new Error(`not a safe integer: ${v}`);
    return v;
  }
  if (typeof v === 'string' && /^\d+$/.test(v)) {
    const b = BigInt(v);
    if (b <= BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`decimal strings are only for values > 2^53-1: ${v}`);
    return b;
  }
  throw new Error(`not an integer: ${JSON.stringify(v)}`);
}

const jOptInt = (v) => (v === null ? null : jInt(v));

export function jBytes(v) {
  if (typeof v === 'string') return new TextEncoder().encode(v);
  if (v && typeof v === 'object' && Object.keys(v).join() === 'hex') return Uint8Array.from(Buffer.from(v.hex, 'hex'));
  throw new Error(`not bytes: ${JSON.stringify(v)}`);
}

const jOptBytes = (v) => (v === null ? null : jBytes(v));
const jNamespace = (v) => v.map(jBytes);
const jLocation = (v) => ({ group: jInt(v.group), object: jInt(v.object) });
const jOptLocation = (v) => (v === null ? null : jLocation(v));
const jBool = (v) => { if (typeof v !== 'boolean') throw new Error(`not a boolean: ${v}`); return v; };

export function jKvps(v) {
  return v.map(([k, val]) => {
    const key = jInt(k);
    const odd = typeof key === 'bigint' ? (key & 1n) === 1n : key % 2 === 1;
    return [key, odd ? jBytes(val) : jInt(val)];
  });
}

export const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

const jToken = (t) => ({
  aliasType: jInt(t.alias_type), alias: jOptInt(t.alias), tokenType: jOptInt(t.token_type), value: jOptBytes(t.value),
});
const jFilter = (f) => ({ filterType: jInt(f.filter_type), start: jOptLocation(f.start), endGroupDelta: jOptInt(f.end_group_delta) });

const PARAM_CONVERTERS = {
  authorization_tokens: (v) => v.map(jToken),
  largest_object: jLocation,
  subscription_filter: jFilter,
  track_namespace_prefix: jNamespace,
};

export function jParameters(v) {
  const out = {};
  for (const [k, val] of Object.entries(v)) out[camel(k)] = (PARAM_CONVERTERS[k] ?? jInt)(val);
  return out;
}

const FIELD_CONVERTERS = {
  options: jKvps,
  track_properties: jKvps,
  parameters: jParameters,
  track_namespace: jNamespace,
  track_namespace_prefix: jNamespace,
  track_namespace_suffix: jNamespace,
  track_name: jBytes,
  new_session_uri: jBytes,
  request_id: jOptInt,
  reason: (v) => { if (typeof v !== 'string') throw new Error('reason must be text'); return v; },
  redirect: (v) => (v === null ? null
    : { connectUri: jBytes(v.connect_uri), trackNamespace: jNamespace(v.track_namespace), trackName: jBytes(v.track_name) }),
  standalone: (v) => (v === null ? null : {
    trackNamespace: jNamespace(v.track_namespace), trackName: jBytes(v.track_name),
    start: jLocation(v.start), end: jLocation(v.end),
  }),
  joining: (v) => (v === null ? null : { joiningRequestId: jInt(v.joining_request_id), joiningStart: jInt(v.joining_start) }),
  end_of_track: jBool,
  end_location: jLocation,
};

export function jMessage(v) {
  const out = { type: v.type };
  for (const [k, val] of Object.entries(v)) {
    if (k !== 'type') out[camel(k)] = (FIELD_CONVERTERS[k] ?? jInt)(val);
  }
  return out;
}

export const jSubgroupHeader = (h) => ({
  type: 'SubgroupHeader', trackAlias: jInt(h.track_alias), groupId: jInt(h.group_id), subgroupId: jOptInt(h.subgroup_id),
  publisherPriority: jOptInt(h.publisher_priority), hasProperties: jBool(h.has_properties),
  endOfGroup: jBool(h.end_of_group), firstObject: jBool(h.first_object),
});

export const jSubgroupObject = (o) => ({
  type: 'SubgroupObject', objectId: jInt(o.object_id), payload: jBytes(o.payload), status: jInt(o.status),
  properties: jBytes(o.properties),
});

export function jFetchItem(item) {
  if ('end_of_range' in item) {
    const e = item.end_of_range;
    return { type: 'EndOfRange', groupId: jInt(e.group_id), objectId: jInt(e.object_id), unknown: jBool(e.unknown) };
  }
  const o = item.object;
  return {
    type: 'FetchObject', groupId: jInt(o.group_id), subgroupId: jOptInt(o.subgroup_id), objectId: jInt(o.object_id),
    publisherPriority: jInt(o.publisher_priority), payload: jBytes(o.payload), properties: jBytes(o.properties),
  };
}

export const jDatagram = (d) => (d === null ? null : {
  type: 'ObjectDatagram', trackAlias: jInt(d.track_alias), groupId: jInt(d.group_id), objectId: jInt(d.object_id),
  publisherPriority: jOptInt(d.publisher_priority), properties: jOptBytes(d.properties), status: jOptInt(d.status),
  payload: jBytes(d.payload), endOfGroup: jBool(d.end_of_group),
});
