#!/usr/bin/env python3
"""Deploy speed: site.yml on a fresh local box, then twice with nothing changed (plain Ansible, Mitogen), over SSH.

    python bench/deploy_noop.py [--json] [--keep]

The box starts as a cloud VPS image would: sshd running and root reachable with the local admin key
(installed by this script before the clock starts). The first run logs in as root (README: first run), the
second and third as the admin account the first one created. The first two runs use plain Ansible, the third
Mitogen for Ansible (scripts/executors.py), with host key checking on: the third finds the box's key where the
first run's StrictHostKeyChecking=accept-new recorded it. Prints
{"fresh_s", "noop_s", "tasks", "changed_on_second", "s_per_task"} for the plain no-op and the same with a
"mitogen_" prefix for the Mitogen one, where tasks counts a run's task results (ok + changed + failed + skipped)
and s_per_task = noop_s / tasks; then "fastpath_s" and "fastpath_changed": a threshold raised by one, deployed
through docs/operations/deploy.md's fast path (--tags FAST_PATH_TAGS), checked in the worker's rules on the box;
then the same with Mitogen ("mitogen_fastpath_s", raised by two). Targets (issue 19): fresh_s <= 120, noop_s <= 45,
changed_on_second == 0 for both, mitogen_noop_s <= 20, fastpath_s <= 20. Only the throwaway box is touched (it is
destroyed first unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import box  # noqa: E402
import dev  # noqa: E402
from executors import FAST_PATH_TAGS, Executor, executor_env  # noqa: E402

RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)")


def sh(*cmd: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def prepare_ssh(key: Path) -> str:
    """sshd and root's key in the box, as a provider's image has them; returns the box's address."""
    exec_ = ["docker", "exec", box.CONTAINER]
    sh(
        *exec_,
        "sh",
        "-c",
        "DEBIAN_FRONTEND=noninteractive apt-get update -q && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server",
    )
    pub = key.with_suffix(".pub").read_text()
    sh(
        *exec_,
        "sh",
        "-c",
        f"install -d -m 700 /root/.ssh && printf '%s' '{pub.strip()}' > /root/.ssh/authorized_keys"
        " && chmod 600 /root/.ssh/authorized_keys && systemctl enable --now ssh",
    )
    return sh(
        "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", box.CONTAINER
    ).stdout.strip()


def workspace(root: Path, address: str, key: Path, known_hosts: Path) -> None:
    """A copy of the repository's entry points whose local inventory reaches the box over SSH.

    Playbooks, roles, scripts and group_vars are links to the real ones; inventories/local is copied with its
    hosts.yml pointing at the box's address (extra vars would also send delegate_to: localhost over SSH).
    """
    for name in (
        "site.yml",
        "ansible.cfg",
        "plugins",  # ansible.cfg's strategy_plugins, relative to it
        "playbooks",
        "roles",
        "scripts",
        "group_vars",
        "analytics",
        "images",
        ".cache",
    ):
        if not (root / name).exists():
            (root / name).symlink_to(REPO / name)
    local = root / "inventories" / "local"
    if not local.exists():
        shutil.copytree(REPO / "inventories" / "local", local, symlinks=True)
    ssh_args = (
        f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=accept-new "
        "-o ControlMaster=auto -o ControlPersist=60s -o PreferredAuthentications=publickey"
    )
    host = {
        "ansible_connection": "ssh",
        "ansible_host": address,
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": ssh_args,
    }
    (local / "hosts.yml").write_text(json.dumps({"mov": {"hosts": {"mov-box": host}}}, indent=2) + "\n")
    # Preflight reads 0.0 GB free for / inside the box over SSH (an overlay root); the disk check is not what
    # this benchmark measures (zz-: loaded after the env's own preflight.yml).
    (local / "group_vars" / "mov" / "zz-bench.yml").write_text("---\nmov_preflight_min_disk_gb: 0\n")


def playbook(
    root: Path, user: str, executor: Executor, log: Path | None = None, extra: tuple[str, ...] = ()
) -> tuple[float, dict[str, int]]:
    """site.yml as the README runs it: the login account as an extra var (root for the first run)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), ANSIBLE_NOCOLOR="1", **executor_env(executor))
    started = time.monotonic()
    result = subprocess.run(
        ["ansible-playbook", "site.yml", "-i", "inventories/local", "-e", f"ansible_user={user}", *extra],
        cwd=root,
        env=env,
        text=True,
        capture_output=True,
    )
    elapsed = time.monotonic() - started
    if log is not None:  # the run's output, with ansible.cfg's profile_tasks summary of the slowest tasks
        log.write_text(result.stdout + result.stderr)
    counts = {"ok": 0, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 0}
    for line in result.stdout.splitlines():
        if (m := RECAP.match(line)) and m.group(1) != "localhost":
            for name, value in zip(counts, m.groups()[1:], strict=True):
                counts[name] += int(value)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-8000:] + result.stderr[-2000:])
        raise SystemExit(f"site.yml ({executor}) failed (exit {result.returncode})")
    return elapsed, counts


def noop_figures(elapsed: float, counts: dict[str, int], prefix: str = "") -> dict[str, float | int]:
    tasks = counts["ok"] + counts["changed"] + counts["failed"] + counts["skipped"]
    return {
        f"{prefix}noop_s": round(elapsed, 1),
        f"{prefix}tasks": tasks,
        f"{prefix}changed_on_second": counts["changed"],
        f"{prefix}s_per_task": round(elapsed / max(tasks, 1), 3),
    }


def fast_path(root: Path, log: Path | None, executor: Executor, raise_by: int) -> dict[str, float | int]:
    """Every threshold raised by ``raise_by`` degrees, deployed through the documented fast path; the worker's
    rules file on the box must then hold them (the run itself checked that the worker reloaded that file)."""
    import yaml  # from .venv (main() ran dev.ensure_venv() first)

    thresholds = yaml.safe_load((REPO / "group_vars" / "all" / "services.yml").read_text())["mov_thresholds"]
    raised = {field: {k: v + raise_by for k, v in levels.items()} for field, levels in thresholds.items()}
    override = root / "inventories" / "local" / "group_vars" / "mov" / "zz-bench-threshold.yml"
    override.write_text("---\n" + yaml.safe_dump({"mov_thresholds": raised}))
    elapsed, counts = playbook(root, "mov", executor, log, ("--tags", FAST_PATH_TAGS))
    # The run itself waited for the worker to report this file's digest (roles/stack: the rules reloaded live).
    config = yaml.safe_load(sh("docker", "exec", box.CONTAINER, "cat", "/opt/mov/analytics/rules/rules.yaml").stdout)
    applied = {r["field"]: r["alerta"] for r in config["rules"] if not {"localizacao", "tipo"} & r.keys()}
    if applied != {field: levels["alerta"] for field, levels in raised.items()}:
        raise SystemExit(f"the fast path did not deploy the threshold: the worker's rules file has {applied}")
    prefix = "" if executor == "plain" else f"{executor}_"
    return {f"{prefix}fastpath_s": round(elapsed, 1), f"{prefix}fastpath_changed": counts["changed"]}


def main() -> int:
    # Runs from the repository's .venv (made or updated from the locks, as scripts/dev.py does), where
    # ansible-playbook is: bench/results.md's command works on a fresh clone whatever python3 starts it.
    dev.ensure_venv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="reuse a running box instead of a fresh one (already deployed: both runs are no-ops)",
    )
    parser.add_argument(
        "--log-dir", type=Path, help="write each run's output there (fresh.log, noop.log, noop-mitogen.log)"
    )
    args = parser.parse_args()
    if not args.keep:
        box.destroy()
    box.create()
    key = box.ensure_admin_key()
    address = prepare_ssh(key)
    with tempfile.TemporaryDirectory(prefix="mov-bench-") as tmp:
        root, known_hosts = Path(tmp) / "repo", Path(tmp) / "known_hosts"
        root.mkdir()
        # The local env's generated secrets (if any) come along, so both runs use the same ones.
        # A kept box that a first run already hardened takes no root login: both runs use the admin account.
        deployed = (
            args.keep
            and subprocess.run(["docker", "exec", box.CONTAINER, "id", "mov"], capture_output=True).returncode == 0
        )
        workspace(root, address, key, known_hosts)
        logs = {
            name: args.log_dir / f"{name}.log" if args.log_dir else None
            for name in ("fresh", "noop", "noop-mitogen", "fast-path", "fast-path-mitogen")
        }
        if args.log_dir:
            args.log_dir.mkdir(parents=True, exist_ok=True)
        fresh_s, _ = playbook(root, "mov" if deployed else "root", "plain", logs["fresh"])
        plain = noop_figures(*playbook(root, "mov", "plain", logs["noop"]))
        mitogen = noop_figures(*playbook(root, "mov", "mitogen", logs["noop-mitogen"]), prefix="mitogen_")
        fast = fast_path(root, logs["fast-path"], "plain", 1)
        mitogen_fast = fast_path(root, logs["fast-path-mitogen"], "mitogen", 2)
    figures = {"fresh_s": round(fresh_s, 1), **plain, **mitogen, **fast, **mitogen_fast}
    if not args.json:
        print(f"fresh run {fresh_s:.0f}s")
        for name, prefix in (("plain", ""), ("mitogen", "mitogen_")):
            print(
                f"no-op run ({name}) {figures[prefix + 'noop_s']}s for {figures[prefix + 'tasks']} tasks, "
                f"{figures[prefix + 'changed_on_second']} changed"
            )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
