"""WebTransport-over-HTTP/3 adapter: one WebTransport session per QUIC connection (ALPN ``h3``).

aioquic's :class:`~aioquic.h3.connection.H3Connection` parses the HTTP/3 layer; this module
adds what a MoQ session needs on top of it and works around its gaps (aioquic 1.7.2):

* **Our own bidi streams**: H3 does not know that a bidirectional stream *we* opened is a
  WebTransport stream, so it would parse the peer's bytes as HTTP/3 frames.  We mark its H3
  stream state (frame type WEBTRANSPORT_STREAM + session id) right after opening it.
* **Session close**: CLOSE_WEBTRANSPORT_SESSION capsules reach us as DATA on the CONNECT
  stream; we parse them ourselves and send our own on :meth:`WebTransportSession.close`.
* **Error codes**: RESET_STREAM/STOP_SENDING carry HTTP/3 codes; we map the session's plain
  codes into the WebTransport application range and back (draft-ietf-webtrans-http3).
* **Version negotiation**: ``wt-available-protocols`` / ``wt-protocol`` structured fields.

The server accepts the extended CONNECT on any path that passes :func:`moq.wire.path.check_path`
(the rule of the raw-QUIC SETUP PATH): 400 for a malformed one, 404 for dot segments; the
session learns the path/authority.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aioquic.buffer import encode_uint_var
from aioquic.h3 import events as h3e
from aioquic.h3.connection import ErrorCode, H3Connection, ProtocolError
from aioquic.quic import events as qe
from aioquic.quic.connection import stream_is_client_initiated, stream_is_unidirectional

from ..token import redact
from ..wire.path import NOT_FOUND, check_path
from . import aioquic_seam as seam
from .base import DatagramReceived, SessionClosed, StopSending, StreamData, StreamReset
from .quic import ConnectionProtocol, SessionBase

WT_ERROR_FIRST = 0x52E4A40FA8DB
WT_ERROR_LAST = WT_ERROR_FIRST + 0xFFFFFFFF + 0xFFFFFFFF // 0x1E
CLOSE_WEBTRANSPORT_SESSION = 0x2843
DRAIN_WEBTRANSPORT_SESSION = 0x78AE
H3_NO_ERROR = int(ErrorCode.H3_NO_ERROR)
CLOSE_GRACE = 1.0  # seconds to wait for the peer's FIN on the CONNECT stream before closing QUIC
MAX_REASON_BYTES = 1024
MAX_STASHED = 256  # stream events buffered while the CONNECT is still in flight


def wt_to_h3_error(code: int) -> int:
    """Map a WebTransport application error code (32-bit) into the HTTP/3 error space."""
    if not 0 <= code <= 0xFFFFFFFF:
        raise ValueError(f"WebTransport error codes are 32-bit, got {code}")
    return WT_ERROR_FIRST + code + code // 0x1E


def h3_to_wt_error(h3_code: int) -> int | None:
    """Inverse of :func:`wt_to_h3_error`; None for codes outside the range or GREASE points."""
    if not WT_ERROR_FIRST <= h3_code <= WT_ERROR_LAST or (h3_code - 0x21) % 0x1F == 0:
        return None
    shifted = h3_code - WT_ERROR_FIRST
    return shifted - shifted // 0x1F


def _peer_code(h3_code: int) -> int:
    """A code received on RESET_STREAM/STOP_SENDING: the WT code, or the raw value otherwise."""
    code = h3_to_wt_error(h3_code)
    return h3_code if code is None else code


def sf_string(value: str) -> bytes:
    """Serialize an RFC 8941 sf-string."""
    if any(not 0x20 <= ord(c) <= 0x7E for c in value):
        raise ValueError(f"sf-string must be printable ASCII: {value!r}")
    return b'"' + value.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


def parse_sf_string_list(raw: bytes | str) -> list[str]:
    """Parse an RFC 8941 list of sf-strings (parameters ignored; bare tokens tolerated)."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    items: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            return items
        if text[i] == '"':
            i += 1
            out = []
            while True:
                if i >= n:
                    raise ValueError(f"unterminated sf-string in {text!r}")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    out.append(text[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            items.append("".join(out))
        else:
            start = i
            while i < n and text[i] not in ",; \t":
                i += 1
            items.append(text[start:i])
        while i < n and text[i] != ",":  # skip parameters
            i += 1
        i += 1


def encode_close_capsule(code: int, reason: str) -> bytes:
    reason_bytes = reason.encode("utf-8")[:MAX_REASON_BYTES]
    reason_bytes = reason_bytes.decode("utf-8", "ignore").encode("utf-8")  # no split code point
    payload = code.to_bytes(4, "big") + reason_bytes
    return encode_uint_var(CLOSE_WEBTRANSPORT_SESSION) + encode_uint_var(len(payload)) + payload


def _pull_varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    if pos >= len(data):
        return None
    length = 1 << (data[pos] >> 6)
    if pos + length > len(data):
        return None
    value = data[pos] & 0x3F
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    return value, pos + length


class WebTransportSession(SessionBase):
    """TransportSession for one WebTransport session; also the H3 "app" of its QUIC connection."""

    kind = "webtransport"

    def __init__(
        self,
        conn: ConnectionProtocol,
        *,
        is_client: bool,
        alpns: Sequence[str],
        path: str = "/",
        authority: str = "",
    ) -> None:
        super().__init__(conn, is_client=is_client, path=path, authority=authority)
        self._h3 = H3Connection(self._quic, enable_webtransport=True)
        self._alpns = tuple(alpns)
        self.session_id: int | None = None  # the CONNECT stream id
        self._established = False
        self._connect_sent = False
        self._fin_sent = False  # our side of the CONNECT stream is finished
        self._capsules = bytearray()
        self._capsule_skip = 0
        self._stash: list[h3e.H3Event] = []  # WT events that arrived before the session was up
        self._close_timer: asyncio.TimerHandle | None = None
        self._peer_done = False
        if is_client:
            self._maybe_send_connect()
            self._schedule()

    # --- TransportSession ---------------------------------------------------------------

    def open_stream(self, unidirectional: bool) -> int:
        if self._closing or not self._established:
            raise ConnectionError("session is closed" if self._closing else "session is not established")
        sid = self._h3.create_webtransport_stream(self.session_id, is_unidirectional=unidirectional)
        if not unidirectional:
            # aioquic quirk: without this, H3 would parse the peer's replies as HTTP/3 frames.
            seam.mark_webtransport_stream(self._h3, sid, self.session_id)
        self._schedule()
        return sid

    def send_stream_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> None:
        if self._closing or self._send_dropped(stream_id):
            return
        self._quic.send_stream_data(stream_id, data, end_stream)
        if end_stream:
            self._h3_sending_ended(stream_id)
        self._schedule()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        if self._closing:
            return
        self._quic.reset_stream(stream_id, wt_to_h3_error(error_code))
        self._h3_sending_ended(stream_id)
        self._schedule()

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        if self._closing or not seam.has_stream(self._quic, stream_id):
            return
        self._quic.stop_stream(stream_id, wt_to_h3_error(error_code))
        self._schedule()

    def send_datagram(self, data: bytes) -> None:
        if self._closing or not self._established:
            return
        self._check_datagram(data)
        self._h3.send_datagram(self.session_id, bytes(data))
        self._schedule()

    def close(self, error_code: int = 0, reason: str = "") -> None:
        """Send CLOSE_WEBTRANSPORT_SESSION(code, reason) and FIN the CONNECT stream; the QUIC
        connection is closed when the peer FINs its side, or after :data:`CLOSE_GRACE`."""
        if self._closing:
            return
        if not 0 <= error_code <= 0xFFFFFFFF:
            raise ValueError(f"WebTransport session error codes are 32-bit, got {error_code}")
        self._closing = True
        self._emit_closed_soon(error_code, reason)
        if self._established and not self._fin_sent:
            self._fin_sent = True
            self._h3.send_data(self.session_id, encode_close_capsule(error_code, reason), end_stream=True)
            self._conn.transmit()
            self._close_timer = self._loop.call_later(CLOSE_GRACE, self._close_connection, reason)
        else:
            self._close_connection(reason)

    def _datagram_prefix_size(self) -> int:
        return len(encode_uint_var((self.session_id or 0) // 4))

    # --- App protocol (driven by ConnectionProtocol) -----------------------------------

    def quic_event(self, event: qe.QuicEvent) -> None:
        extra = None
        if isinstance(event, (qe.StreamReset, qe.StopSendingReceived)):
            sid = event.stream_id
            if sid == self.session_id and isinstance(event, qe.StreamReset):
                self._peer_closed(_peer_code(event.error_code), "")
            elif self._established and self._is_wt_stream(sid):
                cls = StreamReset if isinstance(event, qe.StreamReset) else StopSending
                extra = cls(sid, _peer_code(event.error_code))
        for h3_event in self._h3.handle_event(event):
            self._h3_event(h3_event)
        if extra is not None:
            self._emit(extra)
        if self.is_client and not self._connect_sent:
            self._maybe_send_connect()

    def terminated(self, error_code: int, reason: str) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if not self._established:
            self._conn.fail(
                ConnectionError(
                    f"connection closed before the WebTransport session was established "
                    f"(code 0x{error_code:x}{': ' + reason if reason else ''})"
                )
            )
        self._finish(0 if error_code == H3_NO_ERROR else error_code, reason)

    def abort(self, error_code: int, reason: str) -> None:
        """Server shutdown / client timeout: best-effort capsule, then close QUIC at once."""
        if self._established and not self._fin_sent and not self._closing:
            self._fin_sent = True
            self._h3.send_data(self.session_id, encode_close_capsule(error_code & 0xFFFFFFFF, reason), True)
            self._conn.transmit()
        self._closing = True
        self._emit_closed_soon(error_code, reason)
        self._close_connection(reason)

    # --- internals ----------------------------------------------------------------------

    def _close_connection(self, reason: str = "") -> None:
        self._close_timer = None
        self._quic.close(error_code=H3_NO_ERROR, reason_phrase=reason)
        self._conn.transmit()

    def _is_wt_stream(self, sid: int) -> bool:
        if sid in seam.h3_control_streams(self._h3):
            return False
        session = seam.h3_stream_session(self._h3, sid)
        if session is not False:
            return session is not None and session == self.session_id
        # Our own uni streams have no H3 state; everything else unknown is not ours.
        return stream_is_unidirectional(sid) and stream_is_client_initiated(sid) == self.is_client

    def _h3_sending_ended(self, sid: int) -> None:
        seam.h3_sending_ended(self._h3, sid)

    def _h3_event(self, event: h3e.H3Event) -> None:
        if isinstance(event, h3e.WebTransportStreamDataReceived):
            if event.session_id != self.session_id or not self._established:
                ours = self.session_id is None or event.session_id == self.session_id
                if ours and len(self._stash) < MAX_STASHED:
                    self._stash.append(event)  # may belong to a session not yet up
                return
            sid = event.stream_id
            self._emit(StreamData(sid, event.data, event.stream_ended, not stream_is_unidirectional(sid)))
        elif isinstance(event, h3e.DatagramReceived):
            if self._established and event.stream_id == self.session_id and not self._closing:
                self._emit(DatagramReceived(event.data))
        elif isinstance(event, h3e.HeadersReceived):
            if self.is_client:
                if event.stream_id == self.session_id and not self._established:
                    self._handle_response(event)
            elif event.stream_id != self.session_id:
                self._handle_request(event)
        elif isinstance(event, h3e.DataReceived):
            if event.stream_id == self.session_id:
                self._handle_capsules(event.data, event.stream_ended)

    def _maybe_send_connect(self) -> None:
        if self._connect_sent or self._h3.received_settings is None:
            return  # wait for the server's SETTINGS (it must have enabled WebTransport)
        self._connect_sent = True
        sid = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport"),
            (b":scheme", b"https"),
            (b":authority", self.authority.encode()),
            (b":path", self.path.encode()),
            (b"sec-webtransport-http3-draft02", b"1"),
        ]
        if self._alpns:
            headers.append((b"wt-available-protocols", b", ".join(sf_string(a) for a in self._alpns)))
        self._h3.send_headers(sid, headers)
        self.session_id = sid
        self._schedule()

    def _handle_response(self, event: h3e.HeadersReceived) -> None:
        headers = dict(event.headers)
        status = headers.get(b":status", b"").decode("latin-1")
        if not status.startswith("2"):
            self._conn.fail(
                ConnectionError(f"WebTransport CONNECT {redact(self.path)} rejected with status {status}")
            )
            self._close_connection("rejected")
            return
        chosen = self._alpns[0] if self._alpns else ""
        if b"wt-protocol" in headers:
            try:
                chosen = parse_sf_string_list(headers[b"wt-protocol"])[0]
            except (ValueError, IndexError):
                chosen = ""
            if chosen not in self._alpns:
                self._conn.fail(ConnectionError(f"server chose a protocol we did not offer: {chosen!r}"))
                self._close_connection("unsupported protocol")
                return
        self.protocol = chosen
        self._establish()

    def _handle_request(self, event: h3e.HeadersReceived) -> None:
        sid = event.stream_id
        headers = dict(event.headers)
        if headers.get(b":method") != b"CONNECT" or headers.get(b":protocol") != b"webtransport":
            self._respond(sid, b"404")
            return
        if self.session_id is not None:
            self._respond(sid, b"429")  # one WebTransport session per connection
            return
        offered: list[str] = []
        if b"wt-available-protocols" in headers:
            try:
                offered = parse_sf_string_list(headers[b"wt-available-protocols"])
            except ValueError:
                self._respond(sid, b"400")
                return
        chosen = next((p for p in offered if p in self._alpns), None)
        if offered and chosen is None:
            self._respond(sid, b"400")
            return
        path = headers.get(b":path", b"/")
        bad = check_path(path)  # the rule of the raw-QUIC SETUP PATH (moq.wire.path)
        if bad is not None:
            self._respond(sid, b"404" if bad[0] == NOT_FOUND else b"400")
            return
        self.session_id = sid
        self.path = path.decode("ascii")
        self.authority = headers.get(b":authority", b"").decode("utf-8", "replace")
        # Without wt-available-protocols the version is left to the MoQ SETUP exchange.
        self.protocol = chosen or ""
        response = [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
        if chosen is not None:
            response.append((b"wt-protocol", sf_string(chosen)))
        self._h3.send_headers(sid, response)
        # Flush the response now: browsers drop datagrams that arrive before it.
        self._conn.transmit()
        self._log = self._log.bind(path=redact(self.path))
        self._log.debug("connection_accepted", protocol=self.protocol)  # session_ready follows at info
        self._establish()

    def _respond(self, sid: int, status: bytes) -> None:
        self._h3.send_headers(sid, [(b":status", status)], end_stream=True)
        self._schedule()

    def _establish(self) -> None:
        self._established = True
        self._ready()
        stash, self._stash = self._stash, []
        for event in stash:
            self._h3_event(event)

    def _handle_capsules(self, data: bytes, ended: bool) -> None:
        """Parse capsules on the CONNECT stream; only CLOSE_WEBTRANSPORT_SESSION matters to us,
        other capsules are skipped as they stream in (never buffered whole)."""
        if self._capsule_skip:
            skipped = min(self._capsule_skip, len(data))
            self._capsule_skip -= skipped
            data = data[skipped:]
        self._capsules += data
        buf, pos = self._capsules, 0
        while True:
            head = _pull_varint(buf, pos)
            length = _pull_varint(buf, head[1]) if head else None
            if head is None or length is None:
                break
            ctype, start, end = head[0], length[1], length[1] + length[0]
            if ctype != CLOSE_WEBTRANSPORT_SESSION and end > len(buf):
                self._capsule_skip = end - len(buf)
                pos = len(buf)
                break
            if end > len(buf):
                break
            if ctype == CLOSE_WEBTRANSPORT_SESSION and end - start >= 4:
                code = int.from_bytes(buf[start : start + 4], "big")
                self._peer_closed(code, bytes(buf[start + 4 : end]).decode("utf-8", "replace"))
            pos = end
        del self._capsules[:pos]
        if ended:
            self._peer_closed(0, "")

    def _peer_closed(self, code: int, reason: str) -> None:
        """The peer ended the session (capsule, FIN or reset of the CONNECT stream): report it,
        finish our side of the CONNECT stream, and close the QUIC connection."""
        if self._peer_done:
            return
        self._peer_done = True
        self._closing = True
        if self.close_info is None:
            self._emit(SessionClosed(code, reason))
        if not self._fin_sent and seam.has_stream(self._quic, self.session_id):
            self._fin_sent = True
            try:
                self._h3.send_data(self.session_id, b"", end_stream=True)
            except (ProtocolError, ValueError, RuntimeError):  # e.g. reset; closing QUIC covers it
                pass
            self._conn.transmit()
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_connection(reason)
