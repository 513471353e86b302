// Error classes with the draft's wire codes (draft-ietf-moq-transport-18 § Termination,
// § REQUEST_ERROR, § Stream Reset Error Codes).  Mirrors moq/errors.py.

/** Session Termination codes (§ Termination). */
export const SessionErrorCode = Object.freeze({
  NO_ERROR: 0x0, INTERNAL_ERROR: 0x1, UNAUTHORIZED: 0x2, PROTOCOL_VIOLATION: 0x3,
  INVALID_REQUEST_ID: 0x4, DUPLICATE_TRACK_ALIAS: 0x5, KEY_VALUE_FORMATTING_ERROR: 0x6,
  VERSION_NEGOTIATION_FAILED: 0x15,
});

/** REQUEST_ERROR codes (§ REQUEST_ERROR). */
export const RequestErrorCode = Object.freeze({
  INTERNAL_ERROR: 0x0, UNAUTHORIZED: 0x1, TIMEOUT: 0x2, NOT_SUPPORTED: 0x3, GOING_AWAY: 0x6,
  EXCESSIVE_LOAD: 0x9, DOES_NOT_EXIST: 0x10, INVALID_RANGE: 0x11, MALFORMED_TRACK: 0x12,
  DUPLICATE_SUBSCRIPTION: 0x19, UNINTERESTED: 0x20, INVALID_JOINING_REQUEST_ID: 0x32, REDIRECT: 0x34,
});

/** Stream reset / STOP_SENDING codes (§ Stream Reset Error Codes). */
export const StreamResetCode = Object.freeze({
  INTERNAL_ERROR: 0x0, CANCELLED: 0x1, DELIVERY_TIMEOUT: 0x2, SESSION_CLOSED: 0x3, GOING_AWAY: 0x4,
  TOO_FAR_BEHIND: 0x5,
});

/** Internal signal of the incremental decoders: the input ends early.  Not an error. */
export class NeedMoreData extends Error {
  constructor() { super('need more data'); this.name = 'NeedMoreData'; }
}

/** A peer's bad input: closes the session with `code`. */
export class SessionError extends Error {
  constructor(message, code) { super(message); this.name = 'SessionError'; this.code = code; }
}

export class ProtocolViolation extends SessionError {
  constructor(message) { super(message, SessionErrorCode.PROTOCOL_VIOLATION); this.name = 'ProtocolViolation'; }
}

export class KeyValueFormattingError extends SessionError {
  constructor(message) {
    super(message, SessionErrorCode.KEY_VALUE_FORMATTING_ERROR);
    this.name = 'KeyValueFormattingError';
  }
}

/** Our caller misused the API (never caused by the peer). */
export class LocalUsageError extends Error {
  constructor(message) { super(message); this.name = 'LocalUsageError'; }
}
