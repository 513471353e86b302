// /fingerprint as the page reads it: the relay's JSON rotation document (current + next) and the
// plain hex hash of older relays (relay/http.py, relay/state.py).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFingerprints } from '../../viewer/web/moq/fingerprint.js';

const A = 'ab'.repeat(32);
const B = 'CD'.repeat(32);

test('plain text: one hash, as older relays serve it', () => {
  assert.deepEqual(parseFingerprints(`${A}\n`), [A]);
  assert.deepEqual(parseFingerprints(`${A},${B}`), [A, B.toLowerCase()]); // a fingerprint= parameter with two
});

test('JSON: current and next are both pinned, current first', () => {
  const doc = { current: A, next: B, hashes: [A, B], expires: '2026-12-11T12:00:00Z', switch_at: '2026-12-10T12:00:00Z' };
  assert.deepEqual(parseFingerprints(JSON.stringify(doc)), [A, B.toLowerCase()]);
  assert.deepEqual(parseFingerprints(JSON.stringify({ current: A, next: null })), [A]);
});

test('anything else is refused', () => {
  for (const bad of ['', 'nothex', '{"current": "12"}', '{bad json', `${A} zz`]) {
    assert.throws(() => parseFingerprints(bad), /SHA-256|JSON/, bad);
  }
});
