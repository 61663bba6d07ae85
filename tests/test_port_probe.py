"""roles/stack's exposure check (library/mov_port_probe.py, tasks/verify.yml): run through ansible-playbook on this
machine against loopback ports it opens; a port that must answer and does not, or must not and does, fails the task
and is named, and the ports are probed at once."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from mov_render import local_play


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def free_port() -> int:
    """A loopback port nothing listens on (it refuses at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def probes(tmp: Path, cases: list[dict[str, object]]) -> list[dict[str, object]]:
    """Each case a mov_port_probe task on 127.0.0.1 (errors kept); their results in order."""
    tasks: list[dict[str, object]] = []
    for i, case in enumerate(cases):
        task = {"host": "127.0.0.1", "open_hint": "look at ufw.", "closed_hint": "look at compose.", **case}
        tasks.append({"mov_port_probe": task, "register": f"r{i}", "ignore_errors": True})
    results = "[" + ", ".join(f"r{i}" for i in range(len(cases))) + "]"
    return local_play(tmp, tasks, REPO / "roles" / "stack", results)


def test_answering_and_closed_ports_pass_and_each_wrong_one_is_named(tmp_path: Path, listening: int) -> None:
    closed, other = free_port(), free_port()
    ok, silent, answering = probes(
        tmp_path,
        [
            {"open": [listening], "closed": [closed]},
            {"open": [listening, closed, other], "timeout": 1.5, "connect_timeout": 0.5},
            {"closed": [closed, listening]},
        ],
    )
    assert not ok.get("failed") and (ok["silent"], ok["answering"], ok["changed"]) == ([], [], False), ok
    assert silent["failed"] and silent["silent"] == sorted([closed, other]), silent
    assert f"127.0.0.1:{min(closed, other)} does not answer from the controller; look at ufw." in str(silent["msg"])
    assert str(listening) not in str(silent["msg"])
    # Two ports, each retried for 1.5 s: probed at once, the call takes one wait, not two.
    assert 1.5 <= float(str(silent["elapsed"])) < 2.5, silent
    assert answering["failed"] and answering["answering"] == [listening], answering
    assert str(answering["msg"]) == f"127.0.0.1:{listening} answers from the controller but must not; look at compose."


def verify_task(name: str) -> dict[str, object]:
    """A task of roles/stack/tasks/verify.yml by its name, at the top or in a block, as the role has it."""
    tasks = yaml.safe_load((REPO / "roles" / "stack" / "tasks" / "verify.yml").read_text())
    found = [t for top in tasks for t in top.get("block", [top]) if t.get("name") == name]
    assert len(found) == 1, name
    return dict(found[0])


def test_the_deploys_closed_port_check_runs_in_the_background_and_still_fails_naming_the_port(
    tmp_path: Path, listening: int
) -> None:
    # The verify step's own two tasks: the probe started (async, poll 0) before the other checks, and its result
    # waited for at the end; a port that answers fails the second one, named, and a closed one passes.
    start = verify_task("Start probing, from the controller, the ports that must stay closed")
    collect = {**verify_task("These ports stay closed"), "ignore_errors": True}
    results = []
    for case, ports in (("closed", [free_port()]), ("answering", [free_port(), listening])):
        (tmp_path / case).mkdir()
        play_vars = {
            "stack_verify_address": "127.0.0.1",
            "stack_verify_closed_ports": ports,
            "stack_mqtt_tls_port": 8883,
        }
        expr = f"[{start['register']}, {collect['register']}]"
        job, result = local_play(tmp_path / case, [start, collect], REPO / "roles" / "stack", expr, play_vars)
        # It returned at once and the probe went on; a probe changes nothing, started or not.
        assert job["started"] == 1 and job["finished"] == 0 and not job["changed"], job
        results.append(result)
    passed, failed = results
    assert not passed.get("failed") and passed["answering"] == [] and passed["finished"], passed
    assert failed["failed"] and failed["answering"] == [listening], failed
    assert f"127.0.0.1:{listening} answers from the controller but must not; look at the compose file's" in str(
        failed["msg"]
    ), failed
