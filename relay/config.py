"""moq-relay configuration: one frozen RelayConfig built from defaults < TOML < MOQ_RELAY_* env < flags.

Layering follows hypercorn: an operator keeps a file, a container overrides a few values through the
environment, and a flag typed by hand wins over both. Only flags actually given override anything
(argparse defaults are suppressed), so a flag's default never hides a value from the file or env.
Unknown TOML keys are errors (a typo must not silently fall back to a default); unknown MOQ_RELAY_*
variables are ignored, because orchestrators inject their own (Kubernetes adds MOQ_RELAY_PORT for a
service named moq-relay).
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import math
import os
import re
import socket
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .state import default_state_dir

MiB = 1 << 20
ENV_PREFIX = "MOQ_RELAY_"


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and where it came from."""


def _opt(default: Any, kind: str, help: str, group: str = "relay", shown: str | None = None) -> Any:
    """A field whose metadata drives --help, env names and type conversion."""
    return field(default=default, metadata={"kind": kind, "help": help, "group": group, "shown": shown})


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Everything the relay needs to start; validated on construction (see `load_config`)."""

    bind: str = _opt("127.0.0.1:4443", "str", "UDP host:port for raw QUIC and WebTransport ([v6]:port for IPv6)")
    cert: Path | None = _opt(None, "path", "TLS certificate chain, PEM", shown="a generated dev certificate")
    key: Path | None = _opt(None, "path", "TLS private key for cert, PEM")
    state_dir: Path | None = _opt(default_state_dir(), "path", "where the generated dev certificate and key are kept "
                                  "and reused across restarts (rotated before expiry); unused with --cert/--key; "
                                  "'' for a new certificate at every start",
                                  shown="$XDG_DATA_HOME/moq-relay or ~/.local/share/moq-relay")
    http: str | None = _opt(None, "optstr", "TCP host:port for /fingerprint, /metrics, /healthz and the viewer",
                            shown="off")
    web_root: Path | None = _opt(None, "path", "directory of static files served at / on --http",
                                 shown="the packaged web viewer, viewer/web")
    upstream: str | None = _opt(None, "optstr", "parent relay URL, moqt://host:port or https://host:port/path: "
                                "namespaces announced here are announced there, and subscriptions to "
                                "namespaces unknown here are sent there")
    upstream_fingerprint: str | None = _opt(None, "optstr", "SHA-256 of the parent relay's certificate (hex, as it "
                                            "prints it) to trust it without a CA", shown="CA verification")
    node_name: str = _opt("", "str", "this relay's name in logs, metrics and the relay tree",
                          shown="hostname")
    log_format: str = _opt("console", "choice", "log line format on stderr: console or json", "logging")
    log_level: str = _opt("info", "choice", "debug, info, warning, error or critical", "logging")
    workers: int | str = _opt(1, "workers", "worker processes sharing the UDP port (SO_REUSEPORT), an integer or "
                              "auto = one per usable core; tracks cross between workers over loopback relay "
                              "links; a QUIC connection's migration to a new address is not supported "
                              "across workers")
    drain_timeout: float = _opt(5.0, "float", "seconds to drain sessions after SIGTERM/SIGINT before exiting")
    peer_timeout: float = _opt(10.0, "float", "seconds a peer may stay silent, its PINGs unanswered, before its "
                               "session is dropped (a killed publisher, viewer or parent relay; QUIC alone waits "
                               "60 s); 0 leaves it to QUIC")
    max_sessions: int = _opt(10_000, "int", "concurrent sessions; more are refused", "limits")
    max_requests_per_session: int = _opt(1_000, "int", "request ids a peer may use (MAX_REQUEST_ID)", "limits")
    max_subscribers_per_track: int = _opt(10_000, "int", "downstream subscriptions to one track", "limits")
    max_requests_per_second: int = _opt(50, "int", "new requests (and REQUEST_UPDATEs) one session may make per "
                                        "second, in bursts of as many; more are refused with EXCESSIVE_LOAD, and "
                                        "a session that sends 10 more while refused is closed", "limits")
    max_requests_per_second_per_source: int = _opt(500, "int", "the same over all sessions from one IP address",
                                                   "limits")
    max_upstream_requests_per_source: int = _opt(32, "int", "requests from one IP address waiting on an upstream "
                                                 "answer at once (cache misses); more are refused with "
                                                 "EXCESSIVE_LOAD", "limits")
    negative_cache_ttl: float = _opt(5.0, "float", "seconds an upstream refusal of a track (DOES_NOT_EXIST, ...) "
                                     "is remembered and repeated without asking again (0: off); a PUBLISH or "
                                     "PUBLISH_NAMESPACE covering the track ends it", "limits")
    max_sessions_per_source: int = _opt(500, "int", "concurrent QUIC connections from one source (an IPv4 address "
                                         "or an IPv6 /64), handshakes included; more are dropped at their first "
                                         "packet", "limits")
    max_handshakes_per_second_per_source: int = _opt(100, "int", "new QUIC handshakes one source may start per "
                                                      "second (bursts of half that); more are dropped at their "
                                                      "first packet", "limits")
    retry: bool = _opt(False, "bool", "answer each new connection's first packet with a QUIC Retry, so a handshake "
                       "starts only once the client proved its address (costs one round trip)", "limits",
                       shown="off")
    cache_bytes: int = _opt(256 * MiB, "size", "object cache for all tracks, bytes (0 disables caching)", "limits")
    cache_groups_per_track: int = _opt(4, "int", "latest groups kept per track (0 disables caching)", "limits")
    max_object_size: int = _opt(16 * MiB, "size", "largest object payload accepted, bytes", "limits")
    subscriber_queue_bytes: int = _opt(2 * MiB, "size", "send backlog per subscriber before late groups are "
                                       "dropped, bytes: the floor of --subscriber-queue-seconds", "limits")
    subscriber_queue_seconds: float = _opt(2.0, "float", "send backlog per subscriber before late groups are "
                                           "dropped, in seconds of the bitrate of the tracks it receives (a "
                                           "27 Mbit/s key frame alone is over 2 MiB); 0: the bytes floor only",
                                           "limits")
    upstream_token: str | None = _opt(None, "optstr", "token (JWT) the --upstream link presents in SETUP; prefer "
                                      "the environment variable, a command line is visible to local users",
                                      shown="none")
    auth_key: tuple[Path, ...] = _opt((), "paths", "public key (PEM or JWK) whose tokens are accepted; repeat "
                                      "it to rotate keys. Any --auth-* option turns authorization on",
                                      "auth", shown="none: the relay is open to all")
    auth_secret_file: Path | None = _opt(None, "path", "file holding an HS256 shared secret whose tokens are "
                                         "accepted (or the secret itself in env MOQ_RELAY_AUTH_SECRET; never "
                                         "on the command line)", "auth", shown="none")
    public: tuple[str, ...] = _opt((), "strs", "namespace prefix anyone may watch without a token, e.g. "
                                   "live/public (repeatable; only with authorization on)", "auth", shown="none")
    config: Path | None = _opt(None, "path", "the TOML file loaded, if any (set by load_config)", "")

    def __post_init__(self) -> None:
        if not self.node_name:
            object.__setattr__(self, "node_name", socket.gethostname() or "moq-relay")
        for f in fields(self):
            if f.name != "config":
                msg = _check(f.name, getattr(self, f.name))
                if msg:
                    raise ConfigError(f"{f.name}: {msg}")
        if (self.cert is None) != (self.key is None):
            given, missing = ("cert", "key") if self.key is None else ("key", "cert")
            raise ConfigError(f"{given} is set but {missing} is not: give both --cert and --key "
                              "(or neither, for a generated dev certificate)")

    @property
    def bind_address(self) -> tuple[str, int]:
        return parse_hostport(self.bind)

    @property
    def http_address(self) -> tuple[str, int] | None:
        return parse_hostport(self.http) if self.http else None

    @property
    def worker_count(self) -> int:
        """`workers` as a number: "auto" is the cores this process may run on (sched_getaffinity)."""
        return usable_cores() if self.workers == "auto" else int(self.workers)


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


_FIELDS = {f.name: f for f in fields(RelayConfig)}
_CHOICES = {"log_format": ("console", "json"), "log_level": ("debug", "info", "warning", "error", "critical")}
_MIN = {"cache_bytes": 0, "cache_groups_per_track": 0}  # other limits must be at least 1
_HOST = re.compile(r"[A-Za-z0-9_.-]+")
_SIZE = re.compile(r"(\d[\d_]*)\s*(b|k|kib|kb|m|mib|mb|g|gib|gb)?", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1 << 10, "kib": 1 << 10, "m": MiB, "mib": MiB, "g": 1 << 30, "gib": 1 << 30,
          "kb": 10**3, "mb": 10**6, "gb": 10**9}


def parse_hostport(s: str) -> tuple[str, int]:
    """Split "host:port" or "[v6addr]:port"; the port is required (0 means any free port)."""
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or s[end + 1:end + 2] != ":":
            raise ConfigError(f"bad address {s!r}: expected [v6addr]:port")
        host, port_s = s[1:end], s[end + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"bad address {s!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_s = s.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"bad address {s!r}: expected host:port, e.g. 127.0.0.1:4443")
        if ":" in host:
            raise ConfigError(f"bad address {s!r}: put IPv6 addresses in brackets, e.g. [::1]:4443")
        if not _HOST.fullmatch(host):
            raise ConfigError(f"bad address {s!r}: {host!r} is not a host name or address")
    if not port_s.isascii() or not port_s.isdigit() or int(port_s) > 65535:
        raise ConfigError(f"bad address {s!r}: port must be a number from 0 to 65535")
    return host, int(port_s)


def parse_size(s: str) -> int:
    """Bytes from "1048576", "16MiB", "16M" (binary) or "16MB" (decimal)."""
    m = _SIZE.fullmatch(s.strip())
    if not m:
        raise ValueError(f"expected a byte size such as 1048576, 16MiB or 2M, got {s!r}")
    return int(m[1]) * _UNITS[(m[2] or "b").lower()]


def _check(name: str, v: Any) -> str | None:
    """Why value v is invalid for field name, or None; shared by RelayConfig and load_config."""
    kind = _FIELDS[name].metadata["kind"]
    if name in ("bind", "http") and v is not None:
        try:
            parse_hostport(v)
        except ConfigError as e:
            return str(e)
    elif kind == "workers" and v != "auto" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        return f"must be an integer >= 1 or auto, got {v!r}"
    elif name in _CHOICES and v not in _CHOICES[name]:
        return f"unknown {name.replace('_', ' ')} {v!r} (expected {', '.join(_CHOICES[name])})"
    elif kind == "bool" and not isinstance(v, bool):
        return f"must be true or false, got {v!r}"
    elif kind in ("int", "size") and (isinstance(v, bool) or not isinstance(v, int) or v < _MIN.get(name, 1)):
        return f"must be an integer >= {_MIN.get(name, 1)}, got {v!r}"
    elif kind == "float" and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v < 0):
        return f"must be a number of seconds >= 0, got {v!r}"
    elif name == "upstream" and v is not None:
        u = urlsplit(v)
        if u.scheme not in ("moqt", "https") or not u.hostname:
            return f"expected moqt://host:port or https://host:port/path, got {v!r}"
    elif name == "upstream_fingerprint" and v is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", v.replace(":", "")):
            return f"expected 64 hex digits (SHA-256), got {v!r}"
    return None


def _convert(name: str, raw: Any, where: str, toml: bool = False) -> Any:
    """Turn a TOML value (native type) or an env/flag string into the field's type."""
    kind = _FIELDS[name].metadata["kind"]
    text = isinstance(raw, str) and not (toml and kind in ("int", "float"))  # TOML has real numbers
    try:
        if kind in ("paths", "strs"):  # repeatable: a flag list, a TOML list or comma-separated env
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
                raise ValueError(f"expected a list of strings, got {raw!r}")
            items = [v.strip() for v in items if v.strip()]
            return tuple(Path(v).expanduser() for v in items) if kind == "paths" else tuple(items)
        if kind == "bool":  # a flag (True), a TOML boolean, or env 1/0, true/false, yes/no, on/off
            if isinstance(raw, bool):
                return raw
            word = raw.strip().lower() if isinstance(raw, str) else None
            if word in ("1", "true", "yes", "on"):
                return True
            if word in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"expected true or false, got {raw!r}")
        if kind in ("path", "optstr") and text and raw == "":
            return None  # an empty value switches an optional setting off
        if kind == "path" and text:
            return Path(raw).expanduser()
        if kind in ("str", "optstr") and text:
            return raw
        if kind == "choice" and text:
            return raw.lower()
        if kind == "workers" and text:
            word = raw.strip().lower()
            if word != "auto" and not word.isdigit():
                raise ValueError(f"expected an integer or auto, got {raw!r}")
            return "auto" if word == "auto" else int(word)
        if kind == "workers" and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if kind == "int" and text:
            return int(raw)
        if kind == "size" and text:
            return parse_size(raw)
        if kind == "float" and text:
            return float(raw)
        if kind in ("int", "size") and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if kind == "float" and isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    want = {"int": "an integer", "size": "a byte size", "float": "a number", "workers": "an integer or auto"}.get(kind, "a string")
    raise ConfigError(f"{where}: expected {want}, got {raw!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


_EPILOG = f"""\
configuration precedence (later wins): built-in defaults < TOML file (--config or {ENV_PREFIX}CONFIG)
  < environment {ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}MAX_SESSIONS=500) < command-line flags.
TOML keys are the option names in snake_case (max_sessions = 500); unknown keys are errors.
Byte sizes accept suffixes: K/KiB, M/MiB, G/GiB (binary) or KB/MB/GB (decimal).
An empty value (e.g. --http '') switches an optional setting off."""


def build_parser() -> argparse.ArgumentParser:
    """The moq-relay flags; every default is suppressed so only given flags override file and env."""
    p = argparse.ArgumentParser(prog="moq-relay", description="moq-relay: a caching, fan-out MoQ relay "
                                "(raw QUIC and WebTransport on one UDP port).", epilog=_EPILOG,
                                argument_default=argparse.SUPPRESS, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="TOML", help=f"configuration file (env {ENV_PREFIX}CONFIG)")
    groups = {g: p.add_argument_group(g) for g in ("relay", "auth", "limits", "logging")}
    for name, f in _FIELDS.items():
        if name == "config":
            continue
        kind, default = f.metadata["kind"], f.default
        metavar = {"path": "PATH", "int": "N", "size": "BYTES", "float": "SEC"}.get(kind, "VALUE")
        if name in _CHOICES:
            metavar = "|".join(_CHOICES[name]) if name == "log_format" else "LEVEL"
        elif name in ("bind", "http"):
            metavar = "HOST:PORT"
        elif kind == "workers":
            metavar = "N|auto"
        elif name in ("upstream", "node_name", "upstream_fingerprint"):
            metavar = {"upstream": "URL", "node_name": "NAME", "upstream_fingerprint": "HEX"}[name]
        shown = f.metadata["shown"] or (f"{default // MiB}MiB" if kind == "size" and default >= MiB else default)
        if isinstance(shown, float) and shown.is_integer():
            shown = int(shown)
        tail = f" (default: {shown}; env {_env(name)})" if shown is not None else f" (env {_env(name)})"
        if kind in ("paths", "strs"):  # repeatable
            metavar = "PATH" if kind == "paths" else "PREFIX"
            groups[f.metadata["group"]].add_argument(_flag(name), metavar=metavar, action="append",
                                                     help=f.metadata["help"] + tail)
            continue
        if kind == "bool":
            groups[f.metadata["group"]].add_argument(_flag(name), action="store_const", const=True,
                                                     help=f.metadata["help"] + tail)
            continue
        if name == "upstream_token":
            metavar = "JWT"
        groups[f.metadata["group"]].add_argument(_flag(name), metavar=metavar, help=f.metadata["help"] + tail)
    return p


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found") from None
    except OSError as e:
        raise ConfigError(f"config file {str(path)!r}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r}: invalid TOML: {e}") from None
    for key in data:
        if key not in _FIELDS or key == "config":
            hint = difflib.get_close_matches(key, [n for n in _FIELDS if n != "config"], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"config file {str(path)!r}: unknown key {key!r}{extra}")
    return data


def load_config(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> RelayConfig:
    """Build the relay's configuration; raises ConfigError with a message fit for the operator.

    argv defaults to sys.argv[1:] and environ to os.environ; --help exits through argparse.
    """
    env = os.environ if environ is None else environ
    flags = vars(build_parser().parse_args(sys.argv[1:] if argv is None else argv))
    values: dict[str, Any] = {}
    where: dict[str, str] = {}

    config_path = flags.pop("config") if "config" in flags else env.get(_env("config"))
    if config_path:
        path = Path(config_path).expanduser()
        values["config"] = path
        for key, raw in _read_toml(path).items():
            where[key] = f"config file {str(path)!r}: {key}"
            values[key] = _convert(key, raw, where[key], toml=True)
    for name in _FIELDS:
        if name != "config" and _env(name) in env:
            where[name] = f"environment {_env(name)}"
            values[name] = _convert(name, env[_env(name)], where[name])
    for name, raw in flags.items():
        where[name] = _flag(name)
        values[name] = _convert(name, raw, where[name])

    for name, v in values.items():
        msg = None if name == "config" else _check(name, v)
        if msg:
            raise ConfigError(f"{where[name]}: {msg}")
    config = RelayConfig(**values)  # cross-field checks (cert without key) come before file checks
    for name in ("cert", "key"):
        if getattr(config, name) is not None and not getattr(config, name).is_file():
            raise ConfigError(f"{where[name]}: no such file {str(values[name])!r}")
    for path in (*config.auth_key, *([config.auth_secret_file] if config.auth_secret_file else [])):
        if not path.is_file():
            flag = "auth_key" if path in config.auth_key else "auth_secret_file"
            raise ConfigError(f"{where[flag]}: no such file {str(path)!r}")
    if config.web_root is not None and not config.web_root.is_dir():
        raise ConfigError(f"{where['web_root']}: no such directory {str(config.web_root)!r}")
    return config
