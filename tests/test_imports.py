"""The sans-IO core stays free of I/O libraries: nothing under moq/wire or moq/session may
import asyncio, aioquic or structlog, directly (checked in the source with `ast`) or
indirectly (checked by importing each module in a fresh interpreter).

And no package reaches into another object's private `_` attributes (also with `ast`):
objects talk through their public methods, so each can change its insides alone."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_PACKAGES = ("moq/wire", "moq/session")
FORBIDDEN = frozenset({"asyncio", "aioquic", "structlog"})


def pure_sources() -> list[Path]:
    return sorted(p for pkg in PURE_PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def forbidden_imports(source: str, filename: str = "<src>") -> list[str]:
    """Top-level names of absolute imports in `source` that are forbidden, wherever they
    occur (module level, inside functions, under `if TYPE_CHECKING`, ...)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{filename}:{node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def test_checker_detects_forbidden_imports():
    src = (
        "import os\nimport asyncio\nfrom aioquic.quic import connection\nimport structlog as log\n"
        "def f():\n    import asyncio.tasks\nfrom .asyncio import x\nfrom . import structlog\n"
    )
    assert [hit.split(": ")[1] for hit in forbidden_imports(src)] == [
        "asyncio", "aioquic.quic", "structlog", "asyncio.tasks"
    ]


def test_there_is_something_to_check():
    names = {module_name(p) for p in pure_sources()}
    assert "moq.wire.control" in names and "moq.wire.framing" in names


@pytest.mark.parametrize("path", pure_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_source_has_no_forbidden_imports(path):
    assert forbidden_imports(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))) == []


_PROBE = """
import importlib, json, sys
name = sys.argv[1]
mod = importlib.import_module(name)
print(json.dumps({"file": mod.__file__, "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize("module", sorted({module_name(p) for p in pure_sources()}))
def test_module_does_not_load_forbidden_modules(module):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-c", _PROBE, module], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the moq-rs wheel installs another top-level `moq` package; make sure we probed ours
    assert Path(result["file"]).resolve().is_relative_to(ROOT), result["file"]
    loaded = {m.split(".")[0] for m in result["modules"]}
    assert not (loaded & FORBIDDEN), f"{module} loads {sorted(loaded & FORBIDDEN)}"


# --- no package reaches into another object's private attributes -----------------------------
#: packages checked; moq/transport is the aioquic seam (it must use aioquic's privates) and has its own test
ENCAPSULATED = ("relay", "publisher", "viewer", "moq")
ENCAPSULATION_EXEMPT = ("moq/transport",)
#: namedtuple's public API is spelled with a leading underscore to stay out of the fields' way
NAMEDTUPLE_API = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})
#: (file, attribute) -> why it is allowed.  Keep this short; every entry is a debt.
PRIVATE_ALLOWED: dict[tuple[str, str], str] = {}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in NAMEDTUPLE_API


def private_reaches(source: str, filename: str = "<src>") -> list[tuple[str, int, str]]:
    """(file, line, attribute) for every `obj._name` where obj is not `self`, `cls` or
    `super()`, and every getattr/hasattr/setattr/delattr(obj, "_name") (dunders excepted)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            found.append((filename, node.lineno, node.attr))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr", "delattr") and len(node.args) >= 2):
            owner, name = node.args[0], node.args[1]
            if (isinstance(name, ast.Constant) and isinstance(name.value, str) and _is_private(name.value)
                    and not (isinstance(owner, ast.Name) and owner.id in ("self", "cls"))):
                found.append((filename, node.lineno, name.value))
    return found


def encapsulated_sources() -> list[Path]:
    return sorted(
        p for pkg in ENCAPSULATED for p in (ROOT / pkg).rglob("*.py")
        if not any(p.relative_to(ROOT).as_posix().startswith(ex + "/") for ex in ENCAPSULATION_EXEMPT)
    )


def test_private_checker_detects_reaches():
    src = (
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine = other._theirs\n"          # line 3: other._theirs
        "        super()._hook()\n"
        "        x = self.conn._pending\n"              # line 5
        "        y = other.__class__, other.__dict__\n"
        "        z = getattr(other, '_hidden', None)\n"  # line 7
        "        return loc._replace(group=1), cls._fine, hasattr(self, '_ok')\n"
    )
    assert [(line, name) for _, line, name in private_reaches(src)] == [(3, "_theirs"), (5, "_pending"), (7, "_hidden")]


def test_encapsulation_checks_the_packages():
    names = {p.relative_to(ROOT).as_posix() for p in encapsulated_sources()}
    assert {"relay/relay.py", "moq/fanout.py", "moq/session/dataplane.py", "viewer/subscribe.py"} <= names
    assert not any(n.startswith("moq/transport/") for n in names)


def test_allow_list_entries_are_still_needed():
    used = {(f, name) for p in encapsulated_sources()
            for f, _, name in private_reaches(p.read_text(encoding="utf-8"), p.relative_to(ROOT).as_posix())}
    assert set(PRIVATE_ALLOWED) <= used, f"stale allow-list entries: {sorted(set(PRIVATE_ALLOWED) - used)}"


@pytest.mark.parametrize("path", encapsulated_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_reaching_into_private_attributes(path):
    rel = path.relative_to(ROOT).as_posix()
    hits = [f"{f}:{line}: .{name}" for f, line, name in private_reaches(path.read_text(encoding="utf-8"), rel)
            if (f, name) not in PRIVATE_ALLOWED]
    assert hits == []
