"""Golden byte vectors (tests/vectors/*.json, schema in tests/vectors/README.md).

Each vector is decoded and compared with its JSON description turned into our
dataclasses; unless it is marked `decode_only`, the description is also encoded and
must give the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from moq.errors import SessionError
from moq.wire import control as c
from moq.wire.data import (
    EndOfRange,
    FetchHeader,
    FetchObject,
    FetchObjectCodec,
    ObjectDatagram,
    SubgroupHeader,
    SubgroupObject,
    encode_subgroup_object,
    padding_datagram,
    padding_stream_header,
)
from moq.wire.framing import (
    ControlStreamOpened,
    MessageDecoder,
    PaddingStreamOpened,
    UniStreamDecoder,
    decode_datagram,
)
from moq.wire.types import (
    Location,
    Parameters,
    SubscriptionFilter,
    Token,
    decode_kvp_block,
)
from moq.wire.varint import decode_varint, encode_varint

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load(name: str) -> list[dict]:
    with open(VECTORS / name, encoding="utf-8") as f:
        return json.load(f)["vectors"]


def raw(vector: dict) -> bytes:
    return bytes.fromhex("".join(vector["hex"].split()))


def ids(vectors: list[dict]) -> list[str]:
    return [v["name"] for v in vectors]


VARINT = load("varint.json")
CONTROL = load("control.json")
DATA = load("data.json")
INVALID = load("invalid.json")

# --- JSON description → dataclasses (the schema of tests/vectors/README.md) ---------------


def j_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"not an integer: {value!r}")
    if isinstance(value, str):
        assert value.isdigit() and int(value) > 2**53 - 1, f"decimal strings are only for values > 2^53-1: {value}"
        return int(value)
    assert value <= 2**53 - 1, f"use a decimal string for {value}"
    return value


def j_opt_int(value) -> int | None:
    return None if value is None else j_int(value)


def j_bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    assert isinstance(value, dict) and set(value) == {"hex"}, value
    return bytes.fromhex(value["hex"])


def j_opt_bytes(value) -> bytes | None:
    return None if value is None else j_bytes(value)


def j_namespace(value) -> tuple[bytes, ...]:
    assert isinstance(value, list)
    return tuple(j_bytes(v) for v in value)


def j_location(value) -> Location:
    assert set(value) == {"group", "object"}, value
    return Location(j_int(value["group"]), j_int(value["object"]))


def j_kvps(value) -> tuple[tuple[int, int | bytes], ...]:
    out = []
    for key, val in value:
        key = j_int(key)
        out.append((key, j_bytes(val) if key & 1 else j_int(val)))
    return tuple(out)


def j_token(value) -> Token:
    assert set(value) == {"alias_type", "alias", "token_type", "value"}, value
    return Token(j_int(value["alias_type"]), j_opt_int(value["alias"]), j_opt_int(value["token_type"]),
                 j_opt_bytes(value["value"]))


def j_filter(value) -> SubscriptionFilter:
    assert set(value) == {"filter_type", "start", "end_group_delta"}, value
    start = None if value["start"] is None else j_location(value["start"])
    return SubscriptionFilter(j_int(value["filter_type"]), start, j_opt_int(value["end_group_delta"]))


_PARAM_CONVERTERS = {
    "authorization_tokens": lambda v: tuple(j_token(t) for t in v),
    "largest_object": j_location,
    "subscription_filter": j_filter,
    "track_namespace_prefix": j_namespace,
}


def j_parameters(value) -> Parameters:
    known = {f.name for f in fields(Parameters)}
    assert set(value) <= known, f"unknown parameters {set(value) - known}"
    return Parameters(**{k: _PARAM_CONVERTERS.get(k, j_int)(v) for k, v in value.items()})


def j_redirect(value) -> c.Redirect | None:
    if value is None:
        return None
    assert set(value) == {"connect_uri", "track_namespace", "track_name"}, value
    return c.Redirect(j_bytes(value["connect_uri"]), j_namespace(value["track_namespace"]), j_bytes(value["track_name"]))


def j_standalone(value) -> c.StandaloneFetch | None:
    if value is None:
        return None
    assert set(value) == {"track_namespace", "track_name", "start", "end"}, value
    return c.StandaloneFetch(j_namespace(value["track_namespace"]), j_bytes(value["track_name"]),
                             j_location(value["start"]), j_location(value["end"]))


def j_joining(value) -> c.JoiningFetch | None:
    if value is None:
        return None
    assert set(value) == {"joining_request_id", "joining_start"}, value
    return c.JoiningFetch(j_int(value["joining_request_id"]), j_int(value["joining_start"]))


def j_bool(value) -> bool:
    assert isinstance(value, bool), value
    return value


_FIELD_CONVERTERS = {
    "options": j_kvps,
    "track_properties": j_kvps,
    "parameters": j_parameters,
    "track_namespace": j_namespace,
    "track_namespace_prefix": j_namespace,
    "track_namespace_suffix": j_namespace,
    "track_name": j_bytes,
    "new_session_uri": j_bytes,
    "request_id": j_opt_int,
    "reason": str,
    "redirect": j_redirect,
    "standalone": j_standalone,
    "joining": j_joining,
    "end_of_track": j_bool,
    "end_location": j_location,
}

MESSAGE_CLASSES = {cls.__name__: cls for cls in c.REGISTRY.values()}


def j_message(value: dict) -> c.Message:
    cls = MESSAGE_CLASSES[value["type"]]
    names = {f.name for f in fields(cls)}
    given = set(value) - {"type"}
    assert given == names, f"{cls.__name__}: missing {names - given}, unknown {given - names}"
    return cls(**{k: _FIELD_CONVERTERS.get(k, j_int)(v) for k, v in value.items() if k != "type"})


def j_subgroup_header(value) -> SubgroupHeader:
    return SubgroupHeader(
        track_alias=j_int(value["track_alias"]),
        group_id=j_int(value["group_id"]),
        subgroup_id=j_opt_int(value["subgroup_id"]),
        publisher_priority=j_opt_int(value["publisher_priority"]),
        has_properties=j_bool(value["has_properties"]),
        end_of_group=j_bool(value["end_of_group"]),
        first_object=j_bool(value["first_object"]),
    )


def j_subgroup_object(value) -> SubgroupObject:
    return SubgroupObject(j_int(value["object_id"]), j_bytes(value["payload"]), j_int(value["status"]),
                          j_bytes(value["properties"]))


def j_fetch_item(value) -> FetchObject | EndOfRange:
    (kind, v), = value.items()
    if kind == "end_of_range":
        return EndOfRange(j_int(v["group_id"]), j_int(v["object_id"]), j_bool(v["unknown"]))
    assert kind == "object", kind
    return FetchObject(j_int(v["group_id"]), j_opt_int(v["subgroup_id"]), j_int(v["object_id"]),
                       j_int(v["publisher_priority"]), j_bytes(v["payload"]), j_bytes(v["properties"]))


def j_datagram(value) -> ObjectDatagram | None:
    if value is None:
        return None
    return ObjectDatagram(
        track_alias=j_int(value["track_alias"]),
        group_id=j_int(value["group_id"]),
        object_id=j_int(value["object_id"]),
        publisher_priority=j_opt_int(value["publisher_priority"]),
        properties=j_opt_bytes(value["properties"]),
        status=j_opt_int(value["status"]),
        payload=j_bytes(value["payload"]),
        end_of_group=j_bool(value["end_of_group"]),
    )


# --- file-level sanity -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["varint.json", "control.json", "data.json", "invalid.json"])
def test_vector_file_is_well_formed(name):
    vectors = load(name)
    assert vectors
    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "duplicate vector names"
    for v in vectors:
        assert v["section"] and isinstance(v["section"], str)
        text = "".join(v["hex"].split())
        assert text == text.lower() and len(text) % 2 == 0
        bytes.fromhex(text)
        assert v.get("decode_only", False) in (True, False)


# --- varints --------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VARINT, ids=ids(VARINT))
def test_varint_vector(vector):
    data = raw(vector)
    value = j_int(vector["value"])
    assert decode_varint(data) == (value, len(data))
    if vector.get("decode_only"):
        assert encode_varint(value) != data
    else:
        assert encode_varint(value) == data


# --- control messages ----------------------------------------------------------------------


@pytest.mark.parametrize("vector", CONTROL, ids=ids(CONTROL))
def test_control_vector(vector):
    data = raw(vector)
    expected = j_message(vector["message"])
    assert MessageDecoder().feed(data) == [expected]
    msg_type, pos = decode_varint(data)
    assert msg_type == type(expected).TYPE
    assert c.decode_message(msg_type, data[pos + 2 :]) == expected
    if vector.get("decode_only"):
        assert expected.encode() != data
    else:
        assert expected.encode() == data


def test_control_vectors_cover_every_message_type():
    covered = {j_message(v["message"]).TYPE for v in CONTROL}
    assert covered == set(c.REGISTRY)


def test_control_vectors_cover_every_parameter_and_form():
    messages = [j_message(v["message"]) for v in CONTROL]
    present: set[str] = set()
    alias_types, filter_types = set(), set()
    for m in messages:
        p = getattr(m, "parameters", None)
        if p is None:
            continue
        present |= {f.name for f in fields(Parameters) if getattr(p, f.name) not in (None, ())}
        alias_types |= {t.alias_type for t in p.authorization_tokens}
        if p.subscription_filter is not None:
            filter_types.add(p.subscription_filter.filter_type)
    assert present == {f.name for f in fields(Parameters)}
    assert alias_types == {0, 1, 2, 3}
    assert filter_types == {1, 2, 3, 4}
    assert any(getattr(m, "track_properties", ()) for m in messages)
    goaways = [m for m in messages if isinstance(m, c.GoAway)]
    assert {m.request_id is None for m in goaways} == {True, False}
    assert {m.fetch_type for m in messages if isinstance(m, c.Fetch)} == {1, 2, 3}
    errors = [m for m in messages if isinstance(m, c.RequestError)]
    assert {m.redirect is None for m in errors} == {True, False}


# --- data plane ------------------------------------------------------------------------------


def _encode_subgroup_stream(header: SubgroupHeader, objects: list[SubgroupObject]) -> bytes:
    out = bytearray(header.encode())
    prev = None
    for o in objects:
        out += encode_subgroup_object(prev, o.object_id, len(o.payload), status=o.status,
                                      properties=o.properties if header.has_properties else None)
        out += o.payload
        prev = o.object_id
    return bytes(out)


def _encode_fetch_stream(header: FetchHeader, items, descending: bool) -> bytes:
    codec = FetchObjectCodec(descending)
    out = bytearray(header.encode())
    for item in items:
        out += codec.encode(item)
        if isinstance(item, FetchObject):
            out += item.payload
    return bytes(out)


@pytest.mark.parametrize("vector", DATA, ids=ids(DATA))
def test_data_vector(vector):
    data = raw(vector)
    kind = vector["kind"]
    if kind == "datagram":
        expected = j_datagram(vector["datagram"])
        assert decode_datagram(data) == expected
        if expected is None:
            encoded = padding_datagram(len(data) - len(padding_datagram(0)))
        else:
            encoded = expected.encode()
    elif kind == "subgroup_stream":
        header = j_subgroup_header(vector["header"])
        objects = [j_subgroup_object(o) for o in vector["objects"]]
        for o, desc in zip(objects, vector["objects"]):
            if "property_list" in desc:
                assert decode_kvp_block(o.properties) == j_kvps(desc["property_list"])
        assert UniStreamDecoder().feed(data, fin=True) == [header, *objects]
        encoded = _encode_subgroup_stream(header, objects)
    elif kind == "fetch_stream":
        header = FetchHeader(j_int(vector["header"]["request_id"]))
        items = [j_fetch_item(i) for i in vector["items"]]
        dec = UniStreamDecoder()
        dec.fetch_codec.descending = j_bool(vector["descending"])
        assert dec.feed(data, fin=True) == [header, *items]
        encoded = _encode_fetch_stream(header, items, vector["descending"])
    elif kind == "padding_stream":
        assert UniStreamDecoder().feed(data, fin=True) == [PaddingStreamOpened()]
        encoded = padding_stream_header() + bytes(len(data) - len(padding_stream_header()))
    elif kind == "control_stream":
        messages = [j_message(m) for m in vector["messages"]]
        assert UniStreamDecoder().feed(data) == [ControlStreamOpened(), *messages]
        encoded = b"".join(m.encode() for m in messages)
    else:
        raise AssertionError(f"unknown kind {kind}")
    if vector.get("decode_only"):
        assert encoded != data
    else:
        assert encoded == data


def test_data_vectors_cover_required_forms():
    streams = [v for v in DATA if v["kind"] == "subgroup_stream"]
    types = {raw(v)[0] for v in streams}
    assert {0x10, 0x14, 0x35, 0x1D, 0x50, 0x30} <= types
    statuses = {o["status"] for v in streams for o in v["objects"]}
    assert statuses == {0, 3, 4}
    dg_types = {raw(v)[0] for v in DATA if v["kind"] == "datagram" and v["datagram"] is not None}
    assert {0x00, 0x01, 0x02, 0x04, 0x08, 0x20, 0x21, 0x24, 0x25, 0x28, 0x29, 0x2C, 0x2D} <= dg_types
    fetch_items = [i for v in DATA if v["kind"] == "fetch_stream" for i in v["items"]]
    assert {i["end_of_range"]["unknown"] for i in fetch_items if "end_of_range" in i} == {True, False}
    assert any(i["object"]["subgroup_id"] is None for i in fetch_items if "object" in i)
    assert {v["descending"] for v in DATA if v["kind"] == "fetch_stream"} == {True, False}
    assert {v["section"] for v in DATA} >= {"Examples", "Padding Streams", "Padding Datagrams"}


# --- malformed input ---------------------------------------------------------------------------


def _feed_invalid(vector) -> None:
    data = raw(vector)
    kind = vector["kind"]
    if kind == "control":
        MessageDecoder().feed(data)
    elif kind == "uni_stream":
        dec = UniStreamDecoder()
        dec.fetch_codec.descending = vector.get("descending", False)
        dec.feed(data, fin=vector.get("fin", False))
    elif kind == "datagram":
        decode_datagram(data)
    else:
        raise AssertionError(f"unknown kind {kind}")


@pytest.mark.parametrize("vector", INVALID, ids=ids(INVALID))
def test_invalid_vector(vector):
    with pytest.raises(SessionError) as info:
        _feed_invalid(vector)
    assert info.value.code == vector["error"]


@pytest.mark.parametrize("vector", [v for v in INVALID if v["kind"] == "control"],
                         ids=ids([v for v in INVALID if v["kind"] == "control"]))
def test_invalid_control_vector_is_rejected_only_when_complete(vector):
    """The frame is refused when it is complete, not before: every strict prefix waits."""
    data = raw(vector)
    for end in range(len(data)):
        assert MessageDecoder().feed(data[:end]) == []
