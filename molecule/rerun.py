"""Run a scenario's converge again from its testinfra suite, with extra variables on top (a changed tree)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path


def rerun_converge(scenario: Path, extra: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """The scenario's converge playbook against its box (mov-<scenario>), with `extra` as extra variables."""
    box = f"mov-{os.environ.get('MOLECULE_SCENARIO_NAME', scenario.name)}"
    repo = scenario.parent.parent
    argv = ["ansible-playbook", str(scenario / "converge.yml"), "-i", f"{box},", "-c", "community.docker.docker"]
    return subprocess.run(
        [*argv, "-e", json.dumps(extra)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, ANSIBLE_ROLES_PATH=str(repo / "roles"), ANSIBLE_NOCOLOR="1"),
    )
