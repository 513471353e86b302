"""Hypothesis strategies for every wire structure of draft-18 (tests/wire).

Values respect the draft's limits so that every generated message is valid on the
wire: namespaces of 0..32 non-empty fields within the 4096-byte Full Track Name,
sorted Key-Value-Pairs (odd type → bytes, even type → integer), parameters only where
the draft allows them, a Redirect exactly with error code REDIRECT.
"""

from __future__ import annotations

from dataclasses import fields

from hypothesis import strategies as st

from moq.errors import RequestErrorCode
from moq.wire import control as c
from moq.wire.data import EndOfRange, FetchObject, ObjectDatagram, ObjectStatus, SubgroupHeader
from moq.wire.types import (
    MAX_FULL_TRACK_NAME,
    FilterType,
    Location,
    Parameters,
    ParamType,
    SubscriptionFilter,
    Token,
    encode_kvp_block,
)

U64 = (1 << 64) - 1

# every varint length boundary: 2^(7k) - 1 and 2^(7k), plus 2^56 - 1 / 2^56 and 2^64 - 1
BOUNDARIES = sorted(
    {0, 1, U64, U64 - 1, (1 << 62) - 1}
    | {(1 << (7 * k)) - 1 for k in range(1, 9)}
    | {1 << (7 * k) for k in range(1, 9)}
)


def varints(min_value: int = 0, max_value: int = U64) -> st.SearchStrategy[int]:
    edges = [b for b in BOUNDARIES if min_value <= b <= max_value] + [min_value, max_value]
    return st.one_of(
        st.integers(min_value, min(max_value, min_value + 300)),
        st.integers(min_value, max_value),
        st.sampled_from(edges),
    )


uint8s = st.integers(0, 255)
locations = st.builds(Location, varints(), varints())
small_bytes = st.binary(max_size=48)
reasons = st.text(max_size=120)  # ≤ 480 bytes of UTF-8, well under the 1024 limit

# --- names ---------------------------------------------------------------------------

namespace_fields = st.binary(min_size=1, max_size=128)


@st.composite
def namespaces(draw, max_total: int = MAX_FULL_TRACK_NAME) -> tuple[bytes, ...]:
    """0..32 non-empty fields whose lengths sum to at most `max_total` (≤ 4096)."""
    if draw(st.integers(0, 9)) == 0:
        # sometimes exactly 32 fields (the maximum), small ones
        return tuple(draw(st.lists(st.binary(min_size=1, max_size=4), min_size=32, max_size=32)))
    parts = draw(st.lists(namespace_fields, max_size=32))
    out, total = [], 0
    for p in parts:
        if total + len(p) > max_total:
            break
        out.append(p)
        total += len(p)
    return tuple(out)


@st.composite
def full_track_names(draw) -> tuple[tuple[bytes, ...], bytes]:
    """(namespace, name) with Full Track Name length ≤ 4096; sometimes exactly 4096."""
    ns = draw(namespaces())
    room = MAX_FULL_TRACK_NAME - sum(map(len, ns))
    if draw(st.integers(0, 7)) == 0:
        return ns, b"n" * room
    return ns, draw(st.binary(max_size=min(room, 64)))


# --- key-value pairs ---------------------------------------------------------------------

kvp_types = st.one_of(st.integers(0, 0x40), st.sampled_from([0x9D, 0x11C, 0x3800, 0x4000]), varints())


@st.composite
def kvps(draw, max_size: int = 6) -> tuple[tuple[int, int | bytes], ...]:
    """Key-Value-Pairs in wire order: ascending (stable) by type, duplicates allowed."""
    keys = draw(st.lists(kvp_types, max_size=max_size))
    pairs = [(k, draw(small_bytes) if k & 1 else draw(varints())) for k in keys]
    pairs.sort(key=lambda kv: kv[0])
    return tuple(pairs)


def property_blocks() -> st.SearchStrategy[bytes]:
    """A raw Object Properties block (the bytes after Properties Length)."""
    return kvps(max_size=4).map(encode_kvp_block)


# --- tokens, filters, parameters -----------------------------------------------------------

tokens = st.one_of(
    st.builds(Token, st.just(0), varints()),  # DELETE
    st.builds(Token, st.just(1), varints(), varints(), small_bytes),  # REGISTER
    st.builds(Token, st.just(2), varints()),  # USE_ALIAS
    st.builds(Token, st.just(3), st.none(), varints(), small_bytes),  # USE_VALUE
)


@st.composite
def _absolute_range(draw) -> SubscriptionFilter:
    start = draw(locations)
    return SubscriptionFilter(FilterType.ABSOLUTE_RANGE, start, draw(varints(0, U64 - start.group)))


filters = st.one_of(
    st.builds(SubscriptionFilter, st.just(FilterType.NEXT_GROUP_START)),
    st.builds(SubscriptionFilter, st.just(FilterType.LARGEST_OBJECT)),
    st.builds(SubscriptionFilter, st.just(FilterType.ABSOLUTE_START), locations),
    _absolute_range(),
)

#: a strategy for every field of `Parameters` (a test checks the mapping is complete)
PARAMETER_VALUES: dict[str, st.SearchStrategy] = {
    "object_delivery_timeout": varints(),
    "authorization_tokens": st.lists(tokens, min_size=1, max_size=3).map(tuple),
    "rendezvous_timeout": varints(),
    "subgroup_delivery_timeout": varints(),
    "expires": varints(),
    "largest_object": locations,
    "fill_timeout": varints(),
    "forward": st.integers(0, 1),
    "subscriber_priority": uint8s,
    "subscription_filter": filters,
    "group_order": st.integers(1, 2),
    "new_group_request": varints(),
    "track_namespace_prefix": namespaces(max_total=1024),
}

PARAM_TYPE_OF = {f.name: f.metadata["t"] for f in fields(Parameters)}


@st.composite
def parameters(draw, allowed: frozenset[int] | set[int]) -> Parameters:
    """A Parameters block using only the parameter types in `allowed`."""
    values = {}
    for name, ptype in PARAM_TYPE_OF.items():
        if ptype in allowed and draw(st.booleans()):
            values[name] = draw(PARAMETER_VALUES[name])
    return Parameters(**values)


# --- control messages ------------------------------------------------------------------


def _params_for(cls) -> st.SearchStrategy[Parameters]:
    return parameters(cls.ALLOWED_PARAMS)


@st.composite
def _request_errors(draw) -> c.RequestError:
    code = draw(st.one_of(st.sampled_from(list(RequestErrorCode)), varints()))
    redirect = None
    if code == RequestErrorCode.REDIRECT:
        ns, name = draw(full_track_names())
        redirect = c.Redirect(draw(st.binary(max_size=64)), ns, name)
    return c.RequestError(code, draw(varints()), draw(reasons), redirect)


@st.composite
def _fetches(draw) -> c.Fetch:
    ftype = draw(st.sampled_from([c.FetchType.STANDALONE, c.FetchType.RELATIVE_JOINING, c.FetchType.ABSOLUTE_JOINING]))
    standalone = joining = None
    if ftype == c.FetchType.STANDALONE:
        ns, name = draw(full_track_names())
        standalone = c.StandaloneFetch(ns, name, draw(locations), draw(locations))
    else:
        joining = c.JoiningFetch(draw(varints()), draw(varints()))
    return c.Fetch(draw(varints()), ftype, standalone, joining, draw(_params_for(c.Fetch)))


@st.composite
def _publishes(draw) -> c.Publish:
    ns, name = draw(full_track_names())
    return c.Publish(draw(varints()), ns, name, draw(varints()), draw(_params_for(c.Publish)), draw(kvps()))


@st.composite
def _subscribes(draw, cls, allowed) -> c.Message:
    ns, name = draw(full_track_names())
    return cls(draw(varints()), ns, name, draw(parameters(allowed)))


#: TRACK_STATUS: "subscriber parameters related to Track delivery (e.g.
#: SUBSCRIBER_PRIORITY) are not included"; of the draft's parameters only
#: AUTHORIZATION TOKEN names TRACK_STATUS among the messages it may appear in.
TRACK_STATUS_PARAMS = frozenset({ParamType.AUTHORIZATION_TOKEN})

#: one strategy per registered control message class (a test checks completeness)
MESSAGES: dict[type, st.SearchStrategy] = {
    c.Setup: st.builds(c.Setup, kvps()),
    c.GoAway: st.builds(c.GoAway, st.binary(max_size=200), varints(), st.none() | varints()),
    c.RequestOk: st.builds(c.RequestOk, _params_for(c.RequestOk), kvps()),
    # PUBLISH_OK: "Track Properties ... are empty in PUBLISH_OK" (§ REQUEST_OK)
    c.PublishOk: st.builds(c.PublishOk, _params_for(c.PublishOk), st.just(())),
    c.RequestError: _request_errors(),
    c.Subscribe: _subscribes(c.Subscribe, c.Subscribe.ALLOWED_PARAMS),
    c.TrackStatus: _subscribes(c.TrackStatus, TRACK_STATUS_PARAMS),
    c.SubscribeOk: st.builds(c.SubscribeOk, varints(), _params_for(c.SubscribeOk), kvps()),
    c.RequestUpdate: st.builds(c.RequestUpdate, varints(), _params_for(c.RequestUpdate)),
    c.Publish: _publishes(),
    c.PublishDone: st.builds(c.PublishDone, varints(), varints(), reasons),
    c.Fetch: _fetches(),
    c.FetchOk: st.builds(c.FetchOk, st.booleans(), locations, _params_for(c.FetchOk), kvps()),
    c.PublishNamespace: st.builds(c.PublishNamespace, varints(), namespaces(), _params_for(c.PublishNamespace)),
    c.SubscribeNamespace: st.builds(c.SubscribeNamespace, varints(), namespaces(), _params_for(c.SubscribeNamespace)),
    c.SubscribeTracks: st.builds(c.SubscribeTracks, varints(), namespaces(), _params_for(c.SubscribeTracks)),
    c.Namespace: st.builds(c.Namespace, namespaces()),
    c.NamespaceDone: st.builds(c.NamespaceDone, namespaces()),
    c.PublishBlocked: full_track_names().map(lambda nn: c.PublishBlocked(nn[0], nn[1])),
}

any_message = st.one_of(*MESSAGES.values())

# small messages (for tests that feed every prefix or every byte separately)
small_messages = st.one_of(
    st.builds(c.Setup, kvps(max_size=3)),
    st.builds(c.GoAway, small_bytes, varints(), st.none() | varints()),
    st.builds(c.Subscribe, varints(), st.lists(st.binary(min_size=1, max_size=8), max_size=4).map(tuple),
              st.binary(max_size=8), _params_for(c.Subscribe)),
    st.builds(c.SubscribeOk, varints(), _params_for(c.SubscribeOk), kvps(max_size=3)),
    st.builds(c.PublishDone, varints(), varints(), st.text(max_size=10)),
    st.builds(c.RequestOk, _params_for(c.RequestOk), kvps(max_size=2)),
    st.builds(c.Namespace, st.lists(st.binary(min_size=1, max_size=8), max_size=4).map(tuple)),
)

# --- data plane ------------------------------------------------------------------------

subgroup_headers = st.builds(
    SubgroupHeader,
    varints(),
    varints(),
    st.one_of(st.none(), st.just(0), varints(1)),
    st.none() | uint8s,
    st.booleans(),
    st.booleans(),
    st.booleans(),
)

object_statuses = st.sampled_from([ObjectStatus.NORMAL, ObjectStatus.END_OF_GROUP, ObjectStatus.END_OF_TRACK])


@st.composite
def subgroup_objects(draw, has_properties: bool, max_objects: int = 6):
    """[(object_id, payload, status, properties)] with strictly increasing object IDs."""
    out = []
    oid = draw(varints())
    for _ in range(draw(st.integers(0, max_objects))):
        if oid > U64:
            break
        status = draw(st.one_of(st.just(ObjectStatus.NORMAL), object_statuses))
        payload = draw(st.binary(max_size=24)) if status == ObjectStatus.NORMAL else b""
        props = b""
        if has_properties and status == ObjectStatus.NORMAL:
            props = draw(st.one_of(st.just(b""), property_blocks()))
        out.append((oid, payload, status, props))
        oid += 1 + draw(st.one_of(st.just(0), st.integers(0, 5), varints()))
    return out


@st.composite
def object_datagrams(draw) -> ObjectDatagram:
    status = draw(st.none() | object_statuses)
    props = None
    if status in (None, ObjectStatus.NORMAL):
        props = draw(st.none() | st.binary(min_size=1, max_size=24))
    return ObjectDatagram(
        track_alias=draw(varints()),
        group_id=draw(varints()),
        object_id=draw(st.just(0) | varints()),
        publisher_priority=draw(st.none() | uint8s),
        properties=props,
        status=status,
        payload=draw(st.binary(max_size=48)) if status is None else b"",
        end_of_group=draw(st.booleans()) if status is None else False,
    )


@st.composite
def fetch_items(draw, descending: bool, max_items: int = 8) -> list[FetchObject | EndOfRange]:
    """Objects (and End of Range markers) in the order a fetch stream carries them:
    groups in the requested order, object IDs increasing within a group."""
    n = draw(st.integers(0, max_items))
    max_step = 4
    if descending:
        group = draw(st.one_of(st.integers(n * max_step, n * max_step + 50), varints(n * max_step)))
    else:
        group = draw(st.one_of(st.integers(0, 50), varints(0, U64 - n * max_step)))
    obj = draw(st.one_of(st.integers(0, 20), varints(0, U64 - 64 * max_items)))
    subgroup: int | None = None
    priority = draw(uint8s)
    items: list[FetchObject | EndOfRange] = []
    for i in range(n):
        if i:
            if draw(st.booleans()):
                step = draw(st.integers(1, max_step))
                group = group - step if descending else group + step
                obj = draw(st.integers(0, 20))
            else:
                obj += draw(st.integers(1, 4))
        if draw(st.integers(0, 4)) == 0:
            items.append(EndOfRange(group, obj, draw(st.booleans())))
            continue
        subgroup = draw(st.one_of(
            st.none(), st.just(0), st.just(subgroup),
            st.just(subgroup + 1) if subgroup is not None and subgroup < U64 else st.none(),
            st.integers(0, 10), varints(),
        ))
        priority = draw(st.one_of(st.just(priority), uint8s))
        props = draw(st.one_of(st.just(b""), property_blocks()))
        items.append(FetchObject(group, subgroup, obj, priority, draw(st.binary(max_size=16)), props))
    return items
