"""What the sans-IO session emits: transport actions (for the adapter) and application
events (for the library API, relay, publisher, viewer).  All slotted dataclasses; the
events are frozen.  The actions are not: they are made per object and subscriber on the
relay's hot path, consumed once by the adapter, and a frozen dataclass costs four times
as much to build.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire.control import FetchOk, Message, RequestError
from ..wire.types import KeyValuePairs, Parameters, TrackNamespace

# --- actions: the transport adapter carries these out in order ------------------------


@dataclass(slots=True)
class SendStreamData:
    stream_id: int
    data: bytes | memoryview
    end_stream: bool = False


@dataclass(slots=True)
class ResetStream:
    stream_id: int
    error_code: int


@dataclass(slots=True)
class StopSending:
    stream_id: int
    error_code: int


@dataclass(slots=True)
class SendDatagram:
    data: bytes


@dataclass(slots=True)
class SetStreamPriority:
    """Send order among our streams (§ Priorities): lower keys go first.  Keys compare as
    tuples: control < requests < objects (subscriber priority, publisher priority, group
    in the subscription's group order, subgroup)."""

    stream_id: int
    key: tuple


@dataclass(slots=True)
class CloseSession:
    error_code: int
    reason: str


Action = SendStreamData | ResetStream | StopSending | SendDatagram | SetStreamPriority | CloseSession


# --- events for the application ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetupCompleted:
    """Both SETUPs exchanged.  `path`/`authority` are what the client asked for."""

    version: str
    path: str
    authority: str
    peer_implementation: str


@dataclass(frozen=True, slots=True)
class SessionTerminated:
    error_code: int
    reason: str
    by_peer: bool


@dataclass(frozen=True, slots=True)
class GoawayReceived:
    new_session_uri: str
    timeout_ms: int
    request_id: int | None


# incoming requests (we are the responder) ------------------------------------------


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """A request the peer opened; answer it with the session's accept/reject calls."""

    request_id: int
    message: Message


@dataclass(frozen=True, slots=True)
class SubscribeRequested(IncomingRequest):
    pass


@dataclass(frozen=True, slots=True)
class PublishRequested(IncomingRequest):
    pass


@dataclass(frozen=True, slots=True)
class FetchRequested(IncomingRequest):
    """For a joining fetch, `message.joining` refers to one of the peer's subscriptions."""


@dataclass(frozen=True, slots=True)
class TrackStatusRequested(IncomingRequest):
    pass


@dataclass(frozen=True, slots=True)
class PublishNamespaceRequested(IncomingRequest):
    pass


@dataclass(frozen=True, slots=True)
class SubscribeNamespaceRequested(IncomingRequest):
    pass


@dataclass(frozen=True, slots=True)
class SubscribeTracksRequested(IncomingRequest):
    pass


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """The session itself answered a peer request with REQUEST_ERROR (limits, GOAWAY,
    reserved namespace, duplicate subscription, ...): for logs and metrics."""

    request_id: int
    error_code: int
    reason: str
    message: Message


@dataclass(frozen=True, slots=True)
class RequestUpdateReceived:
    """The peer updated one of its requests; answer with accept_update/reject_update."""

    request_id: int  # the request being updated
    update_id: int  # the REQUEST_UPDATE's own request ID
    parameters: Parameters


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    """The peer cancelled a request (reset / STOP_SENDING on its request stream):
    an unsubscribe, a withdrawn namespace, a cancelled fetch, ..."""

    request_id: int
    error_code: int


# responses to our requests ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscribeAccepted:
    request_id: int
    track_alias: int
    parameters: Parameters
    track_properties: KeyValuePairs


@dataclass(frozen=True, slots=True)
class FetchAccepted:
    request_id: int
    message: FetchOk


@dataclass(frozen=True, slots=True)
class RequestAccepted:
    """REQUEST_OK / PUBLISH_OK for one of our requests (or for one of our updates)."""

    request_id: int
    parameters: Parameters
    track_properties: KeyValuePairs
    update_id: int | None = None


@dataclass(frozen=True, slots=True)
class RequestRejected:
    request_id: int
    error: RequestError
    update_id: int | None = None


@dataclass(frozen=True, slots=True)
class RequestEnded:
    """The peer closed or reset one of our requests' streams without an error message
    (e.g. a PUBLISH_NAMESPACE whose acceptance was revoked)."""

    request_id: int
    error_code: int | None


@dataclass(frozen=True, slots=True)
class PublishDoneReceived:
    request_id: int
    status_code: int
    stream_count: int
    reason: str


@dataclass(frozen=True, slots=True)
class NamespaceReceived:
    request_id: int
    track_namespace_suffix: TrackNamespace


@dataclass(frozen=True, slots=True)
class NamespaceDoneReceived:
    request_id: int
    track_namespace_suffix: TrackNamespace


@dataclass(frozen=True, slots=True)
class PublishBlockedReceived:
    request_id: int
    track_namespace_suffix: TrackNamespace
    track_name: bytes


# objects ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectReceived:
    """One object of a subscription (subgroup stream or datagram) or of a fetch.

    `subgroup_id` is None for objects with the Datagram forwarding preference;
    `stream_id` identifies the subgroup/fetch stream (None for datagrams).
    """

    request_id: int
    group_id: int
    subgroup_id: int | None
    object_id: int
    publisher_priority: int
    status: int
    payload: bytes | memoryview
    properties: bytes
    stream_id: int | None
    fetch: bool = False
    end_of_group: bool = False


@dataclass(frozen=True, slots=True)
class DataStreamEnded:
    """A subgroup or fetch stream ended: FIN (`reset_code` None) or reset."""

    request_id: int
    stream_id: int
    group_id: int | None
    subgroup_id: int | None
    reset_code: int | None
    fetch: bool = False
    abandoned: bool = False  # we stopped reading it (e.g. an object over max_object_size)


@dataclass(frozen=True, slots=True)
class DataStreamRefused:
    """We stopped reading one of the peer's data streams (STOP_SENDING `error_code`) because
    it broke a limit, e.g. an object over max_object_size; for logs and metrics, whether or
    not the stream's request is known (its first object may be the oversized one)."""

    stream_id: int
    request_id: int | None
    error_code: int
    reason: str
    limit: str = "max_object_size"  # the SessionConfig limit it broke


Event = (
    SetupCompleted | SessionTerminated | GoawayReceived | IncomingRequest | RequestRefused | RequestUpdateReceived
    | RequestCancelled | SubscribeAccepted | FetchAccepted | RequestAccepted | RequestRejected | RequestEnded
    | PublishDoneReceived | NamespaceReceived | NamespaceDoneReceived | PublishBlockedReceived | ObjectReceived
    | DataStreamEnded | DataStreamRefused
)
