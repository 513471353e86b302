"""Config layering (defaults < TOML < env < flags), validation messages and address parsing."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from relay import config as relay_config
from relay.config import ConfigError, MiB, RelayConfig, build_parser, load_config, parse_hostport, parse_size

pytestmark = pytest.mark.timeout(10)


def toml(tmp_path: Path, text: str) -> str:
    p = tmp_path / "relay.toml"
    p.write_text(text)
    return str(p)


def test_defaults():
    c = load_config([], {})
    assert c.bind == "127.0.0.1:4443" and c.bind_address == ("127.0.0.1", 4443)
    assert (c.cert, c.key, c.http, c.http_address, c.web_root, c.upstream, c.config) == (None,) * 7
    assert (c.log_format, c.log_level, c.drain_timeout) == ("console", "info", 5.0)
    assert c.max_sessions == 10_000 and c.max_requests_per_session == 1_000
    assert c.max_subscribers_per_track == 10_000 and c.cache_groups_per_track == 4
    assert (c.cache_bytes, c.max_object_size, c.subscriber_queue_bytes) == (256 * MiB, 16 * MiB, 2 * MiB)
    assert c.node_name == socket.gethostname()
    assert c == RelayConfig()


def test_each_layer_overrides_the_previous_and_leaves_the_rest(tmp_path):
    path = toml(tmp_path, 'max_sessions = 10\nlog_level = "debug"\nhttp = "127.0.0.1:9000"\n'
                'drain_timeout = 2\nnode_name = "from-toml"\n')
    env = {"MOQ_RELAY_LOG_LEVEL": "warning", "MOQ_RELAY_HTTP": "127.0.0.1:9001", "MOQ_RELAY_NODE_NAME": "from-env"}
    c = load_config(["--config", path, "--node-name", "from-flag"], env)
    assert c.max_sessions == 10  # toml only
    assert c.drain_timeout == 2.0 and isinstance(c.drain_timeout, float)  # toml only, int widened
    assert c.log_level == "warning"  # env over toml
    assert c.http == "127.0.0.1:9001" and c.http_address == ("127.0.0.1", 9001)  # env over toml
    assert c.node_name == "from-flag"  # flag over env over toml
    assert c.bind == "127.0.0.1:4443" and c.log_format == "console"  # defaults untouched
    assert c.config == Path(path)


def test_flags_override_env_and_toml_for_the_same_key(tmp_path):
    path = toml(tmp_path, "max_sessions = 10\n")
    env = {"MOQ_RELAY_MAX_SESSIONS": "20"}
    assert load_config(["--config", path], {}).max_sessions == 10
    assert load_config(["--config", path], env).max_sessions == 20
    assert load_config(["--config", path, "--max-sessions", "30"], env).max_sessions == 30
    assert load_config(["--max-sessions", "30"], {}).max_sessions == 30


def test_flag_default_does_not_hide_lower_layers():
    # --bind has a default in --help, but not passing it must keep the env value
    assert load_config(["--log-level", "debug"], {"MOQ_RELAY_BIND": "[::1]:5000"}).bind == "[::1]:5000"


def test_config_file_from_env(tmp_path):
    path = toml(tmp_path, 'bind = "0.0.0.0:7000"\n')
    c = load_config([], {"MOQ_RELAY_CONFIG": path})
    assert c.bind == "0.0.0.0:7000" and c.config == Path(path)
    assert load_config(["--config", ""], {"MOQ_RELAY_CONFIG": path}).bind == "127.0.0.1:4443"


def test_all_flags_and_types(tmp_path):
    cert, key, web = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "web"
    cert.write_text("x")
    key.write_text("x")
    web.mkdir()
    c = load_config(["--bind", "[::]:0", "--cert", str(cert), "--key", str(key), "--http", "127.0.0.1:0",
                     "--log-format", "json", "--log-level", "ERROR", "--drain-timeout", "0.5",
                     "--web-root", str(web), "--upstream", "moqt://parent:4443", "--max-sessions", "1",
                     "--max-requests-per-session", "2", "--max-subscribers-per-track", "3",
                     "--cache-bytes", "0", "--cache-groups-per-track", "0", "--max-object-size", "1KiB",
                     "--subscriber-queue-bytes", "1MB"], {})
    assert c.bind_address == ("::", 0) and c.cert == cert and c.key == key and c.web_root == web
    assert (c.log_format, c.log_level, c.drain_timeout, c.upstream) == ("json", "error", 0.5, "moqt://parent:4443")
    assert (c.max_sessions, c.max_requests_per_session, c.max_subscribers_per_track) == (1, 2, 3)
    assert (c.cache_bytes, c.cache_groups_per_track, c.max_object_size, c.subscriber_queue_bytes) == (
        0, 0, 1024, 1_000_000)


def test_env_type_conversion_and_empty_switches_off(tmp_path):
    path = toml(tmp_path, 'http = "127.0.0.1:8080"\ncache_bytes = "64MiB"\n')
    c = load_config(["--config", path], {"MOQ_RELAY_HTTP": "", "MOQ_RELAY_DRAIN_TIMEOUT": "1.5",
                                         "MOQ_RELAY_MAX_OBJECT_SIZE": "2M", "MOQ_RELAY_PORT": "tcp://10.0.0.1:80"})
    assert c.http is None and c.drain_timeout == 1.5 and c.max_object_size == 2 * MiB
    assert c.cache_bytes == 64 * MiB


@pytest.mark.parametrize(("argv", "env", "needle"), [
    (["--cert", "c.pem"], {}, "cert is set but key is not"),
    (["--max-sessions", "-1"], {}, "--max-sessions: must be an integer >= 1, got -1"),
    (["--cache-bytes", "-5"], {}, "--cache-bytes: expected a byte size"),
    ([], {"MOQ_RELAY_MAX_SUBSCRIBERS_PER_TRACK": "-3"}, "MOQ_RELAY_MAX_SUBSCRIBERS_PER_TRACK: must be an integer >= 1"),
    ([], {"MOQ_RELAY_MAX_SESSIONS": "many"}, "environment MOQ_RELAY_MAX_SESSIONS: invalid literal"),
    (["--drain-timeout", "-1"], {}, "--drain-timeout: must be a number of seconds >= 0"),
    (["--drain-timeout", "nan"], {}, "--drain-timeout: must be a number of seconds >= 0"),
    (["--log-format", "xml"], {}, "--log-format: unknown log format 'xml' (expected console, json)"),
    ([], {"MOQ_RELAY_LOG_LEVEL": "loud"}, "environment MOQ_RELAY_LOG_LEVEL: unknown log level 'loud'"),
    (["--bind", "localhost"], {}, "--bind: bad address 'localhost': expected host:port"),
    (["--bind", "::1:4443"], {}, "put IPv6 addresses in brackets"),
    (["--http", "127.0.0.1:99999"], {}, "--http: bad address '127.0.0.1:99999': port must be"),
    (["--upstream", "ftp://x"], {}, "--upstream: expected moqt://host:port"),
    (["--config", "/nonexistent/relay.toml"], {}, "config file '/nonexistent/relay.toml' not found"),
    (["--web-root", "/nonexistent/web"], {}, "--web-root: no such directory '/nonexistent/web'"),
])
def test_errors_name_the_key_and_source(argv, env, needle):
    with pytest.raises(ConfigError) as e:
        load_config(argv, env)
    assert needle in str(e.value)


def test_cert_file_must_exist(tmp_path):
    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(ConfigError, match=r"--cert: no such file '/nonexistent/c.pem'"):
        load_config(["--cert", "/nonexistent/c.pem", "--key", str(key)], {})


def test_key_without_cert_from_toml(tmp_path):
    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(ConfigError, match="key is set but cert is not"):
        load_config(["--config", toml(tmp_path, f'key = "{key}"\n')], {})


def test_toml_unknown_key_is_named_with_a_hint(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'max_sesions' \(did you mean 'max_sessions'\?\)"):
        load_config(["--config", toml(tmp_path, "max_sesions = 5\n")], {})
    with pytest.raises(ConfigError, match="unknown key 'config'"):
        load_config(["--config", toml(tmp_path, 'config = "other.toml"\n')], {})


def test_toml_wrong_type_and_syntax(tmp_path):
    with pytest.raises(ConfigError, match=r"relay.toml': max_sessions: expected an integer, got '10'"):
        load_config(["--config", toml(tmp_path, 'max_sessions = "10"\n')], {})
    with pytest.raises(ConfigError, match=r"expected an integer, got True"):
        load_config(["--config", toml(tmp_path, "max_sessions = true\n")], {})
    with pytest.raises(ConfigError, match=r"log_format: expected a string, got 1"):
        load_config(["--config", toml(tmp_path, "log_format = 1\n")], {})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(["--config", toml(tmp_path, "max_sessions = \n")], {})


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="max_object_size: must be an integer >= 1"):
        RelayConfig(max_object_size=0)
    with pytest.raises(ConfigError, match="bind: bad address"):
        RelayConfig(bind="nowhere")


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:4443", ("127.0.0.1", 4443)),
    ("localhost:0", ("localhost", 0)),
    ("relay-1.example.com:443", ("relay-1.example.com", 443)),
    ("[::1]:4443", ("::1", 4443)),
    ("[::]:65535", ("::", 65535)),
    ("[2001:db8::1]:80", ("2001:db8::1", 80)),
])
def test_parse_hostport(text, expected):
    assert parse_hostport(text) == expected


@pytest.mark.parametrize("text", ["", "4443", ":4443", "host:", "host:port", "host:-1", "host:65536", "::1:80",
                                  "[::1]", "[::1]4443", "[nothost]:80", "[::1:80", "a b:1", "h:٣"])
def test_parse_hostport_rejects(text):
    with pytest.raises(ConfigError, match="bad address"):
        parse_hostport(text)


def test_parse_size():
    assert [parse_size(s) for s in ("0", "1_024", "2K", "2KiB", "2kb", "3M", "3 MiB", "1G", "1GB")] == [
        0, 1024, 2048, 2048, 2000, 3 * MiB, 3 * MiB, 1 << 30, 10**9]
    for bad in ("", "-1", "1.5M", "1T", "M"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_help_explains_options_and_precedence(capsys):
    with pytest.raises(SystemExit) as e:
        load_config(["--help"], {})
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out == build_parser().format_help()
    for needle in ("--bind HOST:PORT", "--cert PATH", "--key PATH", "--http HOST:PORT", "--config TOML",
                   "--log-format console|json", "--log-level LEVEL", "--drain-timeout SEC", "--web-root",
                   "--upstream URL", "--max-sessions N", "--cache-bytes BYTES", "MOQ_RELAY_MAX_SESSIONS",
                   "default: 256MiB", "precedence", "TOML file", "command-line flags"):
        assert needle in out, needle


def test_unknown_flag_and_no_abbreviations():
    with pytest.raises(SystemExit):
        load_config(["--nope"], {})
    with pytest.raises(SystemExit):
        load_config(["--max-sess", "3"], {})


def test_workers_default_toml_env_flag_and_auto(tmp_path, monkeypatch):
    assert load_config([], {}).workers == 1 and load_config([], {}).worker_count == 1
    monkeypatch.setattr("relay.config.usable_cores", lambda: 6)
    path = toml(tmp_path, "workers = 3\n")
    assert load_config(["--config", path], {}).worker_count == 3
    assert load_config(["--config", toml(tmp_path, 'workers = "auto"\n')], {}).worker_count == 6
    assert load_config(["--config", path], {"MOQ_RELAY_WORKERS": "AUTO"}).workers == "auto"  # env over toml
    assert load_config(["--config", path], {"MOQ_RELAY_WORKERS": "4"}).worker_count == 4
    c = load_config(["--config", path, "--workers", "2"], {"MOQ_RELAY_WORKERS": "auto"})  # flag over both
    assert (c.workers, c.worker_count) == (2, 2)
    assert load_config(["--workers", "auto"], {}).worker_count == 6
    assert RelayConfig(workers="auto").worker_count == 6


def test_usable_cores_is_the_affinity_mask():
    assert relay_config.usable_cores() == len(os.sched_getaffinity(0)) >= 1


@pytest.mark.parametrize(("argv", "env", "text", "needle"), [
    (["--workers", "0"], {}, None, "--workers: must be an integer >= 1 or auto, got 0"),
    (["--workers", "many"], {}, None, "--workers: expected an integer or auto, got 'many'"),
    (["--workers", "-2"], {}, None, "--workers: expected an integer or auto, got '-2'"),
    ([], {"MOQ_RELAY_WORKERS": "1.5"}, None, "environment MOQ_RELAY_WORKERS: expected an integer or auto"),
    ([], {}, "workers = true\n", "workers: expected an integer or auto, got True"),
    ([], {}, "workers = 0\n", "workers: must be an integer >= 1 or auto, got 0"),
    ([], {}, 'workers = "all"\n', "workers: expected an integer or auto, got 'all'"),
])
def test_workers_errors(tmp_path, argv, env, text, needle):
    if text is not None:
        argv = ["--config", toml(tmp_path, text), *argv]
    with pytest.raises(ConfigError) as e:
        load_config(argv, env)
    assert needle in str(e.value)
    with pytest.raises(ConfigError, match="workers: must be an integer >= 1 or auto"):
        RelayConfig(workers=0)


def test_help_documents_workers_and_migration():
    text = " ".join(build_parser().format_help().split())
    assert "--workers N|auto" in text and "SO_REUSEPORT" in text and "MOQ_RELAY_WORKERS" in text
    assert "migration to a new address is not supported across workers" in text
