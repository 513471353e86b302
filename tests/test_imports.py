"""The sans-IO core stays free of I/O libraries: nothing under moq/wire or moq/session may
import asyncio, aioquic or structlog, directly (checked in the source with `ast`) or
indirectly (checked by importing each module in a fresh interpreter)."""

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
