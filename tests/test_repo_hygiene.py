"""The test run leaves the repository as it found it: pytest imports every module under tests/ and
src/viscurate (``--doctest-modules``), so importing one must write nothing (a fixture script that ran
on import once left ``corpus/`` and ``-q/`` in the repository root)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _modules() -> list[Path]:
    found = sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "src" / "viscurate").rglob("*.py"))
    return [p for p in found if "__pycache__" not in p.parts]


@pytest.mark.parametrize("path", [p for p in _modules() if "fixtures" in p.parts],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_importing_a_fixture_module_writes_nothing(path: Path, tmp_path: Path) -> None:
    code = ("import importlib.util, sys; "
            f"spec = importlib.util.spec_from_file_location('m', {str(path)!r}); "
            "m = importlib.util.module_from_spec(spec); sys.argv = ['pytest', '-q']; spec.loader.exec_module(m)")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    assert sorted(os.listdir(tmp_path)) == []


def test_no_stray_folders_tracked() -> None:
    """Nothing tracked at the top level but the project's own folders and files."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    top = {line.split("/", 1)[0] for line in out.stdout.splitlines() if line}
    allowed = {".ci", ".gitignore", "README.md", "bench", "docs", "examples", "pyproject.toml", "src", "tests",
               "constraints.txt"}
    assert top <= allowed, f"unexpected tracked top-level entries: {sorted(top - allowed)}"
