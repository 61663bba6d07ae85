"""movctl's logic on the controller, without Docker: arguments, exit codes, rendering, cleanup's choice, and the
controller wrapper's host resolution. The commands themselves run on the site scenario's central VPS
(scenarios/site/test_platform.py)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mov_host.movctl import checks, cleanup, cli, docker, logs, render, services, status
from mov_host.movctl import config as movctl_config

REPO = Path(__file__).resolve().parent.parent
CONTROLLER = REPO / "scripts" / "movctl"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def controller() -> ModuleType:
    # scripts/movctl has no .py suffix, so it is loaded from its path (registered: its dataclasses need it).
    loader = importlib.machinery.SourceFileLoader("movctl_controller", str(CONTROLLER))
    spec = importlib.util.spec_from_loader("movctl_controller", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["movctl_controller"] = module
    loader.exec_module(module)
    return module


def raw_config(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "env": "local",
        "stack": {
            "dir": "/opt/mov",
            "project": "mov",
            "compose_file": "/opt/mov/compose.yaml",
            "services": ["mosquitto", "analytics"],
            "wait_timeout_s": 60,
        },
        "releases": {"dir": "/opt/mov/releases", "cleanup_keep": 2},
        "backup": {
            "tool": "/usr/local/bin/mov-backup",
            "status_file": "/var/lib/mov-backup/status.json",
            "max_age_hours": 26,
        },
        "certificate": {"file": "/opt/mov/tls/fullchain.pem", "domains": ["mov.localhost"], "warn_days": 14},
        "mqtt": {"tls_port": 8883, "tls_name": "mov.localhost"},
        "nginx": {"http_port": 80, "https_port": 443},
        "disk": {"paths": ["/opt/mov"], "min_free_gb": 10},
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def cfg() -> Any:
    return movctl_config.config_from_dict(raw_config())


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "movctl.json"
    path.write_text(json.dumps(raw_config(stack={"dir": str(tmp_path), "services": ["mosquitto", "analytics"]})))
    return path


# --- arguments and exit codes ----------------------------------------------------------------------


def test_json_is_accepted_before_and_after_the_command() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["status"]).json is False
    assert parser.parse_args(["status", "--json"]).json is True
    assert parser.parse_args(["--json", "status"]).json is True
    assert parser.parse_args(["--config", "/x.json", "status"]).config == "/x.json"
    assert parser.parse_args(["status", "--config", "/y.json"]).config == "/y.json"


def test_command_arguments() -> None:
    parser = cli.build_parser()
    logs = parser.parse_args(["logs", "mosquitto", "analytics", "-f", "--tail", "5"])
    assert (logs.services, logs.follow, logs.tail) == (["mosquitto", "analytics"], True, "5")
    assert parser.parse_args(["logs"]).tail == "100"
    assert parser.parse_args(["logs", "--tail", "all"]).tail == "all"
    restore = parser.parse_args(["restore"])
    assert (restore.snapshot, restore.force, restore.origin) == ("latest", False, "local")
    restore = parser.parse_args(["restore", "20261126T023000Z", "--force", "--from", "remote"])
    assert (restore.snapshot, restore.force, restore.origin) == ("20261126T023000Z", True, "remote")
    assert parser.parse_args(["cleanup", "--dry-run"]).dry_run is True
    assert parser.parse_args(["restart"]).services == []


@pytest.mark.parametrize(
    "argv", [["logs", "--tail", "ten"], ["frobnicate"], [], ["restore", "--from", "nowhere"], ["cleanup", "--force"]]
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "command",
    [
        "",
        "status",
        "start",
        "stop",
        "restart",
        "logs",
        "backup",
        "restore",
        "update",
        "cleanup",
        "test",
        "check-config",
    ],
)
def test_help_everywhere(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*([command] if command else []), "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: movctl" in out and "exit codes" in out


def test_not_installed_exits_3_with_a_json_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--config", str(tmp_path / "missing.json"), "status", "--json"])
    assert code == 3
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["ok"] is False and doc["exit_code"] == 3 and "not installed" in doc["error"]
    assert "not installed" in captured.err


def test_update_on_the_host_says_how_and_exits_2(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config_file), "update"]) == 2
    err = capsys.readouterr().err
    assert "from the controller" in err and "playbooks/update.yml -i inventories/local" in err
    assert cli.main(["--config", str(config_file), "update", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["exit_code"] == 2


def test_unknown_services_are_refused_with_the_valid_ones(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("start", "stop", "restart", "logs"):
        assert cli.main(["--config", str(config_file), command, "mosquitto", "grafana"]) == 2
        err = capsys.readouterr().err
        assert "unknown service 'grafana'" in err and "mosquitto, analytics" in err


def test_a_malformed_snapshot_id_is_a_usage_error(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config_file), "restore", "yesterday"]) == 2
    assert "20250101T023000Z" in capsys.readouterr().err


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(movctl_config.MovctlError, match="cleanup_keep"):
        movctl_config.config_from_dict(raw_config(releases={"cleanup_keep": 0}))
    with pytest.raises(movctl_config.MovctlError, match="services is empty"):
        movctl_config.config_from_dict(raw_config(stack={"dir": "/opt/mov", "services": []}))
    with pytest.raises(movctl_config.MovctlError, match="missing or invalid"):
        movctl_config.config_from_dict(raw_config(stack={"services": ["mosquitto"]}))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(movctl_config.MovctlError, match="not valid JSON") as error:
        movctl_config.load_config(str(bad))
    assert error.value.code == 1


def test_check_config(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(config_file), "check-config"]) == 0
    assert "config ok: 2 services" in capsys.readouterr().out


# --- state, rendering ------------------------------------------------------------------------------

PS_ROWS = [
    {
        "ID": "aaa111",
        "Service": "mosquitto",
        "State": "running",
        "Health": "healthy",
        "Name": "mov-mosquitto-1",
        "Image": "mov/mosquitto:2.0.21",
    },
    {"ID": "bbb222", "Service": "debug", "State": "exited", "Health": "", "Name": "mov-debug-1", "Image": "x:1"},
]


def test_ps_output_in_both_formats() -> None:
    lines = "\n".join(json.dumps(r) for r in PS_ROWS) + "\n"
    assert docker.parse_ps(lines) == PS_ROWS
    assert docker.parse_ps(json.dumps(PS_ROWS)) == PS_ROWS
    assert docker.parse_ps("") == []


def test_service_states_mark_missing_and_extra_services(cfg: Any) -> None:
    started = {"aaa111": NOW - timedelta(hours=3, minutes=5)}
    states = services.service_states(cfg, PS_ROWS, started, NOW)
    assert [(s.service, s.state, s.health, s.uptime_s) for s in states] == [
        ("mosquitto", "running", "healthy", 3 * 3600 + 300),
        ("analytics", "missing", "", None),
        ("debug", "exited", "", None),
    ]
    assert [s.ok for s in states] == [True, False, False]


def test_docker_times() -> None:
    parsed = docker.parse_docker_time("2026-11-26T11:59:58.123456789Z")
    assert parsed == datetime(2026, 11, 26, 11, 59, 58, 123456, tzinfo=UTC)
    assert docker.parse_docker_time("0001-01-01T00:00:00Z") is None
    assert docker.parse_docker_time("2026-11-26T11:59:58+01:00") == datetime(2026, 11, 26, 10, 59, 58, tzinfo=UTC)


def test_durations_and_tables() -> None:
    assert [render.format_duration(s) for s in (None, 5, 65, 3 * 3600 + 120, 2 * 86400 + 7200)] == [
        "-",
        "5s",
        "1m 5s",
        "3h 2m",
        "2d 2h",
    ]
    table = render.render_table(["SERVICE", "STATE"], [["mosquitto", "running"], ["analytics", "exited"]])
    assert table.splitlines() == ["SERVICE    STATE", "mosquitto  running", "analytics  exited"]


def test_backup_summary(cfg: Any) -> None:
    assert "not installed" in status.backup_summary(cfg, None, False, NOW)["problem"]
    assert "no backup has run yet" in status.backup_summary(cfg, None, True, NOW)["problem"]
    ok = {"time": (NOW - timedelta(hours=2)).isoformat(), "result": "ok", "snapshot": "20261126T100000Z"}
    summary = status.backup_summary(cfg, ok, True, NOW)
    assert summary["age_s"] == 7200 and "problem" not in summary
    stale = dict(ok, time=(NOW - timedelta(hours=30)).isoformat())
    assert "1d 6h old" in status.backup_summary(cfg, stale, True, NOW)["problem"]
    failed = dict(ok, result="failed", error="rclone lsf failed")
    assert status.backup_summary(cfg, failed, True, NOW)["problem"] == "the last backup failed: rclone lsf failed"


def test_certificate_and_disk_summaries(cfg: Any, tmp_path: Path) -> None:
    fine = status.certificate_summary(cfg, NOW + timedelta(days=80, hours=1), "", NOW)
    assert fine["days_left"] == 80 and "problem" not in fine
    assert "expires in 3 days" in status.certificate_summary(cfg, NOW + timedelta(days=3, hours=1), "", NOW)["problem"]
    assert "expired 2 days ago" in status.certificate_summary(cfg, NOW - timedelta(days=2), "", NOW)["problem"]
    assert status.certificate_summary(cfg, None, "no certificate at /x", NOW)["problem"] == "no certificate at /x"
    disk_cfg = movctl_config.config_from_dict(
        raw_config(disk={"paths": [str(tmp_path), "/nonexistent"], "min_free_gb": 10})
    )
    rows = status.disk_summary(disk_cfg, usage=lambda path: (100 * 1024**3, 95 * 1024**3, 5 * 1024**3))
    assert len(rows) == 1 and rows[0]["free_percent"] == 5.0 and "below 10 GB" in rows[0]["problem"]


def test_status_document_and_rendering(cfg: Any) -> None:
    states = services.service_states(cfg, PS_ROWS[:1], {"aaa111": NOW - timedelta(minutes=7)}, NOW)
    backup = status.backup_summary(
        cfg, {"time": NOW.isoformat(), "result": "ok", "snapshot": "S1", "offsite": "disabled"}, True, NOW
    )
    cert = status.certificate_summary(cfg, NOW + timedelta(days=90, hours=1), "", NOW)
    disk = [{"path": "/opt/mov", "free_bytes": 50 * 1024**3, "total_bytes": 100 * 1024**3, "free_percent": 50.0}]
    doc = status.status_document(cfg, states, backup, cert, disk)
    assert doc["ok"] is False and doc["attention"] == ["analytics is missing"]
    json.dumps(doc)  # --json prints exactly this
    text = render.render_status(doc)
    assert "SERVICE    STATE    HEALTH   UPTIME" in text
    assert "mosquitto  running  healthy  7m 0s" in text
    assert "analytics  missing  -        -" in text
    assert "backup       ok, 0s ago (snapshot S1, off-site disabled)" in text
    assert "certificate  mov.localhost: expires in 90 days" in text
    assert "disk         /opt/mov: 50.0 GB free (50 %)" in text
    assert "attention:\n  - analytics is missing" in text


def test_log_lines() -> None:
    line = "mosquitto-1  | 2026-11-26T12:00:00.000000001Z 1764158400: mosquitto version 2.0.21 running\n"
    assert logs.parse_log_line(line, "mov") == {
        "service": "mosquitto",
        "time": "2026-11-26T12:00:00.000000001Z",
        "message": "1764158400: mosquitto version 2.0.21 running",
    }
    assert logs.parse_log_line("mov-analytics-1 | hello", "mov")["service"] == "analytics"
    assert logs.parse_log_line("\x1b[2Kanalytics-1  | hi", "mov") == {
        "service": "analytics",
        "time": "",
        "message": "hi",
    }
    assert logs.parse_log_line("no prefix here", "mov") == {"service": "", "time": "", "message": "no prefix here"}


# --- cleanup ---------------------------------------------------------------------------------------


def release(rid: str, compose: str, **images: tuple[str, str]) -> dict[str, Any]:
    return {
        "id": rid,
        "compose_sha256": compose,
        "images": {svc: {"ref": ref, "id": iid, "repo_digests": []} for svc, (ref, iid) in images.items()},
    }


RELEASES = [
    release(
        "20261101T000000Z-aaaa",
        "c1",
        mosquitto=("mov/mosquitto:2.0.18", "sha256:m18"),
        analytics=("mov/analytics:0.0.8", "sha256:a08"),
    ),
    release(
        "20261110T000000Z-bbbb",
        "c2",
        mosquitto=("mov/mosquitto:2.0.20", "sha256:m20"),
        analytics=("mov/analytics:0.0.9", "sha256:a09"),
    ),
    release(
        "20261120T000000Z-cccc",
        "c3",
        mosquitto=("mov/mosquitto:2.0.21", "sha256:m21"),
        analytics=("mov/analytics:0.1.0", "sha256:a10"),
    ),
    release(
        "20261125T000000Z-dddd",
        "c4",
        mosquitto=("mov/mosquitto:2.0.21", "sha256:m21"),
        analytics=("mov/analytics:0.1.1", "sha256:a11"),
    ),
]


def images() -> list[Any]:
    image = cleanup.Image
    return [
        image("sha256:m18", "mov/mosquitto", "2.0.18"),
        image("sha256:m20", "mov/mosquitto", "2.0.20"),
        image("sha256:m21", "mov/mosquitto", "2.0.21"),
        image("sha256:a08", "mov/analytics", "0.0.8"),
        image("sha256:a09", "mov/analytics", "0.0.9"),
        image("sha256:a10", "mov/analytics", "0.1.0"),
        image("sha256:a11", "mov/analytics", "0.1.1"),
        image("sha256:brk", "mov/analytics", "0.1.0-broken-health"),
        image("sha256:box", "mov/box", "trixie"),
        image("sha256:dng", "<none>", "<none>"),
        image("sha256:use", "<none>", "<none>"),
    ]


SERVICES = ("mosquitto", "analytics")


def containers() -> list[Any]:
    container = cleanup.Container
    return [
        container("c1", "mov-mosquitto-1", "running", "sha256:m21", "mov", "mosquitto"),
        container("c2", "mov-analytics-1", "running", "sha256:a11", "mov", "analytics"),
        container("c3", "mov-analytics-run-1", "exited", "sha256:a09", "mov", "analytics", oneoff=True),
        container("c4", "other-thing", "exited", "sha256:use", "other", "mosquitto"),
    ]


def test_cleanup_keeps_the_last_releases_and_removes_the_rest() -> None:
    plan = cleanup.plan_cleanup(RELEASES, 2, "c4", images(), containers(), "mov", SERVICES)
    assert plan.kept_releases == ["20261120T000000Z-cccc", "20261125T000000Z-dddd"]
    assert plan.current_release == "20261125T000000Z-dddd"
    assert [c.name for c in plan.containers] == ["mov-analytics-run-1"]  # only the project's stopped ones
    # a09's only user is the stopped container removed with it; "use" is held by another project's container;
    # mov/box is no platform image.
    assert sorted(i.ref for i in plan.images) == sorted(
        [
            "mov/mosquitto:2.0.18",
            "mov/mosquitto:2.0.20",
            "mov/analytics:0.0.8",
            "mov/analytics:0.0.9",
            "mov/analytics:0.1.0-broken-health",
            "sha256:dng",
        ]
    )
    assert {"mov/mosquitto:2.0.21", "mov/analytics:0.1.0", "mov/analytics:0.1.1", "sha256:use"} <= set(plan.kept_images)


def test_cleanup_never_removes_the_current_release_after_a_rollback() -> None:
    # Rolled back to the oldest release: its compose file is in place, so its images stay whatever N is.
    plan = cleanup.plan_cleanup(RELEASES, 1, "c1", images(), containers()[2:], "mov", SERVICES)
    assert plan.current_release == "20261101T000000Z-aaaa"
    assert plan.kept_releases == ["20261101T000000Z-aaaa", "20261125T000000Z-dddd"]
    removed = {i.ref for i in plan.images}
    assert {"mov/mosquitto:2.0.18", "mov/analytics:0.0.8", "mov/mosquitto:2.0.21", "mov/analytics:0.1.1"}.isdisjoint(
        removed
    )
    assert "mov/analytics:0.1.0" in removed


def test_cleanup_without_release_records_only_takes_dangling_images() -> None:
    plan = cleanup.plan_cleanup([], 5, "", images(), [], "mov", SERVICES)
    assert plan.kept_releases == [] and plan.current_release == ""
    assert [i.ref for i in plan.images] == ["sha256:dng", "sha256:use"]


def test_cleanup_keeps_a_current_service_an_operator_stopped() -> None:
    container = cleanup.Container
    found = [
        # `movctl stop mosquitto`: a current service, stopped on purpose; it and its image stay.
        container("s1", "mov-mosquitto-1", "exited", "sha256:m20", "mov", "mosquitto"),
        container("s2", "mov-analytics-1", "created", "sha256:a11", "mov", "analytics"),
        # A service the compose file no longer has, and one-off containers of current services.
        container("s3", "mov-telegraf-1", "exited", "sha256:a08", "mov", "telegraf"),
        container("s4", "mov-mosquitto-run-1a2b", "exited", "sha256:a09", "mov", "mosquitto", oneoff=True),
        container("s5", "mov-analytics-run-3c4d", "dead", "sha256:a10", "mov", "analytics", oneoff=True),
        # Running, whatever its labels; and another project's stopped container.
        container("s6", "mov-old-1", "running", "sha256:brk", "mov", "old"),
        container("s7", "other-1", "exited", "sha256:m18", "other", "telegraf"),
    ]
    plan = cleanup.plan_cleanup(RELEASES, 1, "c4", images(), found, "mov", SERVICES)
    assert sorted(c.name for c in plan.containers) == [
        "mov-analytics-run-3c4d",
        "mov-mosquitto-run-1a2b",
        "mov-telegraf-1",
    ]
    removed = {i.ref for i in plan.images}
    # m20 is no kept release's, but the kept stopped mosquitto uses it; m18 and brk are held by containers that stay.
    assert {"mov/mosquitto:2.0.20", "mov/mosquitto:2.0.18", "mov/analytics:0.1.0-broken-health"}.isdisjoint(removed)
    # The removed containers' images go with them when nothing else keeps them.
    assert {"mov/analytics:0.0.8", "mov/analytics:0.0.9", "mov/analytics:0.1.0"} <= removed


def test_cleanup_without_compose_labels_treats_the_container_as_an_old_service() -> None:
    # A container put in the project by hand, with no service label: no current service claims it.
    stray = cleanup.Container("x1", "mov-stray", "exited", "sha256:use", "mov")
    plan = cleanup.plan_cleanup(RELEASES, 2, "c4", images(), [stray], "mov", SERVICES)
    assert [c.name for c in plan.containers] == ["mov-stray"]


def test_repository_of_references() -> None:
    assert cleanup.repository_of("mov/analytics:0.1.0") == "mov/analytics"
    assert cleanup.repository_of("eclipse-mosquitto:2.0.21@sha256:abc") == "eclipse-mosquitto"
    assert cleanup.repository_of("registry.local:5000/mov/analytics:0.1.0") == "registry.local:5000/mov/analytics"
    assert cleanup.repository_of("registry.local:5000/mov/analytics") == "registry.local:5000/mov/analytics"


def test_mqtt_probe_of_a_closed_port_fails_naming_it() -> None:
    ok, detail = checks.probe_mqtt_tls("127.0.0.1", 1, "localhost", timeout=2)
    assert not ok and "127.0.0.1:1" in detail


# --- the controller wrapper --------------------------------------------------------------------------


def test_hosts_of_a_group_and_its_children(controller: ModuleType) -> None:
    inventory = {"mov": {"hosts": ["a"], "children": ["edge"]}, "edge": {"hosts": ["b", "a"]}}
    assert controller.hosts_of(inventory) == ["a", "b"]


def test_ssh_target_with_a_templated_user_sudo_port_and_key(controller: ModuleType) -> None:
    hostvars = {
        "ansible_host": "203.0.113.10",
        "ansible_user": "{{ mov_admin_user }}",
        "mov_admin_user": "mov",
        "ansible_port": 2222,
        "ansible_become": True,
        "ansible_ssh_private_key_file": "/keys/id",
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/k/known_hosts",
    }
    target = controller.target_from("prod-1", hostvars)
    argv = controller.remote_argv(target, ["logs", "mosquitto", "--tail", "5; rm -rf /"], tty=False)
    assert argv == [
        "ssh",
        "-o",
        "UserKnownHostsFile=/k/known_hosts",
        "-o",
        "ConnectTimeout=20",
        *controller.CONTROL_OPTIONS,
        "-l",
        "mov",
        "-p",
        "2222",
        "-i",
        "/keys/id",
        "--",
        "203.0.113.10",
        "sudo /usr/local/bin/movctl logs mosquitto --tail '5; rm -rf /'",
    ]
    root = controller.target_from("h", {"ansible_user": "root", "ansible_become": True})
    assert controller.remote_argv(root, ["status"], tty=True) == [
        "ssh",
        "-t",
        "-o",
        "ConnectTimeout=20",
        *controller.CONTROL_OPTIONS,
        "-l",
        "root",
        "--",
        "h",
        "/usr/local/bin/movctl status",
    ]


def test_docker_target(controller: ModuleType) -> None:
    target = controller.target_from(
        "mov-box", {"ansible_connection": "community.docker.docker", "ansible_host": "mov-box", "ansible_user": "root"}
    )
    assert controller.remote_argv(target, ["status", "--json"], tty=False) == [
        "docker",
        "exec",
        "-i",
        "mov-box",
        "/usr/local/bin/movctl",
        "status",
        "--json",
    ]


def test_unsupported_inventory_values_are_refused(controller: ModuleType) -> None:
    with pytest.raises(controller.ControllerError, match="template"):
        controller.target_from("h", {"ansible_user": "{{ users | first }}"})
    with pytest.raises(controller.ControllerError, match="neither ssh"):
        controller.target_from("h", {"ansible_connection": "winrm"})
    several = {"mov": {"hosts": ["a", "b"]}, "_meta": {"hostvars": {}}}
    with pytest.raises(controller.ControllerError, match="choose one with --host"):
        controller.choose_target(several, None)
    with pytest.raises(controller.ControllerError, match="no host 'c'"):
        controller.choose_target(several, "c")
    assert controller.choose_target(several, "b").address == "b"


def test_transport_failures_have_their_own_exit_codes(controller: ModuleType) -> None:
    ssh = controller.target_from("h", {})
    docker = controller.target_from("h", {"ansible_connection": "community.docker.docker"})
    assert [controller.exit_code(ssh, c) for c in (0, 1, 4, 127, 255)] == [0, 1, 4, 3, 5]
    assert [controller.exit_code(docker, c) for c in (2, 125, 126, 127)] == [2, 5, 3, 3]


def test_update_runs_the_playbook_on_the_controller(controller: ModuleType) -> None:
    argv = controller.update_argv("inventories/prod", "mov-prod-1", ["-e", "x=1"], ["--ask-vault-pass"])
    assert argv[0].endswith("ansible-playbook") and argv[1].endswith("playbooks/update.yml")
    assert argv[2:] == ["-i", "inventories/prod", "--ask-vault-pass", "--limit", "mov-prod-1", "-e", "x=1"]


def test_controller_arguments_pass_through(controller: ModuleType) -> None:
    args = controller.parse(["-i", "inventories/prod", "logs", "mosquitto", "-f", "--json"])
    assert (args.inventory, args.command, args.args) == ("inventories/prod", "logs", ["mosquitto", "-f", "--json"])


def test_the_real_inventories_resolve(controller: ModuleType) -> None:
    prod = controller.choose_target(controller.read_inventory(str(REPO / "inventories" / "prod"), []), None)
    assert (prod.connection, prod.address, prod.user, prod.become) == ("ssh", "203.0.113.10", "mov", True)
    local = controller.choose_target(controller.read_inventory(str(REPO / "inventories" / "local"), []), None)
    assert (local.connection, local.address) == ("docker", "mov-box")


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_mqtt_probe_reads_a_connack_over_tls(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            received.append(tls.recv(64))
            tls.sendall(bytes([0x20, 0x02, 0x00, 0x05]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ok, detail = checks.probe_mqtt_tls("127.0.0.1", port, "localhost")
    thread.join(5)
    listener.close()
    assert ok, detail
    assert "MQTT CONNACK (not authorised)" in detail
    assert received and received[0][0] == 0x10 and b"MQTT" in received[0]


def test_certificate_expiry_is_read_from_the_pem(tls_files: tuple[Path, Path]) -> None:
    not_after, error = status.read_certificate_end(str(tls_files[0]))
    assert error == "" and not_after is not None
    assert 29 <= (not_after - datetime.now(UTC)).days <= 30
    assert status.read_certificate_end("/nonexistent.pem") == (None, "no certificate at /nonexistent.pem")
