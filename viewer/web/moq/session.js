// A small MoQT draft-18 client session over WebTransport (browser only).
//
// § Session initialization: each peer opens a unidirectional control stream that starts
// with SETUP; every request (SUBSCRIBE, FETCH, ...) gets its own bidirectional stream
// whose first message is the request and whose replies (SUBSCRIBE_OK / FETCH_OK /
// REQUEST_ERROR, later PUBLISH_DONE) come back on the same stream.  Objects arrive on
// unidirectional subgroup streams (§ Subgroup Header), fetch streams (§ Fetch Header) or
// datagrams (§ Object Datagram).  Over WebTransport the version is negotiated with the
// WT-Available-Protocols / WT-Protocol headers (§ WebTransport), so SETUP carries no
// PATH or AUTHORITY option.

import { RequestErrorCode, SessionError, SessionErrorCode } from './errors.js';
import { fromUtf8, utf8 } from './buffer.js';
import { FetchType, SetupOption, encodeMessage } from './control.js';
import { MessageDecoder, UniStreamDecoder, decodeDatagram } from './framing.js';
import { FilterType, GroupOrder, namespaceToString } from './types.js';
import { ObjectStatus } from './data.js';

export const MOQT_PROTOCOL = 'moqt-18';
export const DRAFT = 18;
export const IMPLEMENTATION = 'moq-web/0.1';
const DEFAULT_PUBLISHER_PRIORITY = 0x0e; // track property (§ DEFAULT PUBLISHER PRIORITY)
const ALIAS_WAIT_MS = 2000; // how long a data stream may wait for its SUBSCRIBE_OK
const REQUEST_TIMEOUT_MS = 10000; // how long a request may wait for its first reply
const EMPTY = new Uint8Array(0);

/** Why connecting failed: kind is 'transport' | 'version' | 'setup'. */
export class ConnectError extends Error {
  constructor(kind, message, detail = null) {
    super(message);
    this.name = 'ConnectError';
    this.kind = kind;
    this.detail = detail; // the browser's own words, if any
  }
}

/** A request answered with REQUEST_ERROR (§ REQUEST_ERROR). */
export class RequestRejected extends Error {
  constructor(request, msg) {
    super(`${request} refused: ${msg.reason || 'no reason'} (code 0x${msg.errorCode.toString(16)})`);
    this.name = 'RequestRejected';
    this.code = msg.errorCode;
    this.reason = msg.reason;
    this.notFound = msg.errorCode === RequestErrorCode.DOES_NOT_EXIST;
  }
}

/** hex string -> Uint8Array */
export function hexToBytes(hex) {
  const clean = hex.trim().replace(/[^0-9a-fA-F]/g, '');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(2 * i, 2), 16);
  return out;
}

/** A bidirectional request stream: write the request, read its replies. */
class RequestStream {
  constructor(bidi) {
    this.writer = bidi.writable.getWriter();
    this.reader = bidi.readable.getReader();
    this.decoder = new MessageDecoder();
  }

  send(msg) { return this.writer.write(encodeMessage(msg)); }

  /** Messages until the peer ends the stream; throws SessionError on malformed input. */
  async* messages() {
    for (;;) {
      const { value, done } = await this.reader.read();
      if (done) { this.decoder.checkFin(); return; }
      yield* this.decoder.feed(value);
    }
  }

  /** Cancel the request: RESET_STREAM our side, STOP_SENDING theirs (§ Request Cancellation). */
  cancel() {
    this.writer.abort().catch(() => {});
    this.reader.cancel().catch(() => {});
  }
}

/**
 * One subscription.  Callbacks (all optional): onObject(obj), onStreamReset(groupId),
 * onDone({statusCode, reason}).  obj = {groupId, subgroupId, objectId, status, payload,
 * properties (raw block), priority, fetched (true when it came from a FETCH)}.
 */
export class Subscription {
  constructor(session, requestId, namespace, name, callbacks) {
    this.session = session;
    this.requestId = requestId;
    this.namespace = namespace;
    this.name = name;
    this.trackAlias = null;
    this.largest = null; // § SUBSCRIBE_OK LARGEST_OBJECT parameter: where live delivery begins
    this.defaultPriority = 128;
    this.onObject = callbacks.onObject ?? (() => {});
    this.onStreamReset = callbacks.onStreamReset ?? (() => {});
    this.onDone = callbacks.onDone ?? (() => {});
    this.streams = new Map(); // stream reader -> groupId
    this.request = null;
    this.closed = false;
  }

  get label() { return `${namespaceToString(this.namespace)}:${fromUtf8(this.name)}`; }

  /** Stop reading (STOP_SENDING) every open subgroup stream of groups before `groupId`. */
  cancelGroupsBefore(groupId) {
    for (const [reader, g] of this.streams) {
      if (g < groupId) { this.streams.delete(reader); reader.cancel().catch(() => {}); }
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.request?.cancel();
    this.session._forget(this);
  }
}

export class MoqSession {
  /**
   * Open WebTransport to `url` offering moqt-18, exchange SETUP.  `certificateHash` (bytes), or
   * `certificateHashes` (a list: the relay's current and announced next certificate), pins
   * self-signed certificates (serverCertificateHashes).  Throws ConnectError.
   */
  static async connect(url, { certificateHash = null, certificateHashes = null, timeoutMs = 10000 } = {}) {
    if (typeof WebTransport === 'undefined') {
      throw new ConnectError('transport', 'this browser has no WebTransport (or the page is not a secure context)');
    }
    const options = { protocols: [MOQT_PROTOCOL] };
    const hashes = certificateHashes || (certificateHash ? [certificateHash] : []);
    if (hashes.length) options.serverCertificateHashes = hashes.map((value) => ({ algorithm: 'sha-256', value }));
    let wt;
    try {
      wt = new WebTransport(url, options);
    } catch (e) {
      throw new ConnectError('transport', `bad relay URL ${url}: ${e.message}`);
    }
    wt.closed.catch(() => {}); // observed through session.closed
    const timer = new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), timeoutMs));
    try {
      await Promise.race([wt.ready, timer]);
    } catch (e) {
      try { wt.close(); } catch { /* already failed */ }
      throw new ConnectError('transport', `WebTransport handshake with ${url} failed (${e.message || e})`, e.message || String(e));
    }
    if (wt.protocol !== MOQT_PROTOCOL) {
      wt.close({ closeCode: SessionErrorCode.VERSION_NEGOTIATION_FAILED, reason: 'no moqt-18' });
      throw new ConnectError('version', `the relay did not select ${MOQT_PROTOCOL} (WT-Protocol: '${wt.protocol}')`);
    }
    const session = new MoqSession(wt);
    try {
      await Promise.race([session._start(), timer]);
    } catch (e) {
      session.close(SessionErrorCode.PROTOCOL_VIOLATION, 'setup failed');
      throw new ConnectError('setup', `MoQT SETUP with ${url} failed: ${e.message || e}`);
    }
    return session;
  }

  constructor(wt) {
    this.wt = wt;
    this.protocol = wt.protocol;
    this.peerSetup = null;
    this.nextRequestId = 0; // § Request ID: a client's are even
    this.subscriptions = new Map(); // requestId -> Subscription
    this.byAlias = new Map(); // trackAlias -> Subscription
    this.aliasWaiters = new Map(); // trackAlias -> [resolve]
    this.fetches = new Map(); // requestId -> {sub, onObject, done, descending}
    this.bytesReceived = 0;
    this.goaway = null;
    this.onGoaway = () => {}; // § GOAWAY: the relay wants us to reconnect (to goaway.uri if not empty)
    this.closeInfo = null;
    let resolveClosed;
    this.closed = new Promise((resolve) => { resolveClosed = resolve; });
    this._resolveClosed = resolveClosed;
    wt.closed.then(
      (info) => this._terminated(info?.closeCode ?? 0, info?.reason || 'session closed by the relay'),
      (e) => this._terminated(SessionErrorCode.INTERNAL_ERROR, `connection lost: ${e.message || e}`),
    );
  }

  async _start() {
    let setupReceived;
    this._setupPromise = new Promise((resolve) => { setupReceived = resolve; });
    this._setupReceived = setupReceived;
    this._acceptUniStreams();
    this._readDatagrams();
    const control = await this.wt.createUnidirectionalStream();
    this.controlWriter = control.getWriter();
    const options = [[SetupOption.MOQT_IMPLEMENTATION, utf8(IMPLEMENTATION)]];
    await this.controlWriter.write(encodeMessage({ type: 'Setup', options }));
    await this._setupPromise;
  }

  get implementation() {
    const v = this.peerSetup?.options.find(([k]) => k === SetupOption.MOQT_IMPLEMENTATION);
    return v ? fromUtf8(v[1]) : '';
  }

  // --- session lifetime -------------------------------------------------------------------

  close(code = SessionErrorCode.NO_ERROR, reason = '') {
    try { this.wt.close({ closeCode: code, reason }); } catch { /* already closed */ }
    this._terminated(code, reason || 'closed');
  }

  _fail(e) {
    if (e instanceof SessionError) this.close(e.code, e.message);
    else this.close(SessionErrorCode.INTERNAL_ERROR, String(e?.message || e));
  }

  _terminated(code, reason) {
    if (this.closeInfo) return;
    this.closeInfo = { code, reason };
    for (const sub of this.subscriptions.values()) sub.closed = true;
    this._resolveClosed(this.closeInfo);
  }

  _allocRequestId() {
    const id = this.nextRequestId;
    this.nextRequestId += 2;
    return id;
  }

  // --- requests -----------------------------------------------------------------------------

  /**
   * SUBSCRIBE (§ SUBSCRIBE) on its own bidi stream; resolves at SUBSCRIBE_OK with the
   * Subscription, rejects with RequestRejected at REQUEST_ERROR.  Default filter: Largest
   * Object (live edge); `filter` may be a FilterType.
   */
  async subscribe(namespace, name, callbacks = {}, { filter = FilterType.LARGEST_OBJECT, priority = 128 } = {}) {
    const requestId = this._allocRequestId();
    const sub = new Subscription(this, requestId, namespace, name, callbacks);
    this.subscriptions.set(requestId, sub);
    const req = sub.request = new RequestStream(await this.wt.createBidirectionalStream());
    await req.send({
      type: 'Subscribe', requestId, trackNamespace: namespace, trackName: name,
      parameters: {
        forward: 1, subscriberPriority: priority, groupOrder: GroupOrder.ASCENDING,
        subscriptionFilter: { filterType: filter, start: null, endGroupDelta: null },
      },
    });
    const replies = req.messages();
    const first = await this._firstReply(replies, `subscribe ${sub.label}`);
    if (first.type === 'RequestError') { this._forget(sub); throw new RequestRejected(`subscribe ${sub.label}`, first); }
    if (first.type !== 'SubscribeOk') throw this._violation(`${first.type} in reply to SUBSCRIBE`);
    sub.trackAlias = first.trackAlias;
    sub.largest = first.parameters.largestObject ?? null;
    const prio = first.trackProperties.find(([k]) => k === DEFAULT_PUBLISHER_PRIORITY);
    if (prio) sub.defaultPriority = Math.min(Number(prio[1]), 255);
    this.byAlias.set(sub.trackAlias, sub);
    for (const resolve of this.aliasWaiters.get(sub.trackAlias) ?? []) resolve(sub);
    this.aliasWaiters.delete(sub.trackAlias);
    this._followRequest(sub, replies);
    return sub;
  }

  /** The first reply on a request stream, within REQUEST_TIMEOUT_MS and while the session lives. */
  async _firstReply(replies, what) {
    let timer;
    const giveUp = new Promise((resolve) => {
      timer = setTimeout(() => resolve({ error: `no answer in ${REQUEST_TIMEOUT_MS / 1000} s` }), REQUEST_TIMEOUT_MS);
      this.closed.then((c) => resolve({ error: `the session closed (${c.reason})` }));
    });
    let step;
    try {
      step = await Promise.race([replies.next(), giveUp]);
    } catch (e) {
      if (e instanceof SessionError) { this._fail(e); throw e; }
      throw new Error(`${what}: request stream failed (${e.message || e})`);
    } finally {
      clearTimeout(timer);
    }
    if (step.error) throw new Error(`${what}: ${step.error}`);
    if (step.done) throw new Error(`${what}: the relay closed the request stream without a reply`);
    return step.value;
  }

  _violation(message) {
    const e = new SessionError(message, SessionErrorCode.PROTOCOL_VIOLATION);
    this._fail(e);
    return e;
  }

  /** Later messages on a subscription's stream: PUBLISH_DONE ends it (§ PUBLISH_DONE). */
  async _followRequest(sub, replies) {
    let done = null;
    try {
      for await (const msg of replies) {
        if (msg.type === 'PublishDone') done = { statusCode: msg.statusCode, reason: msg.reason };
        else if (msg.type !== 'GoAway') throw new SessionError(`${msg.type} on a subscription stream`, SessionErrorCode.PROTOCOL_VIOLATION);
      }
    } catch (e) {
      if (e instanceof SessionError) { this._fail(e); return; }
      done ??= { statusCode: null, reason: `request stream reset (${e.message || e})` };
    }
    if (!sub.closed) {
      sub.closed = true;
      this._forget(sub);
      sub.onDone(done ?? { statusCode: null, reason: 'the relay ended the subscription' });
    }
  }

  _forget(sub) {
    this.subscriptions.delete(sub.requestId);
    if (sub.trackAlias !== null && this.byAlias.get(sub.trackAlias) === sub) this.byAlias.delete(sub.trackAlias);
  }

  /**
   * Joining FETCH (§ Joining Fetches), relative: the `groupsBack` groups before the
   * subscription's Largest Object's group plus that group up to Largest.  Resolves with
   * the fetched objects (in order) once the fetch stream ends; rejects with
   * RequestRejected at REQUEST_ERROR.
   */
  async joiningFetch(sub, groupsBack = 0) {
    const requestId = this._allocRequestId();
    const objects = [];
    let resolveDone;
    let rejectDone;
    const done = new Promise((resolve, reject) => { resolveDone = resolve; rejectDone = reject; });
    this.fetches.set(requestId, { sub, objects, resolveDone, rejectDone, descending: false });
    const req = new RequestStream(await this.wt.createBidirectionalStream());
    await req.send({
      type: 'Fetch', requestId, fetchType: FetchType.RELATIVE_JOINING, standalone: null,
      joining: { joiningRequestId: sub.requestId, joiningStart: groupsBack }, parameters: { groupOrder: GroupOrder.ASCENDING },
    });
    const replies = req.messages();
    const first = await this._firstReply(replies, `fetch ${sub.label}`);
    if (first.type === 'RequestError') { this.fetches.delete(requestId); throw new RequestRejected(`fetch ${sub.label}`, first); }
    if (first.type !== 'FetchOk') throw this._violation(`${first.type} in reply to FETCH`);
    (async () => { try { for await (const _ of replies) { /* nothing else is expected */ } } catch { /* ignore */ } })();
    try {
      return await done;
    } finally {
      this.fetches.delete(requestId);
      req.cancel();
    }
  }

  // --- incoming data ------------------------------------------------------------------------

  async _acceptUniStreams() {
    const reader = this.wt.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this._readUniStream(value);
      }
    } catch { /* the session is gone */ }
  }

  async _readDatagrams() {
    const reader = this.wt.datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        this.bytesReceived += value.length;
        const dg = decodeDatagram(value);
        const sub = dg && this.byAlias.get(dg.trackAlias);
        if (sub && !sub.closed && dg.status === null) {
          sub.onObject({ groupId: dg.groupId, subgroupId: null, objectId: dg.objectId, status: ObjectStatus.NORMAL,
            payload: dg.payload, properties: dg.properties ?? EMPTY, priority: dg.publisherPriority ?? sub.defaultPriority,
            fetched: false });
        }
      }
    } catch (e) {
      if (e instanceof SessionError) this._fail(e);
    }
  }

  _waitAlias(alias) {
    const sub = this.byAlias.get(alias);
    if (sub) return Promise.resolve(sub);
    return new Promise((resolve) => {
      const list = this.aliasWaiters.get(alias) ?? [];
      list.push(resolve);
      this.aliasWaiters.set(alias, list);
      setTimeout(() => resolve(null), ALIAS_WAIT_MS);
    });
  }

  async _readUniStream(stream) {
    const reader = stream.getReader();
    const dec = new UniStreamDecoder({ fetchDescending: (id) => this.fetches.get(id)?.descending });
    let sub = null;
    let fetch = null;
    let header = null;
    let firstObjectId = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (value) this.bytesReceived += value.length;
        for (const item of dec.feed(value ?? EMPTY, done)) {
          switch (item.type) {
            case 'ControlStreamOpened': break;
            case 'PaddingStreamOpened': reader.cancel().catch(() => {}); return;
            case 'SubgroupHeader':
              header = item;
              sub = await this._waitAlias(item.trackAlias);
              if (!sub || sub.closed) { reader.cancel().catch(() => {}); return; } // § Subgroup Header: MAY abandon
              sub.streams.set(reader, item.groupId);
              break;
            case 'FetchHeader':
              fetch = this.fetches.get(item.requestId);
              if (!fetch) { reader.cancel().catch(() => {}); return; }
              break;
            case 'SubgroupObject':
              firstObjectId ??= item.objectId;
              if (!sub.closed) {
                sub.onObject({ groupId: header.groupId, subgroupId: header.subgroupId ?? firstObjectId, objectId: item.objectId,
                  status: item.status, payload: item.payload, properties: item.properties,
                  priority: header.publisherPriority ?? sub.defaultPriority, fetched: false });
              }
              break;
            case 'FetchObject':
              fetch.objects.push({ groupId: item.groupId, subgroupId: item.subgroupId, objectId: item.objectId,
                status: ObjectStatus.NORMAL, payload: item.payload, properties: item.properties,
                priority: item.publisherPriority, fetched: true });
              break;
            case 'EndOfRange': break;
            default: // control messages on the peer's control stream
              this._controlMessage(item);
          }
        }
        if (done) break;
      }
      fetch?.resolveDone(fetch.objects);
    } catch (e) {
      if (e instanceof SessionError) { this._fail(e); return; }
      // the stream was reset by the relay (e.g. TOO_FAR_BEHIND) or cancelled by us
      if (sub && header && sub.streams.has(reader)) sub.onStreamReset(header.groupId);
      fetch?.rejectDone(new Error(`fetch stream reset (${e.message || e})`));
    } finally {
      if (sub) sub.streams.delete(reader);
    }
  }

  /** § Session initialization: SETUP first, then only GOAWAY on the control stream. */
  _controlMessage(msg) {
    if (!this.peerSetup) {
      if (msg.type !== 'Setup') throw new SessionError('first control message is not SETUP', SessionErrorCode.PROTOCOL_VIOLATION);
      this.peerSetup = msg;
      this._setupReceived();
    } else if (msg.type === 'GoAway') {
      this.goaway = { uri: fromUtf8(msg.newSessionUri), timeout: msg.timeout };
      this.onGoaway(this.goaway);
    } else {
      throw new SessionError(`${msg.type} is not allowed on the control stream`, SessionErrorCode.PROTOCOL_VIOLATION);
    }
  }
}
