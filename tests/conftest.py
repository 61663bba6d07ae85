"""Shared helpers of the repository-level tests."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


def filter_plugin(role: str, name: str) -> ModuleType:
    """A role's filter plugin module (roles/<role>/filter_plugins/<name>.py), for testing its functions."""
    spec = importlib.util.spec_from_file_location(name, REPO / "roles" / role / "filter_plugins" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ansible_env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")


PreflightRunner = Callable[[str, dict[str, object]], subprocess.CompletedProcess[str]]


@pytest.fixture
def role_preflight(tmp_path: Path) -> PreflightRunner:
    """Run a role's preflight on the controller with the given variables."""

    def run(role: str, variables: dict[str, object]) -> subprocess.CompletedProcess[str]:
        extra = tmp_path / "vars.json"
        extra.write_text(json.dumps(variables))
        return subprocess.run(
            [
                "ansible-playbook",
                "-i",
                "localhost,",
                str(REPO / "tests/playbooks/role_preflight.yml"),
                "--tags",
                "preflight",
                "-e",
                f"role_under_test={role}",
                "-e",
                f"@{extra}",
            ],
            cwd=REPO,
            env=ansible_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run
