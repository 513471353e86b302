// Audio: LOC objects (Opus packets) -> WebCodecs AudioDecoder -> Web Audio, each decoded
// block scheduled as an AudioBufferSourceNode at the context time that corresponds to its
// capture timestamp + the shared playout delay, which keeps it in sync with the video.

import { parseLoc, wallclockUs } from './loc.js';

const START_MARGIN_S = 0.01; // a block must start at least this far ahead of the audio clock
const SNAP_S = 0.015; // blocks this close to the previous one's end are joined seamlessly

export class AudioPipeline {
  constructor({ audioContext, clock, stats, track, onError = () => {} }) {
    this.ctx = audioContext;
    this.clock = clock;
    this.stats = stats;
    this.track = track;
    this.onError = onError;
    this.gain = this.ctx.createGain();
    this.gain.connect(this.ctx.destination);
    this.nextStart = 0;
    this.closed = false;
    this.configured = false;
    this.decoder = this._newDecoder();
  }

  _newDecoder() {
    return new AudioDecoder({
      output: (data) => this._output(data),
      error: (e) => {
        if (this.closed) return;
        this.onError(`audio decoder: ${e.message || e}`);
        this.decoder = this._newDecoder();
        this.configured = false;
      },
    });
  }

  static config(track, description = null) {
    const config = {
      codec: track.codec === 'opus' || !track.codec ? 'opus' : track.codec,
      sampleRate: track.samplerate ?? 48000,
      numberOfChannels: parseInt(track.channelConfig ?? '2', 10) || 2,
    };
    if (description) config.description = description;
    return config;
  }

  push(obj) {
    if (this.closed || !obj.payload.length) return;
    const loc = parseLoc(obj.properties);
    const ts = wallclockUs(loc) ?? loc.timestamp;
    if (ts === null) return;
    if (this.clock.now() - ts / 1000 > this.clock.delayMs + 200) { // too late to be heard: skip it
      this.stats.audioDropped += 1;
      return;
    }
    if (!this.configured) {
      try {
        this.decoder.configure(AudioPipeline.config(this.track, loc.audioConfig));
        this.configured = true;
      } catch (e) {
        this.onError(`audio decoder cannot be configured: ${e.message}`);
        this.closed = true;
        return;
      }
    }
    try {
      this.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: ts, data: obj.payload }));
    } catch (e) {
      this.onError(`audio decode: ${e.message}`);
    }
  }

  /** The audio context time at which wall-clock time `wallMs` is heard. */
  _contextTimeAt(wallMs) {
    const out = this.ctx.getOutputTimestamp?.();
    if (out && out.performanceTime > 0) {
      // out: the context time being heard now-ish, and when (performance clock)
      const wallOfOut = Date.now() - (performance.now() - out.performanceTime);
      return out.contextTime + (wallMs - wallOfOut) / 1000;
    }
    return this.ctx.currentTime + (wallMs - Date.now()) / 1000 - (this.ctx.outputLatency || this.ctx.baseLatency || 0);
  }

  _output(data) {
    if (this.closed) { data.close(); return; }
    this.stats.audioFramesDecoded += 1;
    if (this.ctx.state !== 'running') { data.close(); return; } // muted by the autoplay policy
    const channels = data.numberOfChannels;
    const buffer = this.ctx.createBuffer(channels, data.numberOfFrames, data.sampleRate);
    for (let c = 0; c < channels; c++) {
      data.copyTo(buffer.getChannelData(c), { planeIndex: c, format: 'f32-planar' });
    }
    const tsUs = data.timestamp;
    data.close();
    let start = this._contextTimeAt(this.clock.presentAt(tsUs));
    if (Math.abs(start - this.nextStart) < SNAP_S) start = this.nextStart;
    const earliest = this.ctx.currentTime + START_MARGIN_S;
    let offset = 0;
    if (start < earliest) { // missed its slot: more delay next time; play what is still in time
      this.clock.late((earliest - start) * 1000);
      offset = earliest - start;
      if (offset >= buffer.duration) { this.stats.audioDropped += 1; return; }
      start = earliest;
    }
    const node = this.ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(this.gain);
    node.start(start, offset);
    this.nextStart = start + buffer.duration - offset;
    this.stats.audioLatencyMs = Math.round(this.clock.delayMs); // capture -> heard
  }

  close() {
    this.closed = true;
    try { this.decoder.close(); } catch { /* already closed */ }
    this.gain.disconnect();
  }
}
