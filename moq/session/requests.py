"""Per-request state and the table of which messages may appear on a request stream.

Every request lives on its own bidirectional stream (§ Session initialization); the
requester sends the first message, the responder answers.  The tables below encode
§ Message Types' "Request" column for each direction and request kind.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from ..wire import control as c
from ..wire.framing import MessageDecoder
from ..wire.types import Location, Parameters, TrackNamespace


class Kind(Enum):
    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    FETCH = "fetch"
    TRACK_STATUS = "track_status"
    PUBLISH_NAMESPACE = "publish_namespace"
    SUBSCRIBE_NAMESPACE = "subscribe_namespace"
    SUBSCRIBE_TRACKS = "subscribe_tracks"


KIND_OF = {
    c.Subscribe: Kind.SUBSCRIBE,
    c.Publish: Kind.PUBLISH,
    c.Fetch: Kind.FETCH,
    c.TrackStatus: Kind.TRACK_STATUS,
    c.PublishNamespace: Kind.PUBLISH_NAMESPACE,
    c.SubscribeNamespace: Kind.SUBSCRIBE_NAMESPACE,
    c.SubscribeTracks: Kind.SUBSCRIBE_TRACKS,
}

_OK_ERR = (c.RequestOk, c.RequestError)

#: first message the responder may send, per kind
FIRST_RESPONSE: dict[Kind, tuple[type, ...]] = {
    Kind.SUBSCRIBE: (c.SubscribeOk, c.RequestError),
    Kind.PUBLISH: (c.PublishOk, c.RequestOk, c.RequestError),
    Kind.FETCH: (c.FetchOk, c.RequestError),
    Kind.TRACK_STATUS: _OK_ERR,
    Kind.PUBLISH_NAMESPACE: _OK_ERR,
    Kind.SUBSCRIBE_NAMESPACE: _OK_ERR,
    Kind.SUBSCRIBE_TRACKS: _OK_ERR,
}

#: what the responder may send after its first response
LATER_FROM_RESPONDER: dict[Kind, tuple[type, ...]] = {
    Kind.SUBSCRIBE: (c.PublishDone, *_OK_ERR, c.GoAway),
    Kind.PUBLISH: (c.RequestUpdate, c.GoAway),
    Kind.FETCH: (*_OK_ERR, c.GoAway),
    Kind.TRACK_STATUS: (),
    Kind.PUBLISH_NAMESPACE: (*_OK_ERR, c.GoAway),
    Kind.SUBSCRIBE_NAMESPACE: (c.Namespace, c.NamespaceDone, *_OK_ERR, c.GoAway),
    Kind.SUBSCRIBE_TRACKS: (c.PublishBlocked, *_OK_ERR, c.GoAway),
}

#: what the requester may send after its request
LATER_FROM_REQUESTER: dict[Kind, tuple[type, ...]] = {
    Kind.SUBSCRIBE: (c.RequestUpdate, c.GoAway),
    Kind.PUBLISH: (c.PublishDone, *_OK_ERR, c.GoAway),
    Kind.FETCH: (c.RequestUpdate, c.GoAway),
    Kind.TRACK_STATUS: (),
    Kind.PUBLISH_NAMESPACE: (c.RequestUpdate, c.GoAway),
    Kind.SUBSCRIBE_NAMESPACE: (c.RequestUpdate, c.GoAway),
    Kind.SUBSCRIBE_TRACKS: (c.RequestUpdate, c.GoAway),
}


class State(Enum):
    PENDING = "pending"
    ESTABLISHED = "established"
    DONE = "done"


@dataclass(eq=False, slots=True)
class Request:
    """One request, either ours (`outgoing`) or the peer's."""

    request_id: int
    kind: Kind
    stream_id: int
    outgoing: bool
    message: c.Message
    state: State = State.PENDING
    decoder: MessageDecoder = field(default_factory=MessageDecoder)
    responded: bool = False  # the responder's first message has been sent/received
    goaway_seen: bool = False
    send_closed: bool = False
    recv_closed: bool = False
    # subscriptions (SUBSCRIBE or PUBLISH) ------------------------------------------
    track_alias: int | None = None
    forward: int = 1
    default_priority: int = 128
    group_order: int = 1  # the subscription's group order (subscriber's choice, else the publisher's)
    largest: Location | None = None
    data_streams: set[int] = field(default_factory=set)  # our open data streams
    streams_opened: int = 0
    # updates: IDs of updates sent by the side that may update, awaiting answers (FIFO)
    updates_in_flight: deque[int] = field(default_factory=deque)
    # namespace subscriptions: suffixes announced so far (to police NAMESPACE_DONE)
    namespaces: set[TrackNamespace] = field(default_factory=set)
    parameters: Parameters = field(default_factory=Parameters)

    @property
    def is_subscription(self) -> bool:
        return self.kind in (Kind.SUBSCRIBE, Kind.PUBLISH)

    @property
    def we_publish(self) -> bool:
        """We are the publisher of this subscription's objects."""
        return (self.kind is Kind.SUBSCRIBE and not self.outgoing) or (self.kind is Kind.PUBLISH and self.outgoing)

    def full_track_name(self) -> tuple[TrackNamespace, bytes] | None:
        m = self.message
        if isinstance(m, (c.Subscribe, c.Publish, c.TrackStatus)):
            return m.track_namespace, m.track_name
        if isinstance(m, c.Fetch) and m.standalone is not None:
            return m.standalone.track_namespace, m.standalone.track_name
        return None

    @property
    def subscriber_priority(self) -> int:
        p = self.parameters.subscriber_priority
        return 128 if p is None else p

    def allowed_from_peer(self) -> tuple[type, ...]:
        if self.outgoing:  # the peer is the responder
            return LATER_FROM_RESPONDER[self.kind] if self.responded else FIRST_RESPONSE[self.kind]
        return LATER_FROM_REQUESTER[self.kind]


def end_before_start(start: Location, end: Location) -> bool:
    """A FETCH (or FETCH_OK) End Location that is smaller than its Start Location (§ FETCH:
    "End Location MUST specify the same or a larger Location"; § FETCH_OK: the receiver
    closes the session).  End {g, 0} means all of group g, so it only precedes a Start in
    a later group: {5, 0} after Start {5, 3} is the rest of group 5, a valid range."""
    if end.object == 0:
        return end.group < start.group
    return end < start


def prefixes_overlap(a: TrackNamespace, b: TrackNamespace) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]
