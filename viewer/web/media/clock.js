// The playout clock shared by audio and video: a sample captured at wall-clock time T
// (its LOC TIMESTAMP) is presented at T + delay.  Both media use the same delay, which
// keeps them in sync; the delay adapts to lateness (jitter) and decays back towards
// `minDelayMs` when playback has been smooth, favouring low latency.

export class PlayoutClock {
  constructor({ minDelayMs = 40, maxDelayMs = 600 } = {}) {
    this.minDelayMs = minDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.delayMs = minDelayMs;
    this.lastLateMs = 0;
  }

  /** Wall-clock milliseconds (the publisher's clock is the system clock too). */
  now() { return Date.now(); }

  /** Wall-clock ms at which a sample captured at `tsUs` (µs) should be presented. */
  presentAt(tsUs) { return tsUs / 1000 + this.delayMs; }

  /** A sample missed its slot by `lateMs`: grow the delay to cover that much jitter. */
  late(lateMs) {
    this.lastLateMs = this.now();
    this.delayMs = Math.min(this.maxDelayMs, Math.max(this.delayMs, this.delayMs + Math.min(lateMs, 200) + 5));
  }

  /** Call a few times a second: after 1 s without lateness, shrink the delay by 10 %. */
  tick() {
    if (this.now() - this.lastLateMs > 1000 && this.delayMs > this.minDelayMs) {
      this.delayMs = Math.max(this.minDelayMs, this.delayMs * 0.9);
    }
  }

  reset() { this.delayMs = this.minDelayMs; this.lastLateMs = 0; }
}
