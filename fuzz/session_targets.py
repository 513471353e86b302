"""Fuzz targets for the sans-IO session: bytes in, never an exception out.

A peer's bad input must end as a close with one of the draft's Session Termination codes
(and exactly one CloseSession action carrying it), a request error, or nothing.  The pair
of sessions is tests/session/pair.py's (real stream-id rules, both sides live).
"""

from __future__ import annotations

from moq.errors import SessionErrorCode
from moq.session import Role, Session, SessionConfig
from moq.session import events as ev
from moq.wire.data import STREAM_TYPE_SETUP
from moq.wire.varint import encode_varint
from tests.session.pair import CLIENT_CONTROL, SERVER_CONTROL, Pair, StreamIds, subscribed

from .targets import PROTOCOL_ERRORS, Mode

CODES = frozenset(int(code) for code in SessionErrorCode)
RECORD = 3  # selector, flags, length; then `length` bytes


def never_raises(fn):
    """A session turns a protocol error into a close: one escaping is a bug here (the
    decoder targets' `check` lets protocol errors pass, so they are turned into failures)."""
    def target(data: bytes) -> None:
        try:
            fn(data)
        except PROTOCOL_ERRORS as exc:
            raise AssertionError(f"{exc!r} escaped the session") from exc

    target.__doc__ = fn.__doc__
    target.__name__ = fn.__name__
    return target


def assert_sane(session: Session, actions: list) -> None:
    """Open, closed by its peer, or closed locally with a draft code it also sent once."""
    closes = [a.error_code for a in actions if isinstance(a, ev.CloseSession)]
    if session.closed is None or session.closed.by_peer:
        assert closes == [], closes
        return
    assert session.closed.error_code in CODES, session.closed
    assert closes == [session.closed.error_code], (closes, session.closed)


@never_raises
def fuzz_setup(data: bytes) -> None:
    """The peer's control stream after its type (0x2F00, SETUP's): Length, SETUP's options,
    then more messages.  A server's view (PATH/AUTHORITY checks), or with the flag a
    client's; the mode's FIN closes the control stream (a violation)."""
    mode = Mode(data)
    role = Role.CLIENT if mode.flag else Role.SERVER
    session = Session(role, "moqt-18", StreamIds(role is Role.SERVER), config=SessionConfig(path="/moq"))
    session.start(0.0)
    sid = SERVER_CONTROL if role is Role.CLIENT else CLIENT_CONTROL
    pieces = mode.pieces(encode_varint(STREAM_TYPE_SETUP) + mode.data)
    actions: list = []
    for i, piece in enumerate(pieces):
        session.receive_stream_data(sid, piece, mode.fin and i == len(pieces) - 1, 0.0)
        actions += session.take_actions()
    while session.next_event() is not None:
        pass
    assert_sane(session, actions)


def _stream_id(p: Pair, dst: Session, sel: int) -> int:
    """0-3: the sender's bidi streams by index; 4-7: its uni streams; 8-11: the receiver's."""
    base = 1 if p.peer(dst) is p.server else 0
    sel %= 12
    if sel < 4:
        return base + 4 * sel
    if sel < 8:
        return base + 2 + 4 * (sel - 4)
    return (1 - base) + 4 * (sel - 8)


@never_raises
def fuzz_session(data: bytes) -> None:
    """Records of (selector, flags, length, bytes) delivered to an established pair with one
    subscription.  Flags: 0x04 to the client (else the server); 0x08 a datagram; 0x10 one
    second passes and timers run; low bits 0 data, 1 data+FIN, 2 RESET_STREAM, 3 STOP_SENDING."""
    p = Pair()
    subscribed(p)
    pos = 0
    while pos + RECORD <= len(data):
        sel, flags, n = data[pos], data[pos + 1], data[pos + 2]
        chunk = data[pos + RECORD:pos + RECORD + n]
        pos += RECORD + n
        dst = p.client if flags & 0x04 else p.server
        if flags & 0x10:
            p.now += 1.0
            dst.handle_timer(p.now)
            dst.next_timer()
        if flags & 0x08:
            dst.receive_datagram(chunk, p.now)
        else:
            sid = _stream_id(p, dst, sel)
            how = flags & 3
            if how == 2:
                dst.receive_stream_reset(sid, chunk[0] if chunk else 0, p.now)
            elif how == 3:
                dst.receive_stop_sending(sid, chunk[0] if chunk else 0, p.now)
            else:
                dst.receive_stream_data(sid, chunk, how == 1, p.now)
        p.pump()
        p.events(p.client)
        p.events(p.server)
    for session in (p.client, p.server):
        assert_sane(session, p.sent(session, ev.CloseSession))


MEMORY_BUDGET = 64_000  # bytes a session may keep from at most MAX_LEN (4 KiB) of data-plane input
HOLD_LIMIT = 8192  # max_alias_wait_bytes here: data for unknown aliases is held up to this, by design


@never_raises
def fuzz_data_memory(data: bytes) -> None:
    """Data-plane input only (unidirectional streams and datagrams to the client, records as in
    `session`), with every event drained: what the session still holds afterwards, traced,
    stays under MEMORY_BUDGET (~15x the largest input), so no input is amplified in memory.
    (Objects for a not-yet-known alias are held by design, up to max_alias_wait_bytes, here
    HOLD_LIMIT: that limit must hold in real bytes, not only in payload bytes.)"""
    import tracemalloc

    p = Pair(client_config=SessionConfig(path="/moq", max_alias_wait_bytes=HOLD_LIMIT))
    subscribed(p)
    p.events(p.client)
    tracemalloc.start()
    try:
        pos = 0
        while pos + RECORD <= len(data):
            sel, flags, n = data[pos], data[pos + 1], data[pos + 2]
            chunk = data[pos + RECORD:pos + RECORD + n]
            pos += RECORD + n
            if flags & 0x08:
                p.client.receive_datagram(chunk, p.now)
            else:
                sid = 3 + 4 * (1 + sel % 8)  # the server's unidirectional streams after its control stream
                p.client.receive_stream_data(sid, chunk, bool(flags & 1), p.now)
            p.events(p.client)
        p.client.take_actions()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < MEMORY_BUDGET, f"{held} bytes held after {len(data)} bytes of input"
