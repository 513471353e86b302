// The viewer's media logic in node with fake WebCodecs/DOM objects: LOC properties, catalog
// track choice, the playout clock and the video pipeline's low-latency policy (skip to the
// next group's key frame when the newest frame is > 1 s old).

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import { CatalogError, chooseTracks, parseCatalog, trackRole } from '../../viewer/web/media/catalog.js';
import { PlayoutClock } from '../../viewer/web/media/clock.js';
import { TIMESTAMP, VIDEO_CONFIG, parseLoc, wallclockUs } from '../../viewer/web/media/loc.js';
import { MAX_LATENCY_MS, VideoPipeline, avcCodecString } from '../../viewer/web/media/video.js';
import { encodeKvpBlock } from '../../viewer/web/moq/types.js';

const AVCC = Uint8Array.from([1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 2, 0x68, 0xce]);

describe('LOC properties', () => {
  test('timestamp and video config', () => {
    const block = encodeKvpBlock([[TIMESTAMP, 1_700_000_000_123_456], [VIDEO_CONFIG, AVCC], [0x40, 7]]);
    const loc = parseLoc(block);
    assert.equal(loc.timestamp, 1_700_000_000_123_456);
    assert.equal(wallclockUs(loc), 1_700_000_000_123_456);
    assert.deepEqual(loc.videoConfig, AVCC);
    assert.equal(parseLoc(new Uint8Array(0)).timestamp, null);
  });

  test('a timescale makes the timestamp media time, not wall clock', () => {
    const loc = parseLoc(encodeKvpBlock([[0x08, 90000], [TIMESTAMP, 180000]]));
    assert.equal(wallclockUs(loc), null);
  });

  test('avc1 codec string from avcC', () => {
    assert.equal(avcCodecString(AVCC), 'avc1.42C01E');
    assert.equal(avcCodecString(new Uint8Array([0])), null);
  });
});

describe('catalog', () => {
  const catalog = {
    version: 'draft-01',
    tracks: [
      { name: 'video-360', packaging: 'loc', isLive: true, role: 'video', codec: 'avc1.42C01E', width: 640, height: 360 },
      { name: 'video-1080', packaging: 'loc', isLive: true, role: 'video', codec: 'hev1.1.6.L93.B0', width: 1920, height: 1080 },
      { name: 'video-720', packaging: 'loc', isLive: true, codec: 'avc1.64001F', width: 1280, height: 720 },
      { name: 'audio', packaging: 'loc', isLive: true, role: 'audio', codec: 'opus', samplerate: 48000, channelConfig: '2' },
      { name: 'subs', packaging: 'loc', isLive: true, role: 'subtitle' },
    ],
  };

  test('parse', () => {
    const bytes = new TextEncoder().encode(JSON.stringify(catalog));
    assert.equal(parseCatalog(bytes).tracks.length, 5);
    assert.throws(() => parseCatalog(new TextEncoder().encode('{"version":1}')), CatalogError);
    assert.throws(() => parseCatalog(new TextEncoder().encode('not json')), CatalogError);
    assert.throws(() => parseCatalog(new TextEncoder().encode('{"deltaUpdate":[],"tracks":[]}')), CatalogError);
  });

  test('choose the largest supported video and the first supported audio', async () => {
    assert.equal(trackRole(catalog.tracks[2]), 'video'); // no role: guessed from the codec
    const supported = async (kind, t) => !t.codec.startsWith('hev1');
    const { video, audio } = await chooseTracks(catalog, supported);
    assert.equal(video.name, 'video-720');
    assert.equal(audio.name, 'audio');
    const none = await chooseTracks(catalog, async () => false);
    assert.deepEqual(none, { video: null, audio: null });
  });
});

describe('playout clock', () => {
  test('lateness grows the delay, smooth playback shrinks it', () => {
    const clock = new PlayoutClock({ minDelayMs: 40, maxDelayMs: 600 });
    let now = 1_000_000;
    clock.now = () => now;
    clock.late(30);
    assert.equal(clock.delayMs, 75);
    clock.late(10_000);
    assert.ok(clock.delayMs <= 600);
    clock.tick();
    assert.ok(clock.delayMs > 250, 'no shrinking right after lateness');
    now += 5000;
    for (let i = 0; i < 100; i++) clock.tick();
    assert.equal(clock.delayMs, 40);
  });
});

// --- the video pipeline with fake WebCodecs and DOM ---------------------------------------

class FakeDecoder {
  static last = null;
  constructor({ output }) { this.output = output; this.state = 'unconfigured'; this.decodeQueueSize = 0; this.chunks = []; this.resets = 0; FakeDecoder.last = this; }
  configure(config) { this.config = config; this.state = 'configured'; }
  decode(chunk) { if (this.state !== 'configured') throw new Error('not configured'); this.chunks.push(chunk); }
  reset() { this.state = 'unconfigured'; this.resets++; }
  close() { this.state = 'closed'; }
}

class FakeFrame {
  constructor(timestamp) { this.timestamp = timestamp; this.displayWidth = 320; this.displayHeight = 180; this.closed = false; }
  close() { this.closed = true; }
}

globalThis.VideoDecoder = FakeDecoder;
globalThis.EncodedVideoChunk = class { constructor(init) { Object.assign(this, init); } };
globalThis.requestAnimationFrame = () => 1;
globalThis.cancelAnimationFrame = () => {};
globalThis.document = { hidden: false };

describe('video pipeline', () => {
  let pipeline = null;
  afterEach(() => pipeline?.close());

  function setup() {
    let now = 1_700_000_000_000; // ms
    const clock = new PlayoutClock();
    clock.now = () => now;
    const drawn = [];
    const canvas = { width: 0, height: 0, getContext: () => ({ drawImage: (f) => drawn.push(f.timestamp) }) };
    const stats = { framesDecoded: 0, framesRendered: 0, framesDropped: 0, droppedGroups: 0, latencyMs: null, video: null };
    const skips = [];
    pipeline = new VideoPipeline({ canvas, clock, stats, track: { codec: 'avc1.42C01E', width: 320, height: 180 }, onSkip: (g) => skips.push(g) });
    const obj = (groupId, objectId, ageMs, { key = objectId === 0, fetched = false } = {}) => ({
      groupId, objectId, fetched, status: 0, payload: Uint8Array.of(0, 0, 0, 1, 0x65),
      properties: encodeKvpBlock(key ? [[VIDEO_CONFIG, AVCC], [TIMESTAMP, (now - ageMs) * 1000]] : [[TIMESTAMP, (now - ageMs) * 1000]]),
    });
    return { clock, stats, skips, drawn, canvas, obj, advance: (ms) => { now += ms; }, now: () => now };
  }

  test('decodes from a key frame with the catalog codec and the avcC description', () => {
    const { obj } = setup();
    pipeline.push(obj(5, 1, 10)); // no key frame yet: dropped
    assert.equal(FakeDecoder.last.chunks.length, 0);
    pipeline.push(obj(5, 0, 10));
    pipeline.push(obj(5, 1, 10));
    const dec = FakeDecoder.last;
    assert.deepEqual(dec.chunks.map((c) => c.type), ['key', 'delta']);
    assert.equal(dec.config.codec, 'avc1.42C01E');
    assert.deepEqual(dec.config.description, AVCC);
    assert.equal(dec.config.optimizeForLatency, true);
  });

  test('more than 1 s behind: drop the group, wait for the next key frame', () => {
    const { obj, stats, skips } = setup();
    pipeline.push(obj(7, 0, 20));
    pipeline.push(obj(7, 1, 20));
    pipeline.push(obj(7, 2, MAX_LATENCY_MS + 500)); // far behind
    assert.equal(stats.droppedGroups, 1);
    assert.deepEqual(skips, [8]); // streams of groups before 8 are cancelled
    assert.equal(FakeDecoder.last.resets, 1);
    pipeline.push(obj(7, 3, 20)); // the rest of group 7 is ignored
    pipeline.push(obj(8, 0, 20));
    pipeline.push(obj(8, 1, 20));
    pipeline.push(obj(7, 4, 20)); // a late stream of a group we left
    assert.deepEqual(FakeDecoder.last.chunks.map((c) => `${c.type}`), ['key', 'delta', 'key', 'delta']);
    assert.equal(stats.droppedGroups, 1);
  });

  test('objects from a joining FETCH are old on purpose and not skipped', () => {
    const { obj, stats } = setup();
    for (let o = 0; o < 5; o++) pipeline.push(obj(3, o, 1900 - o * 33, { fetched: true }));
    pipeline.push(obj(3, 5, 20));
    assert.equal(stats.droppedGroups, 0);
    assert.equal(FakeDecoder.last.chunks.length, 6);
  });

  test('a group reset by the relay counts as dropped', () => {
    const { obj, stats } = setup();
    pipeline.push(obj(2, 0, 20));
    pipeline.groupLost(2);
    pipeline.groupLost(2);
    assert.equal(stats.droppedGroups, 1);
    pipeline.push(obj(2, 1, 20)); // the group is gone: wait for the next key frame
    assert.equal(FakeDecoder.last.chunks.length, 1);
  });

  test('renders the newest frame whose presentation time has come; latency = now - capture', () => {
    const { clock, stats, drawn, canvas, advance, now } = setup();
    clock.late = () => {}; // a fixed 40 ms playout delay here (adaptation is tested above)
    const t0 = now() * 1000;
    const frames = [new FakeFrame(t0 - 80_000), new FakeFrame(t0 - 50_000), new FakeFrame(t0)];
    frames.forEach((f) => pipeline._output(f));
    assert.equal(stats.framesDecoded, 3);
    pipeline._render();
    assert.deepEqual(drawn, [t0 - 50_000], 'the newest frame older than the 40 ms delay');
    assert.ok(frames[0].closed && frames[1].closed && !frames[2].closed);
    assert.equal(stats.latencyMs, 50);
    assert.equal(canvas.width, 320);
    advance(clock.delayMs);
    pipeline._render();
    assert.deepEqual(drawn, [t0 - 50_000, t0]);
    assert.equal(stats.framesRendered, 2);
  });
});
