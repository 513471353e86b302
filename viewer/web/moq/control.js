// Control messages (draft-18 § Control Messages).  Mirrors moq/wire/control.py.
//
// Frame: Message Type (vi64), Message Length (16 bits), Message Payload.  A message is
// a plain object {type: 'Subscribe', ...fields}; field names are the camelCase of the
// draft's (and tests/vectors/README.md's) names.

import { LocalUsageError, NeedMoreData, ProtocolViolation, RequestErrorCode } from './errors.js';
import { Reader, Writer } from './buffer.js';
import {
  ParamType as P, decodeKvps, decodeLocation, decodeNamespace, decodeParameters, decodeReason, decodeTrackName,
  encodeKvps, encodeLocation, encodeNamespace, encodeParameters, encodeReason, encodeTrackName,
} from './types.js';

export const MAX_MESSAGE_LENGTH = 0xffff;
const MAX_GOAWAY_URI = 8192;

/** Setup Options (§ Setup Options). */
export const SetupOption = Object.freeze({
  PATH: 0x01, AUTHORIZATION_TOKEN: 0x03, MAX_AUTH_TOKEN_CACHE_SIZE: 0x04, AUTHORITY: 0x05, MOQT_IMPLEMENTATION: 0x07,
});

export const FetchType = Object.freeze({ STANDALONE: 1, RELATIVE_JOINING: 2, ABSOLUTE_JOINING: 3 });

// Parameters each message may carry (§ Message Parameters: "Parameter Scope").
const SUBSCRIBE_PARAMS = new Set([P.AUTHORIZATION_TOKEN, P.OBJECT_DELIVERY_TIMEOUT, P.SUBGROUP_DELIVERY_TIMEOUT,
  P.RENDEZVOUS_TIMEOUT, P.SUBSCRIBER_PRIORITY, P.GROUP_ORDER, P.SUBSCRIPTION_FILTER, P.FORWARD, P.NEW_GROUP_REQUEST]);
const PUBLISH_OK_PARAMS = new Set([P.OBJECT_DELIVERY_TIMEOUT, P.SUBGROUP_DELIVERY_TIMEOUT, P.SUBSCRIBER_PRIORITY,
  P.GROUP_ORDER, P.SUBSCRIPTION_FILTER, P.EXPIRES, P.FORWARD, P.NEW_GROUP_REQUEST]);
const REQUEST_OK_PARAMS = new Set([...PUBLISH_OK_PARAMS, P.LARGEST_OBJECT]);
const SUBSCRIBE_OK_PARAMS = new Set([P.EXPIRES, P.LARGEST_OBJECT]);
const PUBLISH_PARAMS = new Set([P.AUTHORIZATION_TOKEN, P.EXPIRES, P.LARGEST_OBJECT, P.FORWARD]);
const FETCH_PARAMS = new Set([P.AUTHORIZATION_TOKEN, P.SUBSCRIBER_PRIORITY, P.GROUP_ORDER, P.FILL_TIMEOUT]);
const UPDATE_PARAMS = new Set([P.AUTHORIZATION_TOKEN, P.OBJECT_DELIVERY_TIMEOUT, P.SUBGROUP_DELIVERY_TIMEOUT,
  P.SUBSCRIBER_PRIORITY, P.SUBSCRIPTION_FILTER, P.FORWARD, P.NEW_GROUP_REQUEST, P.TRACK_NAMESPACE_PREFIX]);
const AUTH_ONLY = new Set([P.AUTHORIZATION_TOKEN]);
const NONE = new Set();

// Shared layouts -------------------------------------------------------------------------

const subscribeLayout = (allowed) => ({
  encode(w, m) {
    w.varint(m.requestId);
    encodeTrackName(w, m.trackNamespace, m.trackName);
    encodeParameters(w, m.parameters);
  },
  decode(r) {
    const requestId = r.varint();
    const [trackNamespace, trackName] = decodeTrackName(r);
    return { requestId, trackNamespace, trackName, parameters: decodeParameters(r, allowed) };
  },
});

const namespaceRequestLayout = (allowed) => ({
  encode(w, m) {
    w.varint(m.requestId);
    encodeNamespace(w, m.trackNamespacePrefix);
    encodeParameters(w, m.parameters);
  },
  decode(r) {
    const requestId = r.varint();
    return { requestId, trackNamespacePrefix: decodeNamespace(r), parameters: decodeParameters(r, allowed) };
  },
});

const suffixLayout = {
  encode(w, m) { encodeNamespace(w, m.trackNamespaceSuffix); },
  decode(r) { return { trackNamespaceSuffix: decodeNamespace(r) }; },
};

const requestOkLayout = (allowed, propertiesAllowed) => ({
  encode(w, m) {
    encodeParameters(w, m.parameters);
    encodeKvps(w, m.trackProperties ?? []);
  },
  decode(r) {
    const parameters = decodeParameters(r, allowed);
    // § REQUEST_OK: Track Properties are empty in PUBLISH_OK
    if (!propertiesAllowed && !r.atEnd()) throw new ProtocolViolation('Track Properties in PUBLISH_OK');
    return { parameters, trackProperties: decodeKvps(r) };
  },
});

// The registry: name -> {id, encode(w, m), decode(r) -> fields} --------------------------------

export const MESSAGES = {
  // § SETUP: Setup Options as Key-Value-Pairs spanning the payload
  Setup: { id: 0x2f00, encode(w, m) { encodeKvps(w, m.options); }, decode(r) { return { options: decodeKvps(r) }; } },
  // § GOAWAY: Request ID present only on the control stream
  GoAway: {
    id: 0x10,
    encode(w, m) {
      w.lpBytes(m.newSessionUri).varint(m.timeout);
      if (m.requestId !== null && m.requestId !== undefined) w.varint(m.requestId);
    },
    decode(r) {
      const newSessionUri = r.lpBytes(MAX_GOAWAY_URI, 'New Session URI');
      const timeout = r.varint();
      return { newSessionUri, timeout, requestId: r.atEnd() ? null : r.varint() };
    },
  },
  // § REQUEST_OK
  RequestOk: { id: 0x7, ...requestOkLayout(REQUEST_OK_PARAMS, true) },
  // PUBLISH_OK (0x1E in the Message Types table): REQUEST_OK's layout
  PublishOk: { id: 0x1e, ...requestOkLayout(PUBLISH_OK_PARAMS, false) },
  // § REQUEST_ERROR; the Redirect Structure only with error code REDIRECT
  RequestError: {
    id: 0x5,
    encode(w, m) {
      w.varint(m.errorCode).varint(m.retryInterval);
      encodeReason(w, m.reason);
      if (m.errorCode === RequestErrorCode.REDIRECT) {
        const rd = m.redirect ?? { connectUri: new Uint8Array(), trackNamespace: [], trackName: new Uint8Array() };
        w.lpBytes(rd.connectUri);
        encodeTrackName(w, rd.trackNamespace, rd.trackName);
      } else if (m.redirect) {
        throw new LocalUsageError('redirect only goes with error code REDIRECT');
      }
    },
    decode(r) {
      const errorCode = r.varint();
      const retryInterval = r.varint();
      const reason = decodeReason(r);
      let redirect = null;
      if (errorCode === RequestErrorCode.REDIRECT) {
        const connectUri = r.lpBytes(MAX_GOAWAY_URI, 'Connect URI');
        const [trackNamespace, trackName] = decodeTrackName(r);
        redirect = { connectUri, trackNamespace, trackName };
      }
      return { errorCode, retryInterval, reason, redirect };
    },
  },
  // § SUBSCRIBE
  Subscribe: { id: 0x3, ...subscribeLayout(SUBSCRIBE_PARAMS) },
  // § TRACK_STATUS: SUBSCRIBE's layout, delivery parameters not included
  TrackStatus: { id: 0xd, ...subscribeLayout(AUTH_ONLY) },
  // § SUBSCRIBE_OK
  SubscribeOk: {
    id: 0x4,
    encode(w, m) {
      w.varint(m.trackAlias);
      encodeParameters(w, m.parameters);
      encodeKvps(w, m.trackProperties ?? []);
    },
    decode(r) {
      const trackAlias = r.varint();
      const parameters = decodeParameters(r, SUBSCRIBE_OK_PARAMS);
      return { trackAlias, parameters, trackProperties: decodeKvps(r) };
    },
  },
  // § REQUEST_UPDATE
  RequestUpdate: {
    id: 0x2,
    encode(w, m) { w.varint(m.requestId); encodeParameters(w, m.parameters); },
    decode(r) { const requestId = r.varint(); return { requestId, parameters: decodeParameters(r, UPDATE_PARAMS) }; },
  },
  // § PUBLISH
  Publish: {
    id: 0x1d,
    encode(w, m) {
      w.varint(m.requestId);
      encodeTrackName(w, m.trackNamespace, m.trackName);
      w.varint(m.trackAlias);
      encodeParameters(w, m.parameters);
      encodeKvps(w, m.trackProperties ?? []);
    },
    decode(r) {
      const requestId = r.varint();
      const [trackNamespace, trackName] = decodeTrackName(r);
      const trackAlias = r.varint();
      const parameters = decodeParameters(r, PUBLISH_PARAMS);
      return { requestId, trackNamespace, trackName, trackAlias, parameters, trackProperties: decodeKvps(r) };
    },
  },
  // § PUBLISH_DONE
  PublishDone: {
    id: 0xb,
    encode(w, m) { w.varint(m.statusCode).varint(m.streamCount); encodeReason(w, m.reason); },
    decode(r) { return { statusCode: r.varint(), streamCount: r.varint(), reason: decodeReason(r) }; },
  },
  // § FETCH: standalone (§ Standalone Fetch) or joining (§ Joining Fetches)
  Fetch: {
    id: 0x16,
    encode(w, m) {
      w.varint(m.requestId).varint(m.fetchType);
      if (m.fetchType === FetchType.STANDALONE) {
        const s = m.standalone;
        if (!s) throw new LocalUsageError('standalone fetch needs `standalone`');
        encodeTrackName(w, s.trackNamespace, s.trackName);
        encodeLocation(w, s.start);
        encodeLocation(w, s.end);
      } else if (m.fetchType === FetchType.RELATIVE_JOINING || m.fetchType === FetchType.ABSOLUTE_JOINING) {
        if (!m.joining) throw new LocalUsageError('joining fetch needs `joining`');
        w.varint(m.joining.joiningRequestId).varint(m.joining.joiningStart);
      } else {
        throw new LocalUsageError(`unknown fetch type ${m.fetchType}`);
      }
      encodeParameters(w, m.parameters);
    },
    decode(r) {
      const requestId = r.varint();
      const fetchType = r.varint();
      let standalone = null;
      let joining = null;
      if (fetchType === FetchType.STANDALONE) {
        const [trackNamespace, trackName] = decodeTrackName(r);
        standalone = { trackNamespace, trackName, start: decodeLocation(r), end: decodeLocation(r) };
      } else if (fetchType === FetchType.RELATIVE_JOINING || fetchType === FetchType.ABSOLUTE_JOINING) {
        joining = { joiningRequestId: r.varint(), joiningStart: r.varint() };
      } else {
        throw new ProtocolViolation(`unknown fetch type ${fetchType}`);
      }
      return { requestId, fetchType, standalone, joining, parameters: decodeParameters(r, FETCH_PARAMS) };
    },
  },
  // § FETCH_OK
  FetchOk: {
    id: 0x18,
    encode(w, m) {
      w.uint8(m.endOfTrack ? 1 : 0);
      encodeLocation(w, m.endLocation);
      encodeParameters(w, m.parameters);
      encodeKvps(w, m.trackProperties ?? []);
    },
    decode(r) {
      const eot = r.uint8();
      if (eot > 1) throw new ProtocolViolation(`End Of Track must be 0 or 1, got ${eot}`);
      const endLocation = decodeLocation(r);
      const parameters = decodeParameters(r, NONE);
      return { endOfTrack: eot === 1, endLocation, parameters, trackProperties: decodeKvps(r) };
    },
  },
  // § PUBLISH_NAMESPACE
  PublishNamespace: {
    id: 0x6,
    encode(w, m) { w.varint(m.requestId); encodeNamespace(w, m.trackNamespace); encodeParameters(w, m.parameters); },
    decode(r) {
      const requestId = r.varint();
      return { requestId, trackNamespace: decodeNamespace(r), parameters: decodeParameters(r, AUTH_ONLY) };
    },
  },
  // § SUBSCRIBE_NAMESPACE, § SUBSCRIBE_TRACKS
  SubscribeNamespace: { id: 0x50, ...namespaceRequestLayout(AUTH_ONLY) },
  SubscribeTracks: { id: 0x51, ...namespaceRequestLayout(new Set([P.AUTHORIZATION_TOKEN, P.FORWARD])) },
  // § NAMESPACE, § NAMESPACE_DONE
  Namespace: { id: 0x8, ...suffixLayout },
  NamespaceDone: { id: 0xe, ...suffixLayout },
  // § PUBLISH_BLOCKED
  PublishBlocked: {
    id: 0xf,
    encode(w, m) { encodeTrackName(w, m.trackNamespaceSuffix, m.trackName); },
    decode(r) { const [trackNamespaceSuffix, trackName] = decodeTrackName(r); return { trackNamespaceSuffix, trackName }; },
  },
};

const BY_ID = new Map(Object.entries(MESSAGES).map(([name, spec]) => [spec.id, name]));

/** Messages that may open a request stream (§ Session initialization). */
export const REQUEST_TYPES = new Set(['Subscribe', 'Publish', 'Fetch', 'TrackStatus', 'PublishNamespace',
  'SubscribeNamespace', 'SubscribeTracks']);

/** The whole frame of message `m` ({type, ...fields}). */
export function encodeMessage(m) {
  const spec = MESSAGES[m.type];
  if (!spec) throw new LocalUsageError(`unknown message type ${m.type}`);
  const payload = new Writer();
  spec.encode(payload, m);
  if (payload.length > MAX_MESSAGE_LENGTH) throw new LocalUsageError(`${m.type} payload exceeds 65535 bytes`);
  return new Writer(payload.length + 12).varint(spec.id).uint16(payload.length).raw(payload.bytes()).bytes();
}

/** Parse one payload of message type `id`; it must be consumed exactly. */
export function decodeMessage(id, payload) {
  const name = BY_ID.get(id);
  if (name === undefined) throw new ProtocolViolation(`unknown control message type 0x${id.toString(16)}`);
  const r = new Reader(payload);
  let fields;
  try {
    fields = MESSAGES[name].decode(r);
  } catch (e) {
    if (e instanceof NeedMoreData) throw new ProtocolViolation(`${name}: message shorter than its fields`);
    throw e;
  }
  if (!r.atEnd()) throw new ProtocolViolation(`${name}: ${r.remaining()} trailing bytes`);
  return { type: name, ...fields };
}
