"""Two sans-IO sessions wired back to back in memory, QUIC stream-id rules included."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from moq.session import Role, Session, SessionConfig
from moq.session import events as ev
from moq.wire import control as c
from moq.wire.control import SetupOption

#: the first unidirectional stream each side opens is its control stream
CLIENT_CONTROL = 2
SERVER_CONTROL = 3


class StreamIds:
    """QUIC stream ids: bit 0 = initiator (server), bit 1 = unidirectional."""

    def __init__(self, server: bool) -> None:
        self._bidi = itertools.count(1 if server else 0, 4)
        self._uni = itertools.count(3 if server else 2, 4)

    def __call__(self, unidirectional: bool) -> int:
        return next(self._uni if unidirectional else self._bidi)


class Pair:
    def __init__(self, version: str = "moqt-18", *, webtransport: bool = False, client_config=None,
                 server_config=None, start: bool = True) -> None:
        self.client_ids = StreamIds(False)
        self.server_ids = StreamIds(True)
        self.client = Session(Role.CLIENT, version, self.client_ids, webtransport=webtransport,
                              config=client_config or SessionConfig(path="/moq"))
        self.server = Session(Role.SERVER, version, self.server_ids, webtransport=webtransport,
                              config=server_config)
        self.now = 0.0
        self.log: list[tuple[str, object]] = []  # (sender, action) for assertions
        if start:
            self.client.start(self.now)
            self.server.start(self.now)
            self.pump()

    def pump(self, drop_datagrams: bool = False, chunk: int | None = None) -> None:
        """Move actions both ways until both sides are quiet.  `chunk` splits every
        stream write into pieces of at most that many bytes (1 = byte by byte)."""
        for _ in range(10_000):
            moved = self._move(self.client, self.server, "client", drop_datagrams, chunk)
            moved |= self._move(self.server, self.client, "server", drop_datagrams, chunk)
            if not moved:
                return
        raise AssertionError("sessions keep talking")

    def _move(self, src: Session, dst: Session, name: str, drop_datagrams: bool, chunk: int | None = None) -> bool:
        actions = src.take_actions()
        for a in actions:
            self.log.append((name, a))
            self._apply(dst, a, drop_datagrams, chunk)
        return bool(actions)

    def _apply(self, dst: Session, a: object, drop_datagrams: bool = False, chunk: int | None = None) -> None:
        if isinstance(a, ev.SendStreamData):
            data = bytes(a.data)
            if chunk and len(data) > chunk:
                pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
                for piece in pieces[:-1]:
                    dst.receive_stream_data(a.stream_id, piece, False, self.now)
                data = pieces[-1]
            dst.receive_stream_data(a.stream_id, data, a.end_stream, self.now)
        elif isinstance(a, ev.ResetStream):
            dst.receive_stream_reset(a.stream_id, a.error_code, self.now)
        elif isinstance(a, ev.StopSending):
            dst.receive_stop_sending(a.stream_id, a.error_code, self.now)
        elif isinstance(a, ev.SendDatagram):
            if not drop_datagrams:
                dst.receive_datagram(a.data, self.now)
        elif isinstance(a, ev.CloseSession):
            dst.connection_lost(a.error_code, a.reason)

    @staticmethod
    def events(session: Session) -> list:
        out = []
        while (e := session.next_event()) is not None:
            out.append(e)
        return out

    # --- helpers for reordering and crafted input ------------------------------------
    def name(self, session: Session) -> str:
        return "client" if session is self.client else "server"

    def peer(self, session: Session) -> Session:
        return self.server if session is self.client else self.client

    def take(self, session: Session) -> list:
        """Take `session`'s pending actions without delivering them (they are logged).
        Stream priorities are transport hints, not wire data: logged, not returned."""
        actions = session.take_actions()
        self.log.extend((self.name(session), a) for a in actions)
        return [a for a in actions if not isinstance(a, ev.SetStreamPriority)]

    def deliver(self, actions: Iterable, to: Session) -> None:
        """Deliver actions taken earlier with `take()` (in the given order)."""
        for a in actions:
            self._apply(to, a)

    def inject(self, dst: Session, stream_id: int, data: bytes, fin: bool = False) -> None:
        """Crafted bytes from `dst`'s peer on `stream_id`, then pump."""
        dst.receive_stream_data(stream_id, data, fin, self.now)
        self.pump()

    def fresh_bidi(self, sender: Session) -> int:
        """A bidirectional stream id the `sender` has not used yet."""
        return (self.client_ids if sender is self.client else self.server_ids)(False)

    def fresh_uni(self, sender: Session) -> int:
        return (self.client_ids if sender is self.client else self.server_ids)(True)

    def sent(self, sender: Session | str, kind: type | tuple[type, ...] = object) -> list:
        """Actions of type `kind` that `sender` emitted so far (delivered or taken)."""
        name = sender if isinstance(sender, str) else self.name(sender)
        return [a for s, a in self.log if s == name and isinstance(a, kind)]

    def stream_bytes(self, sender: Session, stream_id: int) -> bytes:
        return b"".join(bytes(a.data) for a in self.sent(sender, ev.SendStreamData) if a.stream_id == stream_id)

    def fin_sent(self, sender: Session, stream_id: int) -> bool:
        return any(a.stream_id == stream_id and a.end_stream for a in self.sent(sender, ev.SendStreamData))

    def reset_sent(self, sender: Session, stream_id: int) -> bool:
        return any(a.stream_id == stream_id for a in self.sent(sender, ev.ResetStream))


def close_code(session: Session) -> int | None:
    """The code `session` closed with locally (None if open or closed by its peer)."""
    if session.closed is None or session.closed.by_peer:
        return None
    return session.closed.error_code


def setup_bytes(*options: tuple[int, int | bytes], implementation: bytes | None = b"peer/1") -> bytes:
    """The start of a control stream: a SETUP message (its type is the stream type)."""
    opts = list(options)
    if implementation is not None:
        opts.append((SetupOption.MOQT_IMPLEMENTATION, implementation))
    return c.Setup(tuple(opts)).encode()


def decode_messages(data: bytes) -> list:
    from moq.wire.framing import MessageDecoder

    return MessageDecoder().feed(data)


def of(events: Iterable, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def subscribed(p: Pair, namespace: tuple[bytes, ...] = (b"live",), name: bytes = b"video", *,
               subscriber: Session | None = None, **accept) -> tuple[int, int]:
    """client SUBSCRIBE → server SUBSCRIBE_OK (or the reverse roles); returns (request_id,
    track_alias) with both sides' events drained."""
    sub = subscriber or p.client
    pub = p.peer(sub)
    rid = sub.subscribe(namespace, name)
    p.pump()
    alias = pub.accept_subscribe(rid, **accept)
    p.pump()
    p.events(sub)
    p.events(pub)
    return rid, alias


def request_stream(p: Pair, requester: Session, request_id: int) -> int:
    """The bidirectional stream id carrying `requester`'s request."""
    return requester.request(request_id).stream_id
