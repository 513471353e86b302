// Round trips through the JS codec with seeded random values: every control message,
// subgroup and fetch streams fed in random chunks, datagrams; and random bytes must only
// ever raise SessionError (never a TypeError or RangeError from a bug).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MESSAGES, decodeMessage, encodeMessage } from '../../viewer/web/moq/control.js';
import {
  FetchObjectCodec, ObjectStatus, encodeDatagram, encodeFetchHeader, encodeSubgroupHeader, encodeSubgroupObject,
} from '../../viewer/web/moq/data.js';
import { NeedMoreData, SessionError } from '../../viewer/web/moq/errors.js';
import { MessageDecoder, UniStreamDecoder, decodeDatagram } from '../../viewer/web/moq/framing.js';
import { decodeKvpBlock, encodeKvpBlock } from '../../viewer/web/moq/types.js';
import { MAX_VARINT, decodeVarint, encodeVarint, norm } from '../../viewer/web/moq/varint.js';

// xorshift32: deterministic, so a failure is reproducible from its seed
function rng(seed) {
  let s = seed >>> 0 || 1;
  const next = () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; };
  const int = (n) => Math.floor(next() * n);
  return {
    next, int,
    pick: (arr) => arr[int(arr.length)],
    bool: () => next() < 0.5,
    bytes: (max) => Uint8Array.from({ length: int(max + 1) }, () => int(256)),
    // integers across all varint lengths, incl. BigInts above 2^53
    varint() {
      const bits = int(65);
      if (bits <= 52) return Math.floor(next() * 2 ** bits);
      let v = 0n;
      for (let i = 0; i < bits; i++) v = (v << 1n) | BigInt(int(2));
      return norm(v > MAX_VARINT ? MAX_VARINT : v);
    },
    small: () => int(1000),
  };
}

const R = rng(0xC0FFEE);
const ns = () => Array.from({ length: 1 + R.int(4) }, () => Uint8Array.from({ length: 1 + R.int(8) }, () => 97 + R.int(26)));
const name = () => Uint8Array.from({ length: R.int(12) }, () => 97 + R.int(26));
const loc = () => ({ group: R.varint(), object: R.varint() });
const kvps = () => {
  const out = [];
  let k = 0;
  for (let i = R.int(4); i > 0; i--) {
    k += R.int(40);
    out.push([k, k % 2 ? R.bytes(16) : R.varint()]);
  }
  return out;
};
const filter = () => {
  const t = 1 + R.int(4);
  return { filterType: t, start: t >= 3 ? { group: R.small(), object: R.small() } : null, endGroupDelta: t === 4 ? R.small() : null };
};
const token = () => R.pick([
  { aliasType: 0, alias: R.small(), tokenType: null, value: null },
  { aliasType: 1, alias: R.small(), tokenType: R.small(), value: R.bytes(10) },
  { aliasType: 2, alias: R.small(), tokenType: null, value: null },
  { aliasType: 3, alias: null, tokenType: R.small(), value: R.bytes(10) },
]);

// a random subset of the parameters a message allows
const PARAM_GEN = {
  objectDeliveryTimeout: () => R.varint(), authorizationTokens: () => [token(), token()].slice(0, 1 + R.int(2)),
  rendezvousTimeout: () => R.varint(), subgroupDeliveryTimeout: () => R.varint(), expires: () => R.varint(),
  largestObject: loc, fillTimeout: () => R.varint(), forward: () => R.int(2), subscriberPriority: () => R.int(256),
  subscriptionFilter: filter, groupOrder: () => 1 + R.int(2), newGroupRequest: () => R.varint(),
  trackNamespacePrefix: ns,
};
const params = (...names) => {
  const out = {};
  for (const n of names) if (R.bool()) out[n] = PARAM_GEN[n]();
  return out;
};
const SUB = ['authorizationTokens', 'objectDeliveryTimeout', 'subgroupDeliveryTimeout', 'rendezvousTimeout',
  'subscriberPriority', 'groupOrder', 'subscriptionFilter', 'forward', 'newGroupRequest'];
const PUB_OK = ['objectDeliveryTimeout', 'subgroupDeliveryTimeout', 'subscriberPriority', 'groupOrder',
  'subscriptionFilter', 'expires', 'forward', 'newGroupRequest'];

const GEN = {
  Setup: () => ({ options: kvps() }),
  GoAway: () => ({ newSessionUri: name(), timeout: R.varint(), requestId: R.bool() ? null : R.varint() }),
  RequestOk: () => ({ parameters: params(...PUB_OK, 'largestObject'), trackProperties: kvps() }),
  PublishOk: () => ({ parameters: params(...PUB_OK), trackProperties: [] }),
  RequestError: () => (R.bool()
    ? { errorCode: 0x10, retryInterval: R.varint(), reason: 'no such track ✓', redirect: null }
    : { errorCode: 0x34, retryInterval: 0, reason: '', redirect: { connectUri: name(), trackNamespace: ns(), trackName: name() } }),
  Subscribe: () => ({ requestId: R.varint(), trackNamespace: ns(), trackName: name(), parameters: params(...SUB) }),
  TrackStatus: () => ({ requestId: R.varint(), trackNamespace: ns(), trackName: name(), parameters: params('authorizationTokens') }),
  SubscribeOk: () => ({ trackAlias: R.varint(), parameters: params('expires', 'largestObject'), trackProperties: kvps() }),
  RequestUpdate: () => ({ requestId: R.varint(), parameters: params('forward', 'subscriberPriority', 'trackNamespacePrefix') }),
  Publish: () => ({ requestId: R.varint(), trackNamespace: ns(), trackName: name(), trackAlias: R.varint(),
    parameters: params('authorizationTokens', 'expires', 'largestObject', 'forward'), trackProperties: kvps() }),
  PublishDone: () => ({ statusCode: R.small(), streamCount: R.varint(), reason: 'bye' }),
  Fetch: () => (R.bool()
    ? { requestId: R.varint(), fetchType: 1, standalone: { trackNamespace: ns(), trackName: name(), start: loc(), end: loc() },
      joining: null, parameters: params('authorizationTokens', 'subscriberPriority', 'groupOrder', 'fillTimeout') }
    : { requestId: R.varint(), fetchType: 2 + R.int(2), standalone: null,
      joining: { joiningRequestId: R.varint(), joiningStart: R.varint() }, parameters: {} }),
  FetchOk: () => ({ endOfTrack: R.bool(), endLocation: loc(), parameters: {}, trackProperties: kvps() }),
  PublishNamespace: () => ({ requestId: R.varint(), trackNamespace: ns(), parameters: params('authorizationTokens') }),
  SubscribeNamespace: () => ({ requestId: R.varint(), trackNamespacePrefix: ns(), parameters: params('authorizationTokens') }),
  SubscribeTracks: () => ({ requestId: R.varint(), trackNamespacePrefix: ns(), parameters: params('authorizationTokens', 'forward') }),
  Namespace: () => ({ trackNamespaceSuffix: ns() }),
  NamespaceDone: () => ({ trackNamespaceSuffix: ns() }),
  PublishBlocked: () => ({ trackNamespaceSuffix: ns(), trackName: name() }),
};

/** Split `data` into random chunks. */
function chunks(data) {
  const out = [];
  for (let i = 0; i < data.length;) {
    const n = 1 + R.int(Math.max(1, data.length / 3));
    out.push(data.subarray(i, i + n));
    i += n;
  }
  return out;
}

const concat = (parts) => Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p))));

describe('round trips', () => {
  test('varints', () => {
    for (let i = 0; i < 2000; i++) {
      const v = R.varint();
      const enc = encodeVarint(v);
      assert.deepEqual(decodeVarint(enc), [v, enc.length]);
      for (let end = 0; end < enc.length; end++) assert.throws(() => decodeVarint(enc.subarray(0, end)), NeedMoreData);
    }
  });

  test('every control message type', () => {
    assert.deepEqual(new Set(Object.keys(GEN)), new Set(Object.keys(MESSAGES)));
    for (let i = 0; i < 200; i++) {
      const msgs = Object.entries(GEN).map(([type, gen]) => ({ type, ...gen() }));
      for (const m of msgs) {
        const frame = encodeMessage(m);
        const [id, pos] = decodeVarint(frame);
        assert.deepEqual(decodeMessage(id, frame.subarray(pos + 2)), m);
      }
      const dec = new MessageDecoder();
      const got = [];
      for (const c of chunks(concat(msgs.map(encodeMessage)))) got.push(...dec.feed(c));
      assert.deepEqual(got, msgs);
    }
  });

  test('key-value blocks', () => {
    for (let i = 0; i < 500; i++) {
      const pairs = kvps();
      assert.deepEqual(decodeKvpBlock(encodeKvpBlock(pairs)), pairs);
    }
  });

  test('subgroup streams in random chunks', () => {
    for (let i = 0; i < 300; i++) {
      const header = {
        type: 'SubgroupHeader', trackAlias: R.varint(), groupId: R.varint(), subgroupId: R.pick([0, null, 1 + R.small()]),
        publisherPriority: R.bool() ? null : R.int(256), hasProperties: R.bool(), endOfGroup: R.bool(), firstObject: R.bool(),
      };
      const objects = [];
      let id = R.small();
      for (let n = R.int(6); n > 0; n--) {
        const status = R.int(5) === 0 ? R.pick([ObjectStatus.NORMAL, ObjectStatus.END_OF_GROUP, ObjectStatus.END_OF_TRACK]) : 0;
        const payload = status ? new Uint8Array(0) : R.bytes(300);
        const properties = header.hasProperties && !status ? encodeKvpBlock(kvps()) : new Uint8Array(0);
        objects.push({ type: 'SubgroupObject', objectId: id, payload, status, properties });
        id += 1 + R.int(3);
      }
      const parts = [encodeSubgroupHeader(header)];
      let prev = null;
      for (const o of objects) {
        parts.push(encodeSubgroupObject(prev, o.objectId, o.payload.length,
          { status: o.status, properties: header.hasProperties ? o.properties : null }), o.payload);
        prev = o.objectId;
      }
      const dec = new UniStreamDecoder();
      const got = [];
      for (const c of chunks(concat(parts))) got.push(...dec.feed(c));
      got.push(...dec.feed(new Uint8Array(0), true));
      assert.deepEqual(got, [header, ...objects]);
    }
  });

  test('fetch streams in both group orders', () => {
    for (let i = 0; i < 300; i++) {
      const descending = R.bool();
      const items = [];
      let g = 1000 + R.small();
      for (let n = 1 + R.int(4); n > 0; n--) {
        let o = R.int(3);
        for (let k = 1 + R.int(3); k > 0; k--) {
          items.push({ type: 'FetchObject', groupId: g, subgroupId: R.pick([0, 0, null, R.int(4)]), objectId: o,
            publisherPriority: R.pick([128, 128, R.int(256)]), payload: R.bytes(50),
            properties: R.bool() ? encodeKvpBlock([[0x10, R.varint()]]) : new Uint8Array(0) });
          o += 1 + R.int(2);
        }
        g += descending ? -(1 + R.int(3)) : 1 + R.int(3);
      }
      const header = { type: 'FetchHeader', requestId: R.small() };
      const codec = new FetchObjectCodec(descending);
      const parts = [encodeFetchHeader(header)];
      for (const it of items) parts.push(codec.encode(it), it.payload);
      const dec = new UniStreamDecoder({ fetchDescending: () => descending });
      const got = [];
      for (const c of chunks(concat(parts))) got.push(...dec.feed(c));
      got.push(...dec.feed(new Uint8Array(0), true));
      assert.deepEqual(got, [header, ...items]);
    }
  });

  test('datagrams', () => {
    for (let i = 0; i < 1000; i++) {
      const withStatus = R.int(4) === 0;
      const dg = {
        type: 'ObjectDatagram', trackAlias: R.varint(), groupId: R.varint(), objectId: R.pick([0, R.varint()]),
        publisherPriority: R.bool() ? null : R.int(256), properties: R.bool() ? encodeKvpBlock([[0x10, R.small()]]) : null,
        status: withStatus ? R.pick([0, 3, 4]) : null, payload: withStatus ? new Uint8Array(0) : R.bytes(100),
        endOfGroup: withStatus ? false : R.bool(),
      };
      if (dg.status && dg.status !== 0) dg.properties = null;
      assert.deepEqual(decodeDatagram(encodeDatagram(dg)), dg);
    }
  });
});

describe('random input', () => {
  const onlySessionErrors = (fn) => {
    try { fn(); } catch (e) { if (!(e instanceof SessionError)) throw e; }
  };

  test('control frames, uni streams and datagrams raise only SessionError', () => {
    for (let i = 0; i < 5000; i++) {
      const data = R.bytes(40);
      onlySessionErrors(() => new MessageDecoder().feed(data));
      onlySessionErrors(() => new UniStreamDecoder().feed(data, R.bool()));
      onlySessionErrors(() => decodeDatagram(data));
      // a plausible frame header with random payload reaches each message's decoder
      const ids = Object.values(MESSAGES).map((m) => m.id);
      const frame = concat([encodeVarint(R.pick(ids)), Uint8Array.of(0, data.length), data]);
      onlySessionErrors(() => new MessageDecoder().feed(frame));
      const stream = concat([Uint8Array.of(R.pick([0x10, 0x11, 0x15, 0x19, 0x3d, 0x05])), data]);
      onlySessionErrors(() => new UniStreamDecoder().feed(stream, R.bool()));
    }
  });
});
