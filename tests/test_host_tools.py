"""The host tools' zipapp (scripts/host_tools.py): reproducible from the sources alone, runnable by a bare python3,
and the Python floor the host_tools role checks comes from the package's pyproject."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("host_tools", REPO / "scripts" / "host_tools.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_same_sources_give_the_same_bytes_whatever_their_times(tmp_path: Path) -> None:
    tool = builder()
    first = tool.build(tmp_path / "a.pyz")
    assert first["changed"] is True
    # A fresh clone gives every file a new modification time: the archive must not change with it.
    for source in tool.sources():
        os.utime(source, (1_900_000_000, 1_900_000_000))
    again = tool.build(tmp_path / "a.pyz")
    assert again == {**first, "changed": False}
    elsewhere = tool.build(tmp_path / "b.pyz")
    assert elsewhere["sha256"] == first["sha256"]
    names = zipfile.ZipFile(tmp_path / "a.pyz").namelist()
    assert names[0] == "__main__.py" and "mov_host/__main__.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_archive_runs_each_tool_with_a_bare_python(tmp_path: Path) -> None:
    builder().build(tmp_path / "tools.pyz")
    env = {"PATH": os.environ["PATH"], "PYTHONNOUSERSITE": "1"}
    usage = subprocess.run([sys.executable, "-I", tmp_path / "tools.pyz"], capture_output=True, text=True, env=env)
    assert usage.returncode == 2 and "mov-backup" in usage.stderr
    for tool in ("movctl", "mov-backup", "mov-status-page", "mov-cleanup", "mov-cron-run"):
        helped = subprocess.run(
            [sys.executable, "-I", tmp_path / "tools.pyz", tool, "--help"], capture_output=True, text=True, env=env
        )
        assert helped.returncode == 0 and "usage:" in helped.stdout, (tool, helped.stderr[-400:])


def test_the_python_floor_is_read_from_requires_python(tmp_path: Path) -> None:
    tool = builder()
    tool.PYPROJECT = tmp_path / "pyproject.toml"
    tool.PYPROJECT.write_text('[project]\nrequires-python = ">= 3.12"\n')
    assert tool.min_python() == "3.12"
    tool.PYPROJECT.write_text('[project]\nrequires-python = "~=3.11"\n')
    try:
        tool.min_python()
    except SystemExit as refused:
        assert "is not of the form >=X.Y" in str(refused)
    else:
        raise AssertionError("a requires-python the preflight cannot compare was accepted")
