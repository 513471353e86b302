"""The MSF catalog (draft-ietf-moq-msf): a JSON document on track "catalog" describing the
broadcast's tracks.  Object 0 of each catalog group is a complete catalog; we publish a
new group whenever the catalog changes (no delta updates).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

MSF_VERSION = "draft-01"
CATALOG_TRACK = "catalog"

# JSON field names (§ Track Object Fields) for our snake_case attributes
_FIELDS = {
    "namespace": "namespace", "name": "name", "packaging": "packaging", "is_live": "isLive",
    "target_latency": "targetLatency", "role": "role", "label": "label", "render_group": "renderGroup",
    "alt_group": "altGroup", "codec": "codec", "mime_type": "mimeType", "framerate": "framerate",
    "timescale": "timescale", "bitrate": "bitrate", "avg_bitrate": "avgBitrate",
    "max_gop_duration": "maxGopDuration", "max_group_duration": "maxGroupDuration", "width": "width",
    "height": "height", "samplerate": "samplerate", "channel_config": "channelConfig", "lang": "lang",
}
_TYPES = {
    "namespace": str, "name": str, "packaging": str, "isLive": bool, "role": str, "label": str, "codec": str,
    "mimeType": str, "channelConfig": str, "lang": str,
}


class CatalogError(ValueError):
    """A catalog that does not follow the MSF draft (missing or mistyped fields)."""


@dataclass(frozen=True)
class CatalogTrack:
    name: str
    packaging: str = "loc"
    is_live: bool = True
    role: str | None = None
    codec: str | None = None
    namespace: str | None = None
    label: str | None = None
    render_group: int | None = None
    alt_group: int | None = None
    target_latency: int | None = None
    mime_type: str | None = None
    framerate: float | None = None
    timescale: int | None = None
    bitrate: int | None = None
    avg_bitrate: int | None = None
    max_gop_duration: int | None = None
    max_group_duration: int | None = None
    width: int | None = None
    height: int | None = None
    samplerate: int | None = None
    channel_config: str | None = None
    lang: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields we do not model, kept

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for attr, key in _FIELDS.items():
            value = getattr(self, attr)
            if value is not None:
                out[key] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> CatalogTrack:
        if not isinstance(obj, dict):
            raise CatalogError("a track entry is not a JSON object")
        for key in ("name", "packaging", "isLive"):  # § Track Object Fields: Required: Yes
            if key not in obj:
                raise CatalogError(f"track entry without required field {key!r}")
        for key, typ in _TYPES.items():
            if key in obj and not isinstance(obj[key], typ):
                raise CatalogError(f"track field {key!r} must be a {typ.__name__}")
        reverse = {v: k for k, v in _FIELDS.items()}
        known = {reverse[k]: v for k, v in obj.items() if k in reverse}
        extra = {k: v for k, v in obj.items() if k not in reverse}
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class Catalog:
    tracks: tuple[CatalogTrack, ...]
    version: str = MSF_VERSION
    generated_at: int | None = None  # ms since the epoch
    is_complete: bool = False  # the broadcast is over (§ Is Complete; never sent as false)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if self.generated_at is not None:
            out["generatedAt"] = self.generated_at
        if self.is_complete:
            out["isComplete"] = True
        out["tracks"] = [t.to_json() for t in self.tracks]
        return out

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Catalog:
        try:
            obj = json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CatalogError(f"catalog is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise CatalogError("catalog is not a JSON object")
        if not isinstance(obj.get("version"), str):
            raise CatalogError("catalog without a string 'version'")
        if "deltaUpdate" in obj:
            raise CatalogError("delta catalog updates are not supported")
        if not isinstance(obj.get("tracks"), list):
            raise CatalogError("catalog without a 'tracks' array")
        gen = obj.get("generatedAt")
        return cls(tuple(CatalogTrack.from_json(t) for t in obj["tracks"]), obj["version"],
                   gen if isinstance(gen, int) else None, obj.get("isComplete") is True)

    def track(self, name: str) -> CatalogTrack | None:
        return next((t for t in self.tracks if t.name == name), None)

    def stamped(self) -> Catalog:
        return Catalog(self.tracks, self.version, int(time.time() * 1000), self.is_complete)
