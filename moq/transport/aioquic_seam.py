"""The one place that touches aioquic's private state (pinned: aioquic 1.7.x).

aioquic has no public knobs for what MoQ needs, so we reach into it, and only here:

* **stream-count limits** above its hard-coded 128 (one stream per request and per subgroup);
* **stream priorities** (§ Priorities): aioquic serves ``_streams_queue`` round-robin; we keep
  that list ordered by each stream's priority key whenever it changes (a priority is set, a
  stream is added, or aioquic rebuilds the list after a packet) so that reading it is free;
* **an O(1) send backlog**: unacknowledged stream bytes per connection, kept as a counter that
  stream writes raise and acknowledgements or resets lower, less the bytes in flight (the
  relay asks it per object to find subscribers that stopped reading);
* **small state probes** (a stream's reset state, the peer's datagram limit, the TLS peer
  certificate, HTTP/3 stream state for our own WebTransport streams) and the protocol's timer
  and transmit handles (:class:`ProtocolBase`).

:func:`self_test` checks every attribute used here on the installed aioquic and fails with a
clear message on a version that lacks them; a second QUIC backend would replace this module.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections import deque
from operator import attrgetter

import aioquic
import aioquic.tls
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import Buffer
from aioquic.h3.connection import FrameType, H3Connection
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from aioquic.quic.stream import QuicStream, QuicStreamReceiver, QuicStreamSender

SUPPORTED = "1.7."
MAX_STREAMS_BIDI = 1024
MAX_STREAMS_UNI = 8192
ACK_EVERY = 2  # ack-eliciting packets that make an ACK due at once (RFC 9000 § 13.2.2)
ACK_DELAY = 0.010  # otherwise: below the max_ack_delay (25 ms) aioquic advertises

_TOP: tuple = ()  # streams without a key (control, HTTP/3) are served first
QuicStream.moq_priority = _TOP  # type: ignore[attr-defined]  # a class default; keyed streams override it
_KEY = attrgetter("moq_priority")
_ONE_RTT = aioquic.tls.Epoch.ONE_RTT


class SeamError(RuntimeError):
    """The installed aioquic lacks private state this module relies on."""


# --- send backlog accounting -------------------------------------------------------------


class Backlog:
    """Unacknowledged stream bytes of one connection."""

    __slots__ = ("unacked",)

    def __init__(self) -> None:
        self.unacked = 0


QuicStreamSender.moq_backlog = None  # type: ignore[attr-defined]
QuicStreamSender.moq_hook = None  # type: ignore[attr-defined]
_orig_write = QuicStreamSender.write
_orig_delivery = QuicStreamSender.on_data_delivery
_orig_reset = QuicStreamSender.reset


def _write(self: QuicStreamSender, data: bytes, end_stream: bool = False) -> None:
    _orig_write(self, data, end_stream)
    acct = self.moq_backlog  # type: ignore[attr-defined]
    if acct is not None:
        acct.unacked += len(data)
    if self.moq_hook is not None:  # type: ignore[attr-defined]
        self.moq_hook()  # type: ignore[attr-defined]


def _on_data_delivery(self: QuicStreamSender, delivery, start: int, stop: int, fin: bool = False) -> None:
    acct = self.moq_backlog  # type: ignore[attr-defined]
    if acct is None:
        _orig_delivery(self, delivery, start, stop, fin)
    else:
        before = len(self._buffer)
        _orig_delivery(self, delivery, start, stop, fin)
        acct.unacked -= before - len(self._buffer)
    if self.moq_hook is not None:  # type: ignore[attr-defined]  # a loss to resend, or the end
        self.moq_hook()  # type: ignore[attr-defined]


def _reset(self: QuicStreamSender, error_code: int) -> None:
    acct = self.moq_backlog  # type: ignore[attr-defined]
    if acct is not None and self._reset_error_code is None and not self.is_finished:
        acct.unacked -= len(self._buffer)  # never acknowledged now: it leaves the backlog
        self.moq_backlog = None  # type: ignore[attr-defined]
    _orig_reset(self, error_code)
    if self.moq_hook is not None:  # type: ignore[attr-defined]
        self.moq_hook()  # type: ignore[attr-defined]


QuicStreamSender.write = _write  # type: ignore[method-assign]


# --- no per-packet walks over idle streams ------------------------------------------------------
# aioquic walks every stream on every packet it builds: the send queue (where finished streams
# are also discarded) and the whole stream table (for MAX_STREAM_DATA).  A publisher opening a
# stream per group leaves hundreds of half-received streams open at high rates, a subscriber
# hundreds of sent-but-unacknowledged ones, and those walks then dominate the relay's CPU.  So a
# stream with nothing to send is "parked" out of the send queue (when aioquic adds it, or puts
# it back after serving it) until new data, a loss, a reset, a STOP_SENDING or its end brings it
# back; and the MAX_STREAM_DATA pass sees only streams that received data (or lost such a frame)
# since it last looked.  Senders and receivers tell their connection through ``moq_hook``.

QuicStreamReceiver.moq_hook = None  # type: ignore[attr-defined]
_orig_handle_frame = QuicStreamReceiver.handle_frame
_orig_handle_reset = QuicStreamReceiver.handle_reset
_orig_stop = QuicStreamReceiver.stop


def _handle_frame(self: QuicStreamReceiver, frame):
    event = _orig_handle_frame(self, frame)
    if self.moq_hook is not None:  # type: ignore[attr-defined]
        self.moq_hook()  # type: ignore[attr-defined]
    return event


def _handle_reset(self: QuicStreamReceiver, **kwargs):
    event = _orig_handle_reset(self, **kwargs)
    if self.moq_hook is not None:  # type: ignore[attr-defined]
        self.moq_hook()  # type: ignore[attr-defined]
    return event


def _stop(self: QuicStreamReceiver, *args, **kwargs) -> None:
    _orig_stop(self, *args, **kwargs)
    if self.moq_hook is not None:  # type: ignore[attr-defined]
        self.moq_hook()  # type: ignore[attr-defined]


QuicStreamReceiver.handle_frame = _handle_frame  # type: ignore[method-assign]
QuicStreamReceiver.handle_reset = _handle_reset  # type: ignore[method-assign]
QuicStreamReceiver.stop = _stop  # type: ignore[method-assign]
QuicStream.moq_parked = False  # type: ignore[attr-defined]


def _parkable(stream: QuicStream) -> bool:
    """Nothing to send on it now (no data, FIN or RESET_STREAM pending; a receive-only stream's
    send side is absent), no STOP_SENDING owed, and not finished (finished ones must reach the
    queue, where aioquic discards them)."""
    sender, receiver = stream.sender, stream.receiver
    if receiver.stop_pending or (sender.is_finished and receiver.is_finished):
        return False
    if sender._reset_error_code is not None:
        return not sender.reset_pending
    return sender.is_finished or (len(sender._pending) == 0 and not sender._pending_eof)


class _StreamTable(dict):
    """aioquic's stream table.  ``values()``, which aioquic reads only for its per-packet
    MAX_STREAM_DATA pass, yields just the streams that may need one."""

    __slots__ = ("watch",)

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.watch: dict[QuicStream, None] = {}  # an ordered set

    def values(self):  # type: ignore[override]
        due = []
        watch = self.watch
        for stream in list(watch):
            local = stream.max_stream_data_local
            if local and (stream.receiver.highest_offset * 2 > local or stream.max_stream_data_local_sent != local):
                due.append(stream)  # stays watched until the frame is out and nothing more is due
            else:
                del watch[stream]
        return due
QuicStreamSender.on_data_delivery = _on_data_delivery  # type: ignore[method-assign]
QuicStreamSender.reset = _reset  # type: ignore[method-assign]


# --- the connection ------------------------------------------------------------------------


class _SendQueue(list):
    """aioquic's stream service order, kept sorted by priority key (stable: equal keys stay
    round-robin).  aioquic appends new streams, and after each packet replaces the list with
    the streams it did not serve and extends it with those it served."""

    __slots__ = ()

    def append(self, stream: QuicStream) -> None:
        if _parkable(stream):  # a receive-only stream: it comes back when it finishes or must stop
            stream.moq_parked = True  # type: ignore[attr-defined]
            return
        bisect.insort_right(self, stream, key=_KEY)

    def extend(self, streams) -> None:  # type: ignore[override]
        for stream in streams:
            self.append(stream)


class MoqQuicConnection(QuicConnection):
    """aioquic's connection with stream priorities, a send-backlog counter, and RFC 9000's
    acknowledgement policy (§ 13.2.2: at least every second ack-eliciting packet, else after
    a delay below the max_ack_delay we advertise) instead of aioquic's ACK 1 ms after every
    packet, which halves the ACKs a relay sends its publishers and receives from our clients."""

    moq_backlog: Backlog
    moq_unacked_eliciting = 0  # ack-eliciting 1-RTT packets received since our last ACK

    def _payload_received(self, context, plain, crypto_frame_required=False):  # type: ignore[override]
        result = super()._payload_received(context, plain, crypto_frame_required)
        if result[0] and context.epoch is _ONE_RTT:
            self.moq_unacked_eliciting += 1
        return result

    def receive_datagram(self, data: bytes, addr, now: float) -> None:
        super().receive_datagram(data, addr, now)
        if self.moq_unacked_eliciting >= ACK_EVERY:
            space = self._spaces.get(_ONE_RTT)
            if space is not None and space.ack_at is not None and space.ack_at > now:
                space.ack_at = now

    def _write_ack_frame(self, builder, space, now: float) -> None:  # type: ignore[override]
        super()._write_ack_frame(builder, space, now)
        if space is self._spaces.get(_ONE_RTT):
            self.moq_unacked_eliciting = 0

    @property  # type: ignore[override]
    def _streams_queue(self) -> list:
        return self.__dict__["_streams_queue"]

    @_streams_queue.setter
    def _streams_queue(self, value: list) -> None:
        if type(value) is not _SendQueue:
            value = _SendQueue(value)
            value.sort(key=_KEY)  # served streams went to the back: restore priority order
        self.__dict__["_streams_queue"] = value

    def _get_or_create_stream_for_send(self, stream_id: int) -> QuicStream:
        stream = self._streams.get(stream_id)
        if stream is None:
            count = len(self._streams)
            stream = super()._get_or_create_stream_for_send(stream_id)
            self._adopt(len(self._streams) - count)
        return stream

    def _get_or_create_stream(self, frame_type, stream_id: int) -> QuicStream:
        stream = self._streams.get(stream_id)
        if stream is None:  # opened by the peer, maybe with lower-numbered ones implicitly
            count = len(self._streams)
            stream = super()._get_or_create_stream(frame_type, stream_id)
            self._adopt(len(self._streams) - count)
        return stream

    def _adopt(self, created: int) -> None:
        """Give the streams aioquic just created (the last ones in its table) our hooks.  A hook
        names its stream by id, not by reference: a stream holding a hook that holds the stream
        is a reference cycle, and every stream (one per group and subscriber) would then be
        freed only by the garbage collector's full collections, which stall the event loop."""
        streams = self._streams
        for stream in itertools.islice(reversed(dict.values(streams)), created):
            sid = stream.stream_id
            stream.sender.moq_backlog = self.moq_backlog  # type: ignore[attr-defined]
            stream.receiver.moq_hook = functools.partial(self._receiver_changed, sid)  # type: ignore[attr-defined]
            stream.sender.moq_hook = functools.partial(self._sender_changed, sid)  # type: ignore[attr-defined]

    def _receiver_changed(self, sid: int) -> None:
        stream = dict.get(self._streams, sid)
        if stream is None:  # already discarded by aioquic
            return
        self._streams.watch[stream] = None
        if stream.moq_parked and not _parkable(stream):  # type: ignore[attr-defined]
            stream.moq_parked = False  # type: ignore[attr-defined]
            self.__dict__["_streams_queue"].append(stream)

    def _sender_changed(self, sid: int) -> None:
        stream = dict.get(self._streams, sid)
        if stream is not None and stream.moq_parked and not _parkable(stream):  # type: ignore[attr-defined]
            stream.moq_parked = False  # type: ignore[attr-defined]
            self.__dict__["_streams_queue"].append(stream)

    def _on_max_stream_data_delivery(self, delivery, stream: QuicStream) -> None:
        super()._on_max_stream_data_delivery(delivery, stream)
        self._streams.watch[stream] = None  # lost: aioquic sends it again when it next looks

    def send_backlog(self) -> int:
        """Stream bytes that wait in our buffers: written but neither acknowledged nor in
        flight.  A subscriber that stops reading (or acknowledging) makes it grow; a fast one
        with a large burst in flight on a wide link does not."""
        return max(0, self.moq_backlog.unacked - self._loss.bytes_in_flight)

    def nothing_to_send(self, now: float) -> bool:
        """True when a transmit now would build no packet: the handshake is over, no ACK is
        due yet (a delayed one waits for the timer), and no stream data, datagram, PING, probe
        or close waits.  A subscriber's ACKs, or every other packet of a publisher's, then cost
        no transmit pass.  (Control frames declared lost by an ACK, e.g. MAX_DATA, and raised
        flow-control limits go with the next transmit, which the next ACK, write or timer brings.)"""
        ack_at = self._spaces[_ONE_RTT].ack_at if self._handshake_confirmed else now
        return (
            self._handshake_confirmed
            and (ack_at is None or ack_at > now)
            and not self._datagrams_pending
            and not self._ping_pending
            and not self._probe_pending
            and not self._close_pending
            and self.moq_backlog.unacked <= self._loss.bytes_in_flight
        )

    def set_stream_priority(self, stream_id: int, key: tuple) -> None:
        """Send order among streams: lower keys first (§ Priorities)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.moq_priority == key:  # type: ignore[attr-defined]
            return
        queue = self.__dict__["_streams_queue"]
        try:
            queue.remove(stream)
        except ValueError:
            stream.moq_priority = key  # type: ignore[attr-defined]
            return
        stream.moq_priority = key  # type: ignore[attr-defined]
        queue.append(stream)


def tune_connection(quic: QuicConnection) -> MoqQuicConnection:
    """Turn a fresh aioquic connection into a :class:`MoqQuicConnection` before its transport
    parameters are sent: raise the peer's stream-count limits, add priorities and the backlog."""
    if type(quic) is QuicConnection:  # the server creates plain connections: same layout
        quic.__class__ = MoqQuicConnection
    assert isinstance(quic, MoqQuicConnection)
    quic.moq_backlog = Backlog()
    quic._ack_delay = ACK_DELAY
    quic._streams = _StreamTable(quic._streams)
    quic._adopt(len(quic._streams))
    quic._streams_queue = list(quic.__dict__.get("_streams_queue", ()))
    for limit, value in (
        (quic._local_max_streams_bidi, MAX_STREAMS_BIDI),
        (quic._local_max_streams_uni, MAX_STREAMS_UNI),
    ):
        limit.value = limit.sent = value
    return quic


# --- probes ----------------------------------------------------------------------------------


def release(quic: QuicConnection) -> None:
    """The connection is over and will never be driven again: break its biggest reference
    cycles (the frame-handler table of bound methods, our stream hooks), so most of it is freed
    at once rather than left to a full garbage collection (a connection churn feeds those)."""
    quic.__dict__.pop("_QuicConnection__frame_handlers", None)
    for stream in dict.values(quic._streams):
        stream.receiver.moq_hook = stream.sender.moq_hook = None  # type: ignore[attr-defined]


def send_dropped(quic: QuicConnection, stream_id: int) -> bool:
    """True when data for this stream must be dropped: its sending side was reset (by us, or
    by aioquic answering the peer's STOP_SENDING) or the stream is long gone."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return quic._stream_is_discarded(stream_id)
    return stream.sender._reset_error_code is not None


def pto_count(quic: QuicConnection) -> int:
    """Probe timeouts in a row without an acknowledgement from the peer (aioquic's recovery)."""
    return quic._loss._pto_count


def has_stream(quic: QuicConnection, stream_id: int) -> bool:
    return stream_id in quic._streams


def remote_max_datagram_frame_size(quic: QuicConnection) -> int | None:
    return quic._remote_max_datagram_frame_size


def peer_certificate(quic: QuicConnection) -> object | None:
    """The certificate the peer presented (aioquic's TLS context keeps it privately)."""
    return getattr(getattr(quic, "tls", None), "_peer_certificate", None)


def mark_webtransport_stream(h3: H3Connection, stream_id: int, session_id: int) -> None:
    """aioquic's H3 does not know that a bidi stream *we* opened carries WebTransport, so it
    would parse the peer's bytes on it as HTTP/3 frames: give it the WT frame type and session."""
    with h3._get_or_create_stream(stream_id) as stream:
        stream.frame_type = FrameType.WEBTRANSPORT_STREAM
        stream.session_id = session_id


def h3_stream_session(h3: H3Connection, stream_id: int) -> int | None | bool:
    """The WebTransport session of an H3-known stream, or False when H3 has no state for it."""
    stream = h3._stream.get(stream_id)
    return False if stream is None else stream.session_id


def h3_control_streams(h3: H3Connection) -> tuple:
    return (
        h3._local_control_stream_id,
        h3._local_encoder_stream_id,
        h3._local_decoder_stream_id,
        h3._peer_control_stream_id,
        h3._peer_encoder_stream_id,
        h3._peer_decoder_stream_id,
    )


def h3_sending_ended(h3: H3Connection, stream_id: int) -> None:
    """Let H3 forget a finished bidi WT stream (it only frees streams ended both ways)."""
    stream = h3._stream.get(stream_id)
    if stream is not None:
        stream.sending_ended = True
        if stream.is_ended():
            del h3._stream[stream_id]


# --- the listener --------------------------------------------------------------------------------


class ListenerBase(QuicServer):
    """aioquic's server with an admission hook and paced handshakes.

    :meth:`admit` is asked, before aioquic creates anything, about each Initial that would
    start a connection (with Retry on, only those that carry a token); a refusal drops the
    datagram.  Admitted ones wait in a bounded queue and start one per event-loop turn, so a
    burst of handshakes (a few ms of TLS each) is interleaved with everyone else's traffic
    instead of stalling it for their sum.  ``incoming`` is the address of the datagram being
    handled, for ``create_protocol``."""

    incoming: tuple | None = None
    max_queued = 256  # Initials waiting for their turn; more are dropped (the client retransmits)

    def admit(self, addr: tuple) -> bool:
        return True

    def datagram_received(self, data, addr) -> None:  # type: ignore[override]
        if len(data) >= SMALLEST_MAX_DATAGRAM_SIZE and data[0] & 0x80:  # a long header: maybe a new connection
            try:
                header = pull_quic_header(Buffer(data=data), host_cid_length=self._configuration.connection_id_length)
            except ValueError:
                return
            if (header.packet_type == QuicPacketType.INITIAL and header.destination_cid not in self._protocols
                    and header.version in self._configuration.supported_versions
                    and (self._retry is None or header.token)):
                queue = self.__dict__.setdefault("moq_queued", deque())
                if len(queue) < self.max_queued and self.admit(addr):
                    queue.append((data, addr))
                    if len(queue) == 1:
                        self._loop.call_soon(self._next_initial)
                return
        self.incoming = addr
        super().datagram_received(data, addr)

    def forget(self, protocol: QuicConnectionProtocol) -> None:
        """Unregister a connection closed without aioquic's knowledge (aborted: no closing
        period, so aioquic never reports its end and would keep routing to it forever)."""
        self._connection_terminated(protocol)

    def _next_initial(self) -> None:
        queue = self.__dict__["moq_queued"]
        if not queue or self._transport is None or self._transport.is_closing():
            queue.clear()
            return
        data, addr = queue.popleft()
        self.incoming = addr
        try:
            super().datagram_received(data, addr)
        finally:
            if queue:
                self._loop.call_soon(self._next_initial)


# --- the asyncio protocol ----------------------------------------------------------------------


class ProtocolBase(QuicConnectionProtocol):
    """aioquic's asyncio protocol with its private handles exposed under public names.

    Once ``dead`` is set (the connection is gone or forgotten), timers do nothing."""

    dead = False

    def _handle_timer(self) -> None:
        if not self.dead:
            super()._handle_timer()

    @property
    def quic(self) -> QuicConnection:
        return self._quic

    @property
    def loop(self):
        return self._loop

    @property
    def udp_transport(self):
        return self._transport

    @property
    def closed_event(self):
        return self._closed

    def process_events(self) -> None:
        self._process_events()

    @property
    def transmit_scheduled(self) -> bool:
        return self._transmit_task is not None

    def transmit_soon(self) -> None:
        """One transmit for everything queued during this event-loop turn."""
        if self._transmit_task is None:
            self._transmit_task = self._loop.call_soon(self.transmit)

    def cancel_handles(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transmit_task is not None:
            self._transmit_task.cancel()
            self._transmit_task = None

    def take_transmit(self) -> None:
        """Called at the start of transmit(): the scheduled transmit (if any) is this one."""
        self._transmit_task = None

    def arm_timer(self) -> None:
        """Arm aioquic's timer, lazily: a timer already due no later than the new deadline is
        kept (aioquic's handle_timer ignores deadlines not yet reached), which spares a timer
        cancel and re-arm on nearly every transmit."""
        timer_at = self._quic.get_timer()
        if timer_at is None:
            return
        if self._timer is not None:
            if self._timer_at <= timer_at:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at


# --- self-test ---------------------------------------------------------------------------------


def self_test() -> None:
    """Raise :class:`SeamError` unless the installed aioquic has everything used above."""
    problems: list[str] = []
    if not aioquic.__version__.startswith(SUPPORTED):
        problems.append(f"aioquic {aioquic.__version__} installed, {SUPPORTED}x required")
    quic = QuicConnection(configuration=QuicConfiguration(is_client=True))
    for name in ("_streams", "_streams_queue", "_local_max_streams_bidi", "_local_max_streams_uni",
                 "_remote_max_datagram_frame_size", "_stream_is_discarded", "_get_or_create_stream_for_send",
                 "_get_or_create_stream", "_loss", "_handshake_confirmed", "_spaces", "_datagrams_pending",
                 "_ping_pending", "_probe_pending", "_close_pending", "_ack_delay", "_payload_received",
                 "_write_ack_frame"):
        if not hasattr(quic, name):
            problems.append(f"QuicConnection.{name}")
    if "_QuicConnection__frame_handlers" not in quic.__dict__:
        problems.append("QuicConnection.__frame_handlers")
    for limit in ("_local_max_streams_bidi", "_local_max_streams_uni"):
        if hasattr(quic, limit) and not all(hasattr(getattr(quic, limit), a) for a in ("value", "sent")):
            problems.append(f"QuicConnection.{limit}.value/.sent")
    for name in ("bytes_in_flight", "_pto_count"):
        if not isinstance(getattr(getattr(quic, "_loss", None), name, None), int):
            problems.append(f"QuicConnection._loss.{name}")
    if "_peer_certificate" not in aioquic.tls.Context.__init__.__code__.co_names:
        problems.append("tls.Context._peer_certificate")
    receiver = QuicStreamReceiver(stream_id=3, readable=True)
    for name in ("handle_frame", "handle_reset", "stop", "is_finished", "stop_pending", "highest_offset"):
        if not hasattr(receiver, name):
            problems.append(f"QuicStreamReceiver.{name}")
    stream = QuicStream(stream_id=3)
    for name in ("max_stream_data_local", "max_stream_data_local_sent"):
        if not hasattr(stream, name):
            problems.append(f"QuicStream.{name}")
    if not hasattr(QuicConnection, "_on_max_stream_data_delivery"):
        problems.append("QuicConnection._on_max_stream_data_delivery")
    sender = QuicStreamSender(stream_id=2, writable=True)
    for name in ("_buffer", "_reset_error_code", "is_finished", "_pending", "_pending_eof", "reset_pending"):
        if not hasattr(sender, name):
            problems.append(f"QuicStreamSender.{name}")
    assigned = QuicConnectionProtocol.__init__.__code__.co_names  # instance attributes set there
    for name in ("_quic", "_loop", "_transport", "_timer", "_timer_at", "_transmit_task", "_closed"):
        if name not in assigned:
            problems.append(f"QuicConnectionProtocol.{name}")
    if not hasattr(QuicServer, "_connection_terminated"):
        problems.append("QuicServer._connection_terminated()")
    for name in ("_handle_timer", "_process_events", "transmit"):
        if not hasattr(QuicConnectionProtocol, name):
            problems.append(f"QuicConnectionProtocol.{name}()")
    h3 = H3Connection(QuicConnection(configuration=QuicConfiguration(is_client=True)))
    for name in ("_get_or_create_stream", "_stream", "_local_control_stream_id", "_local_encoder_stream_id",
                 "_local_decoder_stream_id", "_peer_control_stream_id", "_peer_encoder_stream_id",
                 "_peer_decoder_stream_id"):
        if not hasattr(h3, name):
            problems.append(f"H3Connection.{name}")
    for name in ("_protocols", "_retry", "_configuration", "_loop", "_transport"):
        if name not in QuicServer.__init__.__code__.co_names:
            problems.append(f"QuicServer.{name}")
    if problems:
        raise SeamError("moq.transport needs private aioquic state that is missing: " + ", ".join(problems))
