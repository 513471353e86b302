"""Namespace discovery in the relay (draft-18 § SUBSCRIBE_NAMESPACE, § NAMESPACE): which
namespaces a relay knows, and who is told about them.

A namespace is known when a session published it (PUBLISH_NAMESPACE, or PUBLISH of a track
in it) or when the parent reported it for a prefix that a downstream session watches
(relay/upstream.py).  A session is never told a namespace that only it is the source of, so a
child relay's own announcement does not come back to it through its parent and hold the name
alive after the child withdraws it.  These are Relay methods (bound in relay.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moq.wire.types import TrackNamespace

if TYPE_CHECKING:
    from moq.connection import Connection

    from .relay import Relay


def known(relay: Relay) -> set[TrackNamespace]:
    names = {ns for ns, pubs in relay.announced.items() if pubs}
    names.update(rt.track.namespace for rt in relay.tracks.values() if rt.pushed)
    if relay.upstream is not None:
        names |= relay.upstream.learned()
    return names


def watched_prefixes(relay: Relay) -> set[TrackNamespace]:
    """Prefixes that downstream sessions (not the parent) hold SUBSCRIBE_NAMESPACEs for."""
    return {prefix for conn, _, prefix, _ in relay.ns_subs.values() if not relay.from_parent(conn)}


def only_from(relay: Relay, ns: TrackNamespace, conn: Connection) -> bool:
    """`ns` is known here only because `conn` published it: never report it back to `conn`."""
    sources = {id(c) for c, _ in relay.announced.get(ns, ())}
    sources.update(id(rt.source_conn) for rt in relay.tracks.values() if rt.pushed and rt.track.namespace == ns)
    up = relay.upstream
    if up is not None and up.conn is not None and ns in up.learned():
        sources.add(id(up.conn))
    return sources == {id(conn)}


def added(relay: Relay, ns: TrackNamespace, source: Connection | None = None) -> None:
    """`ns` became known through `source`: announce it upstream (unless it came from there) and
    tell the watchers of matching prefixes."""
    if relay.upstream is not None and not relay.from_parent(source):
        relay.upstream.announce(ns)
    for conn, rid, prefix, told in relay.ns_subs.values():
        suffix = ns[len(prefix):]
        if ns[: len(prefix)] == prefix and suffix not in told and not conn.is_closed:
            if conn is source or only_from(relay, ns, conn):
                continue
            told.add(suffix)
            conn.send_namespace(rid, suffix)


def gone(relay: Relay, ns: TrackNamespace) -> None:
    """A source of `ns` went away: if no other is left, withdraw it and tell its watchers."""
    if ns in known(relay):
        return
    relay.announced.pop(ns, None)
    if relay.upstream is not None and ns not in relay.local_namespaces():
        relay.upstream.withdraw(ns)
    for conn, rid, prefix, told in relay.ns_subs.values():
        suffix = ns[len(prefix):]
        if ns[: len(prefix)] == prefix and suffix in told and not conn.is_closed:
            told.discard(suffix)
            conn.send_namespace(rid, suffix, done=True)


def subscribe_namespace(relay: Relay, conn: Connection, rid: int, prefix: TrackNamespace) -> None:
    conn.accept(rid)
    told: set[TrackNamespace] = set()
    relay.ns_subs[(id(conn), rid)] = (conn, rid, prefix, told)
    if relay.upstream is not None and not relay.from_parent(conn):
        relay.upstream.sync_watches()
    for ns in sorted(known(relay)):
        if ns[: len(prefix)] == prefix and not only_from(relay, ns, conn):
            told.add(ns[len(prefix):])
            conn.send_namespace(rid, ns[len(prefix):])
