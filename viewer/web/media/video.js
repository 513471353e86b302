// Video: LOC objects -> WebCodecs VideoDecoder -> canvas, paced by the playout clock.
//
// One group per GOP, one object per frame (draft-ietf-moq-msf § LOC packaging): object 0
// of a group is a key frame and carries VIDEO_CONFIG (the avcC "description").  Low
// latency first: when the newest live frame is more than MAX_LATENCY_MS old, queued
// frames are dropped and decoding resumes at the next group's key frame.

import { parseLoc, wallclockUs } from './loc.js';

export const MAX_LATENCY_MS = 1000;
const MAX_DECODE_QUEUE = 30;
const MAX_FRAMES = 30;

const hex = (b) => Array.from(b ?? [], (x) => x.toString(16).padStart(2, '0')).join('');

/** avc1.PPCCLL from an avcC record (ISO/IEC 14496-15 AVCDecoderConfigurationRecord). */
export function avcCodecString(avcC) {
  if (!avcC || avcC.length < 4 || avcC[0] !== 1) return null;
  return `avc1.${hex(avcC.subarray(1, 4)).toUpperCase()}`;
}

export class VideoPipeline {
  /**
   * `track`: the catalog entry (codec, width, height); `stats`: the shared stats object;
   * `onSkip(groupId)`: called when we give up on groups before `groupId` (cancel streams).
   */
  constructor({ canvas, clock, stats, track, onSkip = () => {}, onError = () => {} }) {
    this.canvas = canvas;
    this.ctx2d = canvas.getContext('2d');
    this.clock = clock;
    this.stats = stats;
    this.track = track;
    this.onSkip = onSkip;
    this.onError = onError;
    this.frames = []; // decoded, waiting for their presentation time
    this.configKey = null;
    this.description = null;
    this.waitKey = true; // decode only from a key frame
    this.group = -1; // the group being decoded
    this.catchUpUntil = 0; // frames up to this timestamp came from a joining FETCH (fast start)
    this.skippedGroups = new Set();
    this.closed = false;
    this.decoder = this._newDecoder();
    this._loop = this._loop.bind(this);
    this._raf = requestAnimationFrame(this._loop);
    this._timer = setInterval(() => { if (document.hidden) this._render(); }, 50); // rAF pauses in hidden tabs
  }

  _newDecoder() {
    return new VideoDecoder({
      output: (frame) => this._output(frame),
      error: (e) => { if (!this.closed) this._decoderError(e); },
    });
  }

  _decoderError(e) {
    this.stats.decodeErrors = (this.stats.decodeErrors ?? 0) + 1;
    this.onError(`video decoder: ${e.message || e}`);
    this.decoder = this._newDecoder(); // a closed decoder cannot be reused
    this.configKey = null;
    this.waitKey = true;
  }

  /** Feed one object ({groupId, objectId, payload, properties, status, fetched}). */
  push(obj) {
    if (this.closed || !obj.payload.length) return; // status objects (End of Group, ...) carry no frame
    const loc = parseLoc(obj.properties);
    const ts = wallclockUs(loc) ?? loc.timestamp;
    if (ts === null) return;
    const isKey = obj.objectId === 0 || loc.videoConfig !== null;
    if (obj.groupId < this.group) return; // a group we already left (late stream)
    if (obj.fetched) this.catchUpUntil = Math.max(this.catchUpUntil, ts); // old on purpose: no jitter signal
    const now = this.clock.now();
    if (!obj.fetched && !this.waitKey && now - ts / 1000 > MAX_LATENCY_MS && !isKey) {
      this.skip(obj.groupId, 'latency');
      return;
    }
    if (this.decoder.decodeQueueSize > MAX_DECODE_QUEUE && !isKey) {
      this.skip(obj.groupId, 'decoder behind');
      return;
    }
    if (isKey) {
      if (loc.videoConfig) this.description = loc.videoConfig;
      if (obj.groupId > this.group && !this.waitKey && this.group >= 0) this.onSkip(obj.groupId);
      this.group = obj.groupId;
      this.waitKey = false;
      if (!this._configure()) return;
    } else if (this.waitKey || obj.groupId !== this.group) {
      return; // waiting for a key frame
    }
    try {
      this.decoder.decode(new EncodedVideoChunk({ type: isKey ? 'key' : 'delta', timestamp: ts, data: obj.payload }));
    } catch (e) {
      this._decoderError(e);
    }
  }

  _configure() {
    const codec = this.track.codec || avcCodecString(this.description);
    const key = `${codec}/${hex(this.description)}`;
    if (key === this.configKey && this.decoder.state === 'configured') return true;
    const config = { codec, optimizeForLatency: true };
    if (this.description) config.description = this.description;
    if (this.track.width && this.track.height) { config.codedWidth = this.track.width; config.codedHeight = this.track.height; }
    try {
      this.decoder.configure(config);
    } catch (e) {
      this.onError(`video decoder cannot be configured for ${codec}: ${e.message}`);
      this.waitKey = true;
      return false;
    }
    this.configKey = key;
    this.stats.video = { ...this.stats.video, codec, configured: true };
    return true;
  }

  /** Give up on the current group: drop queued frames, wait for the next key frame. */
  skip(groupId, reason) {
    this.waitKey = true;
    this._countDropped(groupId, reason);
    this.group = groupId;
    for (const f of this.frames) f.close();
    this.stats.framesDropped += this.frames.length;
    this.frames = [];
    if (this.decoder.state === 'configured') { this.decoder.reset(); this.configKey = null; }
    this.onSkip(groupId + 1);
  }

  /** A subgroup stream was reset by the relay: that group is lost. */
  groupLost(groupId) {
    if (groupId >= this.group && this._countDropped(groupId, 'reset by relay') && groupId === this.group) this.waitKey = true;
  }

  /** Count a group as dropped once; true if it was not counted before. */
  _countDropped(groupId, reason) {
    if (this.skippedGroups.has(groupId)) return false;
    this.skippedGroups.add(groupId);
    if (this.skippedGroups.size > 64) this.skippedGroups.delete(this.skippedGroups.values().next().value);
    this.stats.droppedGroups += 1;
    this.stats.lastSkip = reason;
    return true;
  }

  _output(frame) {
    if (this.closed) { frame.close(); return; }
    this.stats.framesDecoded += 1;
    const late = this.clock.now() - this.clock.presentAt(frame.timestamp);
    if (late > 5 && late < MAX_LATENCY_MS && frame.timestamp > this.catchUpUntil) this.clock.late(late);
    this.frames.push(frame);
    while (this.frames.length > MAX_FRAMES) { this.frames.shift().close(); this.stats.framesDropped += 1; }
  }

  _loop() {
    if (this.closed) return;
    this._render();
    this._raf = requestAnimationFrame(this._loop);
  }

  /** Show the newest frame whose presentation time has come; close the older ones. */
  _render() {
    const now = this.clock.now();
    let pick = -1;
    for (let i = 0; i < this.frames.length; i++) if (this.clock.presentAt(this.frames[i].timestamp) <= now) pick = i;
    if (pick < 0) return;
    const frame = this.frames[pick];
    for (let i = 0; i < pick; i++) { this.frames[i].close(); this.stats.framesDropped += 1; }
    this.frames = this.frames.slice(pick + 1);
    if (this.canvas.width !== frame.displayWidth || this.canvas.height !== frame.displayHeight) {
      this.canvas.width = frame.displayWidth;
      this.canvas.height = frame.displayHeight;
      this.stats.video = { ...this.stats.video, width: frame.displayWidth, height: frame.displayHeight };
    }
    this.ctx2d.drawImage(frame, 0, 0);
    this.stats.framesRendered += 1;
    this.stats.latencyMs = Math.round(now - frame.timestamp / 1000);
    this.stats.lastFrameAt = now;
    frame.close();
  }

  close() {
    this.closed = true;
    cancelAnimationFrame(this._raf);
    clearInterval(this._timer);
    for (const f of this.frames) f.close();
    this.frames = [];
    try { this.decoder.close(); } catch { /* already closed */ }
  }
}
