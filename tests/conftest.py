"""Shared helpers of the repository-level tests."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mov_render import ansible_env

REPO = Path(__file__).resolve().parent.parent


def filter_plugin(role: str, name: str) -> ModuleType:
    """A role's filter plugin module (roles/<role>/filter_plugins/<name>.py), for testing its functions."""
    spec = importlib.util.spec_from_file_location(name, REPO / "roles" / role / "filter_plugins" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_role(tmp_path: Path, role: str, variables: dict[str, object], tasks_from: str = "main") -> str:
    """Run a role's entry point (preflight, configure and its handlers for main) on the controller with these
    variables (tests/playbooks/role_configure.yml); its output, after asserting it succeeded."""
    extra = tmp_path / f"{role}-vars.json"
    extra.write_text(json.dumps({"role_under_test": role, "role_tasks_from": tasks_from, **variables}))
    result = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(REPO / "tests/playbooks/role_configure.yml"), "-e", f"@{extra}"],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


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


def host_outcomes(report: dict[str, Any]) -> dict[str, list[str]]:
    """host -> failure messages of its failed tasks (empty when every task passed), from the ansible.posix.json
    callback's report."""
    outcomes: dict[str, list[str]] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                outcomes.setdefault(host, [])
                if result.get("failed"):
                    items = result.get("results") or [result]
                    outcomes[host] += [" ".join(str(i.get("msg", "")).split()) for i in items if i.get("failed")]
    return outcomes


def role_preflights(
    role: str, cases: Mapping[str, Mapping[str, object]], tmp: Path, gather_facts: bool = True
) -> dict[str, list[str]]:
    """One role's preflight for many cases in one ansible-playbook run (one start-up instead of one a case): each
    case is a host of its own, all of them this machine through the local connection, so a case that fails stops
    only itself. Returns case -> its failure messages ([] when it passed)."""
    hosts = {f"case{n}": {**variables, "ansible_connection": "local"} for n, variables in enumerate(cases.values())}
    inventory = tmp / "preflight-cases.yml"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory),
            str(REPO / "tests/playbooks/role_preflight.yml"),
            "--tags",
            "preflight",
            "-e",
            json.dumps({"role_under_test": role, "role_preflight_gather_facts": gather_facts}),
        ],
        cwd=REPO,
        env=dict(
            ansible_env(executor="plain"),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
            ANSIBLE_CALLBACKS_ENABLED="ansible.posix.json",
            ANSIBLE_CACHE_PLUGIN="memory",
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        by_host = host_outcomes(json.loads(result.stdout))
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    missing = sorted(set(hosts) - set(by_host))
    assert not missing, f"cases that never ran: {missing}"
    return {name: by_host[f"case{n}"] for n, name in enumerate(cases)}
