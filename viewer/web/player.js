// moq web viewer: connects to a MoQ relay over WebTransport (draft-18), reads the MSF
// catalog, plays the chosen video and audio tracks, keeps live figures in window.moqStats
// (mirrored as JSON in <pre id="stats">), shows errors on the page and reconnects with
// backoff.  URL: ?url=https://127.0.0.1:4443/&namespace=live/demo[&fingerprint=HEX][&overlay=1][&jwt=TOKEN]
// (jwt: an authorization token, passed on the WebTransport URL as ?jwt=; never shown on the page)

import { ConnectError, DRAFT, MOQT_PROTOCOL, MoqSession, RequestRejected, hexToBytes } from './moq/session.js';
import { parseFingerprints } from './moq/fingerprint.js';
import { utf8 } from './moq/buffer.js';
import { namespaceFromString } from './moq/types.js';
import { relayUrlWithToken } from './moq/url.js';
import { CATALOG_TRACK, chooseTracks, parseCatalog } from './media/catalog.js';
import { PlayoutClock } from './media/clock.js';
import { VideoPipeline } from './media/video.js';
import { AudioPipeline } from './media/audio.js';

const params = new URLSearchParams(location.search);
const config = {
  relayUrl: params.get('url') || `https://${location.hostname || '127.0.0.1'}:4443/`,
  namespace: params.get('namespace') || 'live/demo',
  fingerprint: params.get('fingerprint'),
  fingerprintUrl: params.get('fingerprintUrl') || new URL('/fingerprint', location.href).href,
  jwt: params.get('jwt'), // authorization token for a relay started with --auth-key
};
const PRIORITY = { catalog: 16, audio: 64, video: 128 }; // lower = more important (§ Priorities)
const CATALOG_TIMEOUT_MS = 10000;
const FETCH_TIMEOUT_MS = 1500;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10000;
const STALL_MS = 5000; // no bytes from the relay for this long while playing: reconnect

const $ = (id) => document.getElementById(id);
const canvas = $('video');

/** The page's live figures (also read by tests). */
const stats = {
  state: 'starting', error: null, protocol: null, draft: DRAFT, relay: config.relayUrl, namespace: config.namespace,
  implementation: null, framesDecoded: 0, framesRendered: 0, framesDropped: 0, fps: 0, latencyMs: null,
  bitrateKbps: 0, droppedGroups: 0, playoutDelayMs: 0, audioFramesDecoded: 0, audioDropped: 0, audioLatencyMs: null,
  audioState: null, video: null, audio: null, catalog: null, reconnects: 0, decodeErrors: 0, lastSkip: null,
  lastFrameAt: null,
};
window.moqStats = stats;

const clock = new PlayoutClock();
let audioContext = null;
let current = null; // {session, video, audio}

// --- errors -----------------------------------------------------------------------------------

function shortHash(hex) { return hex ? `${hex.slice(0, 8)}…${hex.slice(-8)}` : 'none'; }

/** A sentence a viewer can act on, for anything that ended a session. */
function describe(e) {
  if (e instanceof RequestRejected && e.notFound) {
    return `namespace "${config.namespace}" not found on the relay: no publisher has announced it (yet)`;
  }
  if (e instanceof RequestRejected && [0x1, 0x4, 0x5].includes(e.code)) { // UNAUTHORIZED, MALFORMED/EXPIRED_AUTH_TOKEN
    return `not authorized to watch "${config.namespace}" (${e.reason || 'no reason'}): `
      + (config.jwt ? 'the jwt= token does not cover it or has expired' : 'the relay needs a token: add jwt=TOKEN to the page URL');
  }
  return e?.message || String(e);
}

/** Why the WebTransport handshake failed: compare the pinned hashes with what the relay serves now. */
async function transportFailure(e, pinned) {
  let served = null;
  try {
    served = (await withTimeout(fetchFingerprint(), 2000, 'fingerprint'))[0];
  } catch { /* the HTTP side is unreachable too */ }
  if (served && !pinned.includes(served)) {
    return `certificate mismatch: the relay's certificate has sha-256 ${shortHash(served)} but the page pinned `
      + `${shortHash(pinned[0])}${config.fingerprint ? ' (check the fingerprint= parameter)' : ' (did the relay restart?)'}`;
  }
  const cert = served ? '' : `, or its certificate does not match sha-256 ${shortHash(pinned[0])}`;
  return `cannot connect to the relay at ${config.relayUrl}: the WebTransport handshake failed (the relay is down, `
    + `not listening on that UDP port, or UDP is blocked${cert}; the browser says: ${e.detail ?? e.message})`;
}

function setError(message) {
  stats.error = message;
  const box = $('error');
  box.textContent = message ?? '';
  box.hidden = !message;
}

// --- one session ----------------------------------------------------------------------------

/** The certificate hashes to pin: the fingerprint= parameter (comma-separated), else the relay's. */
async function fingerprints() {
  return config.fingerprint ? parseFingerprints(config.fingerprint) : fetchFingerprint();
}

/** The relay's certificate hashes from its HTTP endpoint (/fingerprint): current, then the announced
 *  next one while a rotation is under way (moq/fingerprint.js). */
async function fetchFingerprint() {
  let resp;
  try {
    resp = await fetch(config.fingerprintUrl, { cache: 'no-store', headers: { Accept: 'application/json, text/plain' } });
  } catch (e) {
    throw new Error(`the relay is down: cannot reach ${config.fingerprintUrl} (${e.message})`);
  }
  if (!resp.ok) throw new Error(`cannot get the relay's certificate fingerprint from ${config.fingerprintUrl}: HTTP ${resp.status}`);
  try {
    return parseFingerprints(await resp.text());
  } catch (e) {
    throw new Error(`${config.fingerprintUrl} did not return a SHA-256 hex digest (${e.message})`);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

async function supported(kind, t) {
  try {
    if (kind === 'video') {
      const cfg = { codec: t.codec, optimizeForLatency: true };
      if (t.width && t.height) { cfg.codedWidth = t.width; cfg.codedHeight = t.height; }
      return (await VideoDecoder.isConfigSupported(cfg)).supported;
    }
    return (await AudioDecoder.isConfigSupported(AudioPipeline.config(t))).supported;
  } catch {
    return false;
  }
}

function ensureAudioContext() {
  if (!audioContext) {
    audioContext = new AudioContext({ latencyHint: 'interactive', sampleRate: 48000 });
    audioContext.onstatechange = updateAudioButton;
    audioContext.resume().catch(() => {});
  }
  updateAudioButton();
  return audioContext;
}

function updateAudioButton() {
  const button = $('audio-toggle');
  const running = audioContext?.state === 'running';
  button.hidden = !current?.audio;
  button.textContent = running ? (current?.muted ? 'Unmute' : 'Mute') : 'Enable audio';
  if (current?.audio) current.audio.gain.gain.value = running && !current.muted ? 1 : 0;
}

/** Connect, read the catalog, play; resolves with the reason the session ended. */
async function playOnce() {
  stats.state = 'connecting';
  current = { session: null, video: null, audio: null, fingerprint: null, muted: false, subs: [] };
  current.fingerprint = await fingerprints();
  let session;
  try {
    session = await MoqSession.connect(relayUrlWithToken(config.relayUrl, config.jwt), { certificateHashes: current.fingerprint.map(hexToBytes) });
  } catch (e) {
    if (e instanceof ConnectError && e.kind === 'transport') throw new Error(await transportFailure(e, current.fingerprint));
    throw e;
  }
  current.session = session;
  stats.protocol = session.protocol;
  stats.implementation = session.implementation;
  const ns = namespaceFromString(config.namespace);
  let endWith;
  const ended = new Promise((resolve) => { endWith = resolve; });
  session.onGoaway = (g) => endWith(`the relay is going away (GOAWAY${g.uri ? ` to ${g.uri}` : ''})`);

  // the catalog: a subscription for updates + a joining FETCH for the current one
  let gotCatalog;
  const firstCatalog = new Promise((resolve) => { gotCatalog = resolve; });
  const onCatalog = (o) => {
    if (o.objectId !== 0 || !o.payload.length) return;
    try {
      const cat = parseCatalog(o.payload);
      stats.catalog = cat.tracks.map((t) => t.name);
      gotCatalog(cat);
    } catch (e) {
      setError(`bad catalog: ${e.message}`);
    }
  };
  const catSub = await session.subscribe(ns, utf8(CATALOG_TRACK), {
    onObject: onCatalog,
    onDone: (d) => endWith(`the catalog track ended (${d.reason})`),
  }, { priority: PRIORITY.catalog });
  current.subs.push(catSub);
  if (catSub.largest) session.joiningFetch(catSub, 0).then((objs) => objs.forEach(onCatalog), () => {});
  const catalog = await Promise.race([
    withTimeout(firstCatalog, CATALOG_TIMEOUT_MS, `catalog of "${config.namespace}"`),
    session.closed.then((c) => { throw new Error(`the relay closed the session: ${c.reason}`); }),
  ]);

  const { video, audio } = await chooseTracks(catalog, supported);
  if (!video && !audio) throw new Error('the catalog lists no track this browser can decode');
  if (video) await startVideo(session, ns, video, endWith);
  if (audio) await startAudio(session, ns, audio, endWith);
  stats.state = 'playing';
  let seen = { bytes: session.bytesReceived, at: Date.now() };
  const watchdog = setInterval(() => { // a relay that vanished without closing (no CONNECTION_CLOSE)
    if (session.bytesReceived !== seen.bytes) seen = { bytes: session.bytesReceived, at: Date.now() };
    else if (Date.now() - seen.at > STALL_MS) endWith(`no data from the relay for ${STALL_MS / 1000} s`);
  }, 500);
  try {
    return await Promise.race([ended, session.closed.then((c) => `the relay closed the session: ${c.reason} (code ${c.code})`)]);
  } finally {
    clearInterval(watchdog);
  }
}

async function startVideo(session, ns, track, endWith) {
  stats.video = { track: track.name, codec: track.codec, width: track.width, height: track.height };
  let sub = null;
  const pipeline = current.video = new VideoPipeline({
    canvas, clock, stats, track,
    onSkip: (groupId) => sub?.cancelGroupsBefore(groupId),
    onError: (msg) => console.warn(msg),
  });
  // fast start: hold live objects while a joining FETCH brings the current group from its key frame
  let held = [];
  sub = await session.subscribe(ns, utf8(track.name), {
    onObject: (o) => (held ? held.push(o) : pipeline.push(o)),
    onStreamReset: (g) => pipeline.groupLost(g),
    onDone: (d) => endWith(`the video track ended (${d.reason})`),
  }, { priority: PRIORITY.video });
  current.subs.push(sub);
  if (sub.largest) {
    try {
      const objs = await withTimeout(session.joiningFetch(sub, 0), FETCH_TIMEOUT_MS, 'video joining fetch');
      for (const o of objs) pipeline.push(o);
    } catch (e) {
      console.info(`no fast start (${e.message}); waiting for the next group`);
    }
  }
  const live = held;
  held = null;
  for (const o of live) pipeline.push(o);
}

async function startAudio(session, ns, track, endWith) {
  stats.audio = { track: track.name, codec: track.codec, samplerate: track.samplerate ?? 48000 };
  const ctx = ensureAudioContext();
  const pipeline = current.audio = new AudioPipeline({ audioContext: ctx, clock, stats, track, onError: (m) => console.warn(m) });
  updateAudioButton();
  const sub = await session.subscribe(ns, utf8(track.name), {
    onObject: (o) => pipeline.push(o),
    onDone: (d) => endWith(`the audio track ended (${d.reason})`),
  }, { priority: PRIORITY.audio });
  current.subs.push(sub);
}

function teardown() {
  stats.latencyMs = null; // no stale figures while reconnecting
  stats.audioLatencyMs = null;
  clock.reset();
  if (!current) return;
  current.video?.close();
  current.audio?.close();
  for (const s of current.subs) s.close();
  current.session?.close(0, 'viewer reconnecting');
  current = null;
  updateAudioButton();
}

// --- reconnect loop -------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  let backoff = BACKOFF_MIN_MS;
  for (;;) {
    const before = stats.framesDecoded + stats.audioFramesDecoded;
    let reason;
    try {
      reason = await playOnce();
    } catch (e) {
      reason = describe(e);
    }
    teardown();
    if (stats.framesDecoded + stats.audioFramesDecoded > before) backoff = BACKOFF_MIN_MS; // it played: retry fast
    stats.state = 'reconnecting';
    stats.reconnects += 1;
    for (let left = backoff; left > 0; left -= 500) {
      setError(`${reason} — reconnecting in ${Math.ceil(left / 1000)} s`);
      await sleep(Math.min(500, left));
    }
    setError(`${reason} — reconnecting…`);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }
}

// --- figures and overlay --------------------------------------------------------------------

let lastSample = { at: performance.now(), bytes: 0, frames: 0 };

function sample() {
  const now = performance.now();
  const bytes = current?.session?.bytesReceived ?? 0;
  const dt = (now - lastSample.at) / 1000;
  if (dt >= 1) {
    const dBytes = bytes >= lastSample.bytes ? bytes - lastSample.bytes : bytes;
    stats.bitrateKbps = Math.round((dBytes * 8) / 1000 / dt);
    stats.fps = Math.round(((stats.framesRendered - lastSample.frames) / dt) * 10) / 10;
    lastSample = { at: now, bytes, frames: stats.framesRendered };
  }
  clock.tick();
  stats.playoutDelayMs = Math.round(clock.delayMs);
  stats.audioState = audioContext?.state ?? null;
  if (stats.state === 'playing' && stats.error && stats.lastFrameAt > Date.now() - 1000) setError(null);
  renderOverlay();
}

function renderOverlay() {
  const on = !$('overlay').hidden;
  $('stats').hidden = !on;
  if (!on) return;
  const v = stats.video;
  const rows = [
    ['latency', stats.latencyMs === null ? '–' : `${stats.latencyMs} ms (glass to glass)`],
    ['bitrate', `${stats.bitrateKbps} kbit/s`],
    ['fps', `${stats.fps}`],
    ['dropped groups', `${stats.droppedGroups}`],
    ['video', v ? `${v.track} ${v.codec ?? ''} ${v.width ?? '?'}×${v.height ?? '?'}` : '–'],
    ['audio', stats.audio ? `${stats.audio.track} ${stats.audio.codec} (${stats.audioState})` : '–'],
    ['playout delay', `${stats.playoutDelayMs} ms`],
    ['relay', config.relayUrl],
    ['namespace', config.namespace],
    ['draft', `draft-ietf-moq-transport-${DRAFT} (${stats.protocol ?? MOQT_PROTOCOL + ' offered'})`],
    ['state', stats.state],
  ];
  const table = $('overlay-rows');
  table.replaceChildren(...rows.map(([k, val]) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    const td = document.createElement('td');
    th.textContent = k;
    td.textContent = val;
    tr.append(th, td);
    return tr;
  }));
  $('stats').textContent = JSON.stringify(stats, null, 2);
}

function toggleOverlay() {
  $('overlay').hidden = !$('overlay').hidden;
  $('overlay-toggle').setAttribute('aria-pressed', String(!$('overlay').hidden));
  renderOverlay();
}

$('overlay-toggle').addEventListener('click', toggleOverlay);
document.addEventListener('keydown', (e) => {
  if ((e.key === 'o' || e.key === 'O') && !e.ctrlKey && !e.metaKey && !e.altKey) toggleOverlay();
});
$('audio-toggle').addEventListener('click', async () => {
  const ctx = ensureAudioContext();
  if (ctx.state !== 'running') {
    await ctx.resume(); // a user gesture lifts the autoplay policy
    if (current) current.muted = false;
  } else if (current) {
    current.muted = !current.muted;
  }
  updateAudioButton();
});
if (params.get('overlay') === '1') toggleOverlay();
setInterval(sample, 250);
main();
