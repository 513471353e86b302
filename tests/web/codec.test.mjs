// The JS codec (viewer/web/moq) against the golden vectors shared with the Python codec
// (tests/vectors/*.json, schema in tests/vectors/README.md).  Run: node --test tests/web

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MESSAGES, decodeMessage, encodeMessage } from '../../viewer/web/moq/control.js';
import {
  FetchObjectCodec, encodeDatagram, encodeFetchHeader, encodeSubgroupHeader, encodeSubgroupObject,
  paddingDatagram, paddingStreamHeader,
} from '../../viewer/web/moq/data.js';
import { SessionError } from '../../viewer/web/moq/errors.js';
import { MessageDecoder, UniStreamDecoder, decodeDatagram } from '../../viewer/web/moq/framing.js';
import { decodeKvpBlock } from '../../viewer/web/moq/types.js';
import { decodeVarint, encodeVarint } from '../../viewer/web/moq/varint.js';
import {
  hex, jDatagram, jFetchItem, jInt, jKvps, jMessage, jSubgroupHeader, jSubgroupObject, load, raw,
} from './vectors.mjs';

const VARINT = load('varint.json');
const CONTROL = load('control.json');
const DATA = load('data.json');
const INVALID = load('invalid.json');

const concat = (parts) => Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p))));

function checkEncoding(vector, encoded, data) {
  if (vector.decode_only) assert.notEqual(hex(encoded), hex(data), 'decode_only vector must not be canonical');
  else assert.equal(hex(encoded), hex(data));
}

describe('varint vectors', () => {
  for (const v of VARINT) {
    test(v.name, () => {
      const data = raw(v);
      const value = jInt(v.value);
      assert.deepEqual(decodeVarint(data), [value, data.length]);
      checkEncoding(v, encodeVarint(value), data);
    });
  }
});

describe('control vectors', () => {
  for (const v of CONTROL) {
    test(v.name, () => {
      const data = raw(v);
      const expected = jMessage(v.message);
      assert.deepEqual(new MessageDecoder().feed(data), [expected]);
      const [type, pos] = decodeVarint(data);
      assert.equal(type, MESSAGES[expected.type].id);
      assert.deepEqual(decodeMessage(type, data.subarray(pos + 2)), expected);
      checkEncoding(v, encodeMessage(expected), data);
    });
  }

  test('cover every message type', () => {
    assert.deepEqual(new Set(CONTROL.map((v) => v.message.type)), new Set(Object.keys(MESSAGES)));
  });
});

function encodeSubgroupStream(header, objects) {
  const parts = [encodeSubgroupHeader(header)];
  let prev = null;
  for (const o of objects) {
    parts.push(encodeSubgroupObject(prev, o.objectId, o.payload.length,
      { status: o.status, properties: header.hasProperties ? o.properties : null }));
    parts.push(o.payload);
    prev = o.objectId;
  }
  return concat(parts);
}

function encodeFetchStream(header, items, descending) {
  const codec = new FetchObjectCodec(descending);
  const parts = [encodeFetchHeader(header)];
  for (const item of items) {
    parts.push(codec.encode(item));
    if (item.type === 'FetchObject') parts.push(item.payload);
  }
  return concat(parts);
}

describe('data vectors', () => {
  for (const v of DATA) {
    test(v.name, () => {
      const data = raw(v);
      let encoded;
      if (v.kind === 'datagram') {
        const expected = jDatagram(v.datagram);
        assert.deepEqual(decodeDatagram(data), expected);
        encoded = expected === null ? paddingDatagram(data.length - paddingDatagram(0).length) : encodeDatagram(expected);
      } else if (v.kind === 'subgroup_stream') {
        const header = jSubgroupHeader(v.header);
        const objects = v.objects.map(jSubgroupObject);
        v.objects.forEach((o, i) => {
          if ('property_list' in o) assert.deepEqual(decodeKvpBlock(objects[i].properties), jKvps(o.property_list));
        });
        assert.deepEqual(new UniStreamDecoder().feed(data, true), [header, ...objects]);
        encoded = encodeSubgroupStream(header, objects);
      } else if (v.kind === 'fetch_stream') {
        const header = { type: 'FetchHeader', requestId: jInt(v.header.request_id) };
        const items = v.items.map(jFetchItem);
        const dec = new UniStreamDecoder({ fetchDescending: () => v.descending });
        assert.deepEqual(dec.feed(data, true), [header, ...items]);
        encoded = encodeFetchStream(header, items, v.descending);
      } else if (v.kind === 'padding_stream') {
        assert.deepEqual(new UniStreamDecoder().feed(data, true), [{ type: 'PaddingStreamOpened' }]);
        encoded = concat([paddingStreamHeader(), new Uint8Array(data.length - paddingStreamHeader().length)]);
      } else if (v.kind === 'control_stream') {
        const messages = v.messages.map(jMessage);
        assert.deepEqual(new UniStreamDecoder().feed(data), [{ type: 'ControlStreamOpened' }, ...messages]);
        encoded = concat(messages.map(encodeMessage));
      } else {
        assert.fail(`unknown kind ${v.kind}`);
      }
      checkEncoding(v, encoded, data);
    });
  }
});

function feedInvalid(v) {
  const data = raw(v);
  if (v.kind === 'control') new MessageDecoder().feed(data);
  else if (v.kind === 'uni_stream') {
    new UniStreamDecoder({ fetchDescending: () => v.descending ?? false }).feed(data, v.fin ?? false);
  } else if (v.kind === 'datagram') decodeDatagram(data);
  else assert.fail(`unknown kind ${v.kind}`);
}

describe('invalid vectors', () => {
  for (const v of INVALID) {
    test(v.name, () => {
      assert.throws(() => feedInvalid(v), (e) => {
        assert.ok(e instanceof SessionError, `expected a SessionError, got ${e}`);
        assert.equal(e.code, v.error, e.message);
        return true;
      });
      if (v.kind === 'control') { // refused only when complete: every strict prefix waits
        const data = raw(v);
        for (let end = 0; end < data.length; end++) assert.deepEqual(new MessageDecoder().feed(data.subarray(0, end)), []);
      }
    });
  }
});

describe('incremental feeding', () => {
  test('every data stream vector decodes the same byte by byte', () => {
    for (const v of DATA.filter((x) => x.kind === 'subgroup_stream' || x.kind === 'fetch_stream' || x.kind === 'control_stream')) {
      const data = raw(v);
      const opts = { fetchDescending: () => v.descending ?? false };
      const whole = new UniStreamDecoder(opts).feed(data, v.kind !== 'control_stream');
      const dec = new UniStreamDecoder(opts);
      const pieces = [];
      for (let i = 0; i < data.length; i++) pieces.push(...dec.feed(data.subarray(i, i + 1), false));
      if (v.kind !== 'control_stream') pieces.push(...dec.feed(new Uint8Array(0), true));
      assert.deepEqual(pieces, whole, v.name);
    }
  });

  test('every control vector decodes the same byte by byte and all at once', () => {
    const all = concat(CONTROL.map(raw));
    const dec = new MessageDecoder();
    const got = [];
    for (let i = 0; i < all.length; i++) got.push(...dec.feed(all.subarray(i, i + 1)));
    assert.deepEqual(got, CONTROL.map((v) => jMessage(v.message)));
    assert.deepEqual(new MessageDecoder().feed(all), got);
  });
});
