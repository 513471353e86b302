"""Error tree.  Each class carries the draft's wire code (§ Termination, § REQUEST_ERROR).

- `SessionError`: closes the whole session with `code` (a Session Termination code).
- `RequestError`: answers or ends one request (REQUEST_ERROR / PUBLISH_DONE code).
- `StreamResetError`: resets one stream (Stream Reset code).
- `LocalUsageError`: our caller misused the API; never caused by the peer.
- `NeedMoreData`: internal signal of the incremental decoders; not an error.
"""

from __future__ import annotations

from enum import IntEnum


class SessionErrorCode(IntEnum):
    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    UNAUTHORIZED = 0x2
    PROTOCOL_VIOLATION = 0x3
    INVALID_REQUEST_ID = 0x4
    DUPLICATE_TRACK_ALIAS = 0x5
    KEY_VALUE_FORMATTING_ERROR = 0x6
    INVALID_PATH = 0x8
    MALFORMED_PATH = 0x9
    GOAWAY_TIMEOUT = 0x10
    CONTROL_MESSAGE_TIMEOUT = 0x11
    DATA_STREAM_TIMEOUT = 0x12
    AUTH_TOKEN_CACHE_OVERFLOW = 0x13
    DUPLICATE_AUTH_TOKEN_ALIAS = 0x14
    VERSION_NEGOTIATION_FAILED = 0x15
    MALFORMED_AUTH_TOKEN = 0x16
    UNKNOWN_AUTH_TOKEN_ALIAS = 0x17
    EXPIRED_AUTH_TOKEN = 0x18
    INVALID_AUTHORITY = 0x19
    MALFORMED_AUTHORITY = 0x1A


class RequestErrorCode(IntEnum):
    INTERNAL_ERROR = 0x0
    UNAUTHORIZED = 0x1
    TIMEOUT = 0x2
    NOT_SUPPORTED = 0x3
    MALFORMED_AUTH_TOKEN = 0x4
    EXPIRED_AUTH_TOKEN = 0x5
    GOING_AWAY = 0x6
    EXCESSIVE_LOAD = 0x9
    DOES_NOT_EXIST = 0x10
    INVALID_RANGE = 0x11
    MALFORMED_TRACK = 0x12
    DUPLICATE_SUBSCRIPTION = 0x19
    UNINTERESTED = 0x20
    PREFIX_OVERLAP = 0x30
    NAMESPACE_TOO_LARGE = 0x31
    INVALID_JOINING_REQUEST_ID = 0x32
    UNSUPPORTED_EXTENSION = 0x33
    REDIRECT = 0x34


class PublishDoneCode(IntEnum):
    INTERNAL_ERROR = 0x0
    UNAUTHORIZED = 0x1
    TRACK_ENDED = 0x2
    SUBSCRIPTION_ENDED = 0x3
    GOING_AWAY = 0x4
    TOO_FAR_BEHIND = 0x5
    EXPIRED = 0x6
    UPDATE_FAILED = 0x8
    EXCESSIVE_LOAD = 0x9
    MALFORMED_TRACK = 0x12


class StreamResetCode(IntEnum):
    INTERNAL_ERROR = 0x0
    CANCELLED = 0x1
    DELIVERY_TIMEOUT = 0x2
    SESSION_CLOSED = 0x3
    GOING_AWAY = 0x4
    TOO_FAR_BEHIND = 0x5
    UNKNOWN_OBJECT_STATUS = 0x6
    EXPIRED_AUTH_TOKEN = 0x7
    EXCESSIVE_LOAD = 0x9
    MALFORMED_TRACK = 0x12


class NeedMoreData(Exception):
    """The input ends before a complete unit; feed more bytes and retry."""


class MoQError(Exception):
    code: int = 0

    def __init__(self, reason: str = "", code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = int(code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code:#x}, reason={self.reason!r})"


class SessionError(MoQError):
    """Closes the session with a Session Termination error code."""

    code = SessionErrorCode.PROTOCOL_VIOLATION


class ProtocolViolation(SessionError):
    code = SessionErrorCode.PROTOCOL_VIOLATION


class KeyValueFormattingError(SessionError):
    code = SessionErrorCode.KEY_VALUE_FORMATTING_ERROR


class InvalidRequestId(SessionError):
    code = SessionErrorCode.INVALID_REQUEST_ID


class DuplicateTrackAlias(SessionError):
    code = SessionErrorCode.DUPLICATE_TRACK_ALIAS


class VersionNegotiationFailed(SessionError):
    code = SessionErrorCode.VERSION_NEGOTIATION_FAILED


class RequestError(MoQError):
    """Rejects or ends one request (REQUEST_ERROR code)."""

    code = RequestErrorCode.INTERNAL_ERROR


class StreamResetError(MoQError):
    """Resets one stream (Stream Reset error code)."""

    code = StreamResetCode.INTERNAL_ERROR


class LocalUsageError(Exception):
    """The application called the library wrongly (not the peer's fault)."""


class SessionClosedError(Exception):
    """The session is closed (locally or by the peer); carries the close code."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"session closed: code={code:#x} {reason}".rstrip())
        self.code = code
        self.reason = reason
