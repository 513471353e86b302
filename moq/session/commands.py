"""The application's side of requests: opening ours (SUBSCRIBE, PUBLISH, FETCH, ...) and
answering the peer's (accept/reject, updates, NAMESPACE, PUBLISH_DONE).  A mixin of
`Session`, kept apart so each file reads in one sitting; it only uses the session's
bookkeeping (`_requests`, `_send_on`, `_finish`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from ..errors import LocalUsageError, StreamResetCode
from ..wire import control as c
from ..wire.types import EMPTY_PARAMETERS, KeyValuePairs, Location, Parameters, TrackNamespace
from . import events as ev
from .requests import KIND_OF, Kind, Request, State

DEFAULT_PUBLISHER_PRIORITY = 0x0E
DEFAULT_PUBLISHER_GROUP_ORDER = 0x22
PRIORITY_REQUESTS = 1


class RequestCommands:
    """Mixed into Session."""

    # --- our requests ------------------------------------------------------------------
    def _new_request_id(self) -> int:
        rid = self._next_request_id
        self._next_request_id += 2
        return rid

    def _open_request(self, make: Callable[[int], c.Message]) -> Request:
        if self.closed is not None:
            raise LocalUsageError("session is closed")
        rid = self._new_request_id()
        msg = make(rid)
        sid = self._open_stream(False)
        req = Request(rid, KIND_OF[type(msg)], sid, outgoing=True, message=msg)
        req.parameters = getattr(msg, "parameters", EMPTY_PARAMETERS)
        self._requests[rid] = req
        self._by_stream[sid] = req
        self._actions.append(ev.SetStreamPriority(sid, (PRIORITY_REQUESTS, req.subscriber_priority)))
        self._send(sid, msg.encode())
        return req

    def subscribe(self, namespace: TrackNamespace, name: bytes, parameters: Parameters = EMPTY_PARAMETERS) -> int:
        req = self._open_request(lambda rid: c.Subscribe(rid, namespace, name, parameters))
        req.forward = parameters.forward if parameters.forward is not None else 1
        return req.request_id

    def publish(
        self, namespace: TrackNamespace, name: bytes, parameters: Parameters = EMPTY_PARAMETERS,
        track_properties: KeyValuePairs = (),
    ) -> int:
        alias = self._alloc_alias()
        req = self._open_request(lambda rid: c.Publish(rid, namespace, name, alias, parameters, track_properties))
        req.track_alias = alias
        req.forward = parameters.forward if parameters.forward is not None else 1
        req.largest = parameters.largest_object
        order = next((v for k, v in track_properties if k == DEFAULT_PUBLISHER_GROUP_ORDER), 1)
        req.group_order = int(order) if order in (1, 2) else 1  # type: ignore[arg-type]
        prio = next((v for k, v in track_properties if k == DEFAULT_PUBLISHER_PRIORITY), 128)
        req.default_priority = int(prio)  # type: ignore[arg-type]
        return req.request_id

    def fetch(self, message_without_id: c.Fetch) -> int:
        """Send FETCH; the message's request_id is replaced by a fresh one."""
        return self._open_request(lambda rid: replace(message_without_id, request_id=rid)).request_id

    def track_status(self, namespace: TrackNamespace, name: bytes, parameters: Parameters = EMPTY_PARAMETERS) -> int:
        req = self._open_request(lambda rid: c.TrackStatus(rid, namespace, name, parameters))
        self._send(req.stream_id, b"", True)
        req.send_closed = True
        return req.request_id

    def publish_namespace(self, namespace: TrackNamespace, parameters: Parameters = EMPTY_PARAMETERS) -> int:
        return self._open_request(lambda rid: c.PublishNamespace(rid, namespace, parameters)).request_id

    def subscribe_namespace(self, prefix: TrackNamespace, parameters: Parameters = EMPTY_PARAMETERS) -> int:
        return self._open_request(lambda rid: c.SubscribeNamespace(rid, prefix, parameters)).request_id

    def subscribe_tracks(self, prefix: TrackNamespace, parameters: Parameters = EMPTY_PARAMETERS) -> int:
        return self._open_request(lambda rid: c.SubscribeTracks(rid, prefix, parameters)).request_id

    def request_update(self, request_id: int, parameters: Parameters) -> int:
        """Update one of our requests (or, as subscriber, a PUBLISH we accepted)."""
        req = self.request(request_id)
        uid = self._new_request_id()
        req.updates_in_flight.append(uid)
        if parameters.forward is not None and req.is_subscription:
            req.forward = parameters.forward
        self._send_on(req, c.RequestUpdate(uid, parameters))
        return uid

    def cancel(self, request_id: int, error_code: int = StreamResetCode.CANCELLED) -> None:
        """Unsubscribe / withdraw a namespace / cancel a fetch (§ Request Cancellation)."""
        req = self._requests.get(request_id)
        if req is not None:
            self._finish(req, reset_code=error_code)

    # --- answering the peer's requests ---------------------------------------------------
    def _alloc_alias(self) -> int:
        alias = self._next_alias
        self._next_alias += 1
        return alias

    def _incoming(self, request_id: int, *kinds: Kind) -> Request:
        req = self.request(request_id)
        if req.outgoing or req.kind not in kinds:
            raise LocalUsageError(f"request {request_id} is not an incoming {'/'.join(k.value for k in kinds)}")
        return req

    def accept_subscribe(
        self, request_id: int, *, largest: Location | None = None, expires: int | None = None,
        track_properties: KeyValuePairs = (),
    ) -> int:
        """SUBSCRIBE_OK; returns the Track Alias chosen for the subscription's objects."""
        req = self._incoming(request_id, Kind.SUBSCRIBE)
        if req.responded:
            raise LocalUsageError("already answered")
        req.track_alias = self._alloc_alias()
        req.largest = largest
        prio = next((v for k, v in track_properties if k == DEFAULT_PUBLISHER_PRIORITY), 128)
        req.default_priority = int(prio)  # type: ignore[arg-type]
        order = req.parameters.group_order
        if order is None:
            order = next((v for k, v in track_properties if k == DEFAULT_PUBLISHER_GROUP_ORDER), 1)
        req.group_order = int(order) if order in (1, 2) else 1  # type: ignore[arg-type]
        req.responded, req.state = True, State.ESTABLISHED
        params = Parameters(largest_object=largest, expires=expires)
        self._send_on(req, c.SubscribeOk(req.track_alias, params, track_properties))
        return req.track_alias

    def accept_publish(self, request_id: int, parameters: Parameters = EMPTY_PARAMETERS) -> None:
        req = self._incoming(request_id, Kind.PUBLISH)
        if req.responded:
            raise LocalUsageError("already answered")
        req.responded, req.state = True, State.ESTABLISHED
        if parameters.forward is not None:
            req.forward = parameters.forward
        self._send_on(req, self.config.publish_ok_type(parameters))

    def accept_fetch(
        self, request_id: int, end_location: Location, *, end_of_track: bool = False,
        track_properties: KeyValuePairs = (),
    ) -> None:
        req = self._incoming(request_id, Kind.FETCH)
        if req.responded:
            raise LocalUsageError("already answered")
        req.responded, req.state = True, State.ESTABLISHED
        self._send_on(req, c.FetchOk(end_of_track, end_location, EMPTY_PARAMETERS, track_properties))

    def accept(self, request_id: int, parameters: Parameters = EMPTY_PARAMETERS, track_properties: KeyValuePairs = ()) -> None:
        """REQUEST_OK for TRACK_STATUS (then FIN), PUBLISH_NAMESPACE, SUBSCRIBE_NAMESPACE, SUBSCRIBE_TRACKS."""
        req = self._incoming(
            request_id, Kind.TRACK_STATUS, Kind.PUBLISH_NAMESPACE, Kind.SUBSCRIBE_NAMESPACE, Kind.SUBSCRIBE_TRACKS
        )
        if req.responded:
            raise LocalUsageError("already answered")
        req.responded, req.state = True, State.ESTABLISHED
        done = req.kind is Kind.TRACK_STATUS
        self._send_on(req, c.RequestOk(parameters, track_properties), end=done)
        if done:
            req.state = State.DONE

    def reject(self, request_id: int, error_code: int, reason: str = "", retry_interval: int = 0,
               redirect: c.Redirect | None = None) -> None:
        """REQUEST_ERROR and FIN for a peer request not yet answered."""
        req = self.request(request_id)
        if req.outgoing or req.responded:
            raise LocalUsageError(f"request {request_id} cannot be rejected now")
        req.responded = True
        self._send_on(req, c.RequestError(error_code, retry_interval, reason, redirect), end=True)
        req.state = State.DONE
        self.data.end_request(req, StreamResetCode.CANCELLED)
        self._forget(req)
        if not req.recv_closed:
            self._actions.append(ev.StopSending(req.stream_id, StreamResetCode.CANCELLED))
            req.recv_closed = True

    def accept_update(self, update_id: int, parameters: Parameters = EMPTY_PARAMETERS) -> None:
        req = self._update_target(update_id)
        self._send_on(req, c.RequestOk(parameters))

    def reject_update(self, update_id: int, error_code: int, reason: str = "") -> None:
        req = self._update_target(update_id)
        self._send_on(req, c.RequestError(error_code, 0, reason))

    def _update_target(self, update_id: int) -> Request:
        req = self._update_owner.pop(update_id, None)
        if req is None or not req.updates_in_flight or req.updates_in_flight[0] != update_id:
            raise LocalUsageError(f"no pending update {update_id} (answer updates in order)")
        req.updates_in_flight.popleft()
        return req

    def apply_update(self, request_id: int, parameters: Parameters) -> None:
        """Record an accepted update's effect (forward state, filter) on the request."""
        req = self.request(request_id)
        req.parameters = req.parameters.merged(parameters)
        if parameters.forward is not None:
            req.forward = parameters.forward
        if parameters.subscriber_priority is not None:
            self.data.reprioritize(req)

    def send_namespace(self, request_id: int, suffix: TrackNamespace, done: bool = False) -> None:
        req = self._incoming(request_id, Kind.SUBSCRIBE_NAMESPACE)
        self._send_on(req, (c.NamespaceDone if done else c.Namespace)(suffix))

    def send_publish_blocked(self, request_id: int, suffix: TrackNamespace, name: bytes) -> None:
        req = self._incoming(request_id, Kind.SUBSCRIBE_TRACKS)
        self._send_on(req, c.PublishBlocked(suffix, name))

    def publish_done(self, request_id: int, status_code: int, reason: str = "") -> None:
        """End a subscription we publish (an incoming SUBSCRIBE or our PUBLISH)."""
        req = self.request(request_id)
        if not req.we_publish:
            raise LocalUsageError(f"request {request_id} is not a subscription we publish")
        self.data.end_request(req, None)
        self._send_on(req, c.PublishDone(status_code, req.streams_opened, reason), end=True)
        req.state = State.DONE

    def end_request(self, request_id: int) -> None:
        """FIN our side of a request stream (e.g. SUBSCRIBE_NAMESPACE we no longer serve)."""
        req = self._requests.get(request_id)
        if req is not None and not req.send_closed:
            self._send(req.stream_id, b"", True)
            req.send_closed = True
            if req.recv_closed:
                self._forget(req)
