"""Two sans-IO sessions wired back to back in memory, QUIC stream-id rules included."""

from __future__ import annotations

import itertools

from moq.session import Role, Session, SessionConfig
from moq.session import events as ev


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
        self.client = Session(Role.CLIENT, version, StreamIds(False), webtransport=webtransport,
                              config=client_config or SessionConfig(path="/moq"))
        self.server = Session(Role.SERVER, version, StreamIds(True), webtransport=webtransport,
                              config=server_config)
        self.now = 0.0
        self.log: list[tuple[str, object]] = []  # (sender, action) for assertions
        if start:
            self.client.start(self.now)
            self.server.start(self.now)
            self.pump()

    def pump(self, drop_datagrams: bool = False) -> None:
        for _ in range(10_000):
            moved = self._move(self.client, self.server, "client", drop_datagrams)
            moved |= self._move(self.server, self.client, "server", drop_datagrams)
            if not moved:
                return
        raise AssertionError("sessions keep talking")

    def _move(self, src: Session, dst: Session, name: str, drop_datagrams: bool) -> bool:
        actions = src.take_actions()
        for a in actions:
            self.log.append((name, a))
            if isinstance(a, ev.SendStreamData):
                dst.receive_stream_data(a.stream_id, bytes(a.data), a.end_stream, self.now)
            elif isinstance(a, ev.ResetStream):
                dst.receive_stream_reset(a.stream_id, a.error_code, self.now)
            elif isinstance(a, ev.StopSending):
                dst.receive_stop_sending(a.stream_id, a.error_code, self.now)
            elif isinstance(a, ev.SendDatagram):
                if not drop_datagrams:
                    dst.receive_datagram(a.data, self.now)
            elif isinstance(a, ev.CloseSession):
                dst.connection_lost(a.error_code, a.reason)
        return bool(actions)

    @staticmethod
    def events(session: Session) -> list:
        out = []
        while (e := session.next_event()) is not None:
            out.append(e)
        return out
