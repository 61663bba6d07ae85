"""roles/host_state: the host roles are skipped only when the deploy's inputs and the host's state are those the last
full deploy recorded, and the check names what differs otherwise. Runs the role's action plugin and module through
ansible-playbook on this machine, against a temporary tree standing for the host (four runs of one play each)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from mov_render import local_play

ROLE = REPO / "roles" / "host_state"


def play(tmp: Path, steps: list[dict[str, object]], extra: tuple[str, ...] = ()) -> list[dict[str, object]]:
    """Run `steps` in one play on localhost; a step {"state": ...} is a mov_host_state task on the tree in tmp, any
    other is a task as given. Returns the mov_host_state results in order."""
    spec = {
        "path": str(tmp / "stamp" / "host-state.json"),
        "inputs": [str(tmp / "inputs")],
        "facts": {"release": "13"},
        "roots": [
            {"path": str(tmp / "etc"), "depth": -1, "content": True},
            {"path": str(tmp / "logs"), "depth": 1, "content": False},
            {"path": "~mov-no-such-user/.ssh", "depth": -1, "content": True},  # an admin not created yet
        ],
        "exclude": [str(tmp / "etc" / "adjtime")],
        "volatile_suffixes": [r"\.\d+(\.gz)?$"],
        "commands": [["cat", str(tmp / "rules")], ["mov-no-such-command"]],  # the second: not installed yet
        "ignore_lines": [r"^user@\d+\.service "],
    }
    tasks: list[dict[str, object]] = []
    for step in steps:
        if "state" in step:
            tasks.append({"mov_host_state": {**spec, **step}, "register": "out"})
            tasks.append({"ansible.builtin.set_fact": {"results": "{{ results + [out] }}"}})
        else:
            tasks.append(step)
    return local_play(tmp, tasks, ROLE, "results", {"results": []}, *extra)


def write(path: Path, text: str) -> dict[str, object]:
    return {"ansible.builtin.copy": {"content": text, "dest": str(path)}}


@pytest.fixture
def host(tmp_path: Path) -> Path:
    for name, text in {
        "inputs/roles/x/tasks/main.yml": "---\n",
        "etc/ssh/sshd_config": "PermitRootLogin no\n",
        "etc/ssh/moduli": "",
        "etc/ssh/banner": "",
        "etc/adjtime": "0.0 0 0\n",
        "logs/job.log": "",
        "rules": "-A DOCKER-USER -j RETURN\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_converged_only_as_recorded(host: Path) -> None:
    first, _, same, rewritten = play(
        host,
        [
            {"state": "check"},
            {"state": "record"},
            {"state": "check"},
            write(host / "etc/adjtime", "1.0 1 1\n"),  # excluded: the system rewrites it
            write(host / "logs/job.log", "a line the job wrote\n"),  # only mode and owner count there
            write(host / "logs/job.log.1", "rotated\n"),  # a rotated log
            write(host / "rules", "-A DOCKER-USER -j RETURN\nuser@1000.service running\n"),  # a login's unit
            {"state": "check"},
        ],
    )
    assert (first["converged"], first["reason"]) == (False, "no stamp of a full deploy on this host")
    assert (host / "stamp" / "host-state.json").stat().st_mode & 0o777 == 0o600
    assert same["converged"] is True and same["changed"] is False
    assert rewritten["converged"] is True, rewritten["reason"]

    # A connection setting given with -e (the README's first run) is not an input; any other extra var is.
    [login] = play(host, [{"state": "check"}], ("-e", "ansible_user=root"))
    assert login["converged"] is True, login["reason"]
    [setting] = play(host, [{"state": "check"}], ("-e", "mov_thresholds_status=31"))
    assert (setting["converged"], setting["reason"]) == (False, "the deploy's inputs changed")

    drifted, edited = play(
        host,
        [
            write(host / "etc/ssh/sshd_config", "PermitRootLogin yes\n"),
            {"ansible.builtin.file": {"path": str(host / "etc/ssh/moduli"), "mode": "0666"}},
            {"ansible.builtin.file": {"path": str(host / "etc/ssh/banner"), "state": "absent"}},
            write(host / "etc/ssh/new.conf", "x\n"),
            write(host / "rules", ""),
            {"ansible.builtin.file": {"path": str(host / "logs/job.log"), "mode": "0666"}},
            {"state": "check"},
            write(host / "inputs/roles/x/tasks/main.yml", "---\n# edited\n"),
            {"state": "check"},
        ],
    )
    assert drifted["converged"] is False
    reason = str(drifted["reason"])
    named = [f"$ cat {host}/rules"] + [
        str(host / "etc/ssh" / n) for n in ("banner", "moduli", "new.conf", "sshd_config")
    ]
    assert reason == "the host changed since: " + ", ".join(named) + " and 1 more", reason
    assert (edited["converged"], edited["reason"]) == (False, "the deploy's inputs changed")
