"""Hot reload: what a service re-reads while it runs is reloaded, what it reads at start recreates it.

Telegraf and Grafana cannot run here, so the wiring is proven twice: in the rendered stack (a reloadable change moves
the reload set's checksum, never the container's restart label; grafana.ini moves the label) and by the roles'
handlers themselves, run on the controller against a stand-in reload command and a stand-in Grafana API.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from conftest import REPO, run_role
from mov_render import rendered, workspace

sys.path.append(str(REPO / "tests" / "e2e"))
import check_reload

LABEL = "org.mov.config-sha256"
ENV = "staging"  # every service runs there (local runs a subset)
# Values each service reloads live (Telegraf's interval, Grafana's alert rule duration), and one it reads at start.
# Only the roles these touch are rendered again (the stack's labels of the others are not compared).
ROLES = {"render_roles": ["telegraf", "grafana", "stack"]}
RELOADABLE = {**ROLES, "mov_telegraf_interval_s": 10, "mov_alert_for": "2m"}
# Read at start: grafana.ini, and the mail relay's password (Grafana's and the worker's; a rotation sets it).
SMTP_PASSWORD = "test-only-rotated-smtp-password"
AT_START = {**ROLES, "grafana_ini_overrides": {"log": {"level": "debug"}}, "vault_mov_smtp_password": SMTP_PASSWORD}


@functools.cache
def _render(name: str) -> Path:
    """Staging (all five services) rendered with one of the changes above (the unchanged render is mov_render's)."""
    if name == "base":
        return rendered(ENV)[0]
    ws = workspace()
    dest = ws.root / "render" / f"reload-{name}"
    ws.render(ENV, dest, "-e", json.dumps({"reloadable": RELOADABLE, "at-start": AT_START}[name]))
    (host_dir,) = [p for p in dest.iterdir() if p.is_dir()]
    return host_dir


def _labels(host_dir: Path) -> dict[str, str]:
    compose = yaml.safe_load((host_dir / "opt/mov/compose.yaml").read_text())
    return {name: service["labels"][LABEL] for name, service in compose["services"].items()}


def _reload_sets(host_dir: Path) -> dict[str, str]:
    return json.loads((host_dir / "opt/mov/reload-sha256.json").read_text())  # type: ignore[no-any-return]


def test_reloadable_changes_leave_every_restart_label_alone() -> None:
    base, changed = _render("base"), _render("reloadable")
    conf = "opt/mov/telegraf/telegraf.conf"
    assert (base / conf).read_text() != (changed / conf).read_text()
    for service in ("telegraf", "grafana"):
        assert _labels(changed)[service] == _labels(base)[service], service
    for service in ("telegraf", "grafana"):
        assert _reload_sets(changed)[service] != _reload_sets(base)[service], service


def test_a_grafana_ini_change_recreates_grafana_and_reloads_nothing() -> None:
    base, changed = _render("base"), _render("at-start")
    before, after = _labels(base), _labels(changed)
    assert after["grafana"] != before["grafana"]
    assert after["telegraf"] == before["telegraf"]
    assert _reload_sets(changed)["grafana"] == _reload_sets(base)["grafana"]
    assert _reload_sets(changed)["telegraf"] == _reload_sets(base)["telegraf"]


def test_a_new_mail_relay_password_is_written_where_grafana_reads_it() -> None:
    """docs/operations/rotate-secret.md: vault_mov_smtp_password, then a deploy. The deploy writes it where Grafana
    reads it (rendered here; the worker's copy is written by the stack's configure, which the render skips). That
    the deploy recreates Grafana and the worker with it, and both then deliver through the relay's new login, is
    proven by the e2e job (its relay's password rotated; check_platform.py grafana-email, check_rotation.py
    worker-email)."""
    changed = _render("at-start")
    grafana_file = changed / "opt/mov/grafana/secrets/smtp.password"
    assert grafana_file.read_text().strip() == SMTP_PASSWORD
    assert grafana_file.stat().st_mode & 0o077 == 0


def test_telegraf_sees_its_config_through_a_directory_mount() -> None:
    """A single-file bind mount keeps the inode the container started with; Ansible replaces files by a rename."""
    compose = yaml.safe_load((_render("base") / "opt/mov/compose.yaml").read_text())
    telegraf = compose["services"]["telegraf"]
    assert "/opt/mov/telegraf:/etc/telegraf:ro" in telegraf["volumes"]
    assert not [v for v in telegraf["volumes"] if "telegraf.conf" in v]
    assert telegraf["command"] == ["telegraf", "--config", "/etc/telegraf/telegraf.conf"]


# --- the handlers, run -------------------------------------------------------------------------------------------


def _owner() -> dict[str, int]:
    return {"uid": os.getuid(), "gid": os.getgid()}


def test_telegraf_is_signalled_after_a_config_change_only(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    base: dict[str, object] = {
        "telegraf_dir": str(tmp_path / "telegraf"),
        "telegraf_uid": _owner()["uid"],
        "telegraf_gid": _owner()["gid"],
        "telegraf_mqtt_password": "test-only-telegraf-password",
        "telegraf_reload_command": f"sh -c 'echo SIGHUP >> {signals}'",
    }
    # The first run writes the MQTT password file too: the stack creates or recreates the container, no signal.
    run_role(tmp_path, "telegraf", base)
    assert not signals.exists()
    # The password file is read at start (the stack's label recreates the container): no signal.
    run_role(tmp_path, "telegraf", {**base, "telegraf_mqtt_password": "another-test-only-password"})
    assert not signals.exists()
    output = run_role(
        tmp_path,
        "telegraf",
        {**base, "telegraf_mqtt_password": "another-test-only-password", "telegraf_interval_s": 10},
    )
    assert "RUNNING HANDLER [telegraf : Reload telegraf]" in output
    assert signals.read_text() == "SIGHUP\n"
    # A rotation of its MQTT account: new username (telegraf.conf) and password. The recreate reads both; a reload
    # would pair the new username with the password the container started with.
    rotated = {**base, "telegraf_mqtt_username": "telegraf@test-rotation", "telegraf_mqtt_password": "rotated-test-pw"}
    run_role(tmp_path, "telegraf", rotated)
    assert signals.read_text() == "SIGHUP\n"
    assert 'username = "telegraf@test-rotation"' in (tmp_path / "telegraf" / "telegraf.conf").read_text()


class _Grafana(BaseHTTPRequestHandler):
    """Grafana's health endpoint, the admin's login and password change, and the admin provisioning reloads, as
    Grafana answers them (a wrong password is a 401; PUT /api/user/password wants the old one: grafana/grafana
    v11.3.1 pkg/api/user.go); records every call but the health checks, with its credentials."""

    password: ClassVar[str] = ""
    calls: ClassVar[list[tuple[str, str]]] = []

    def _credentials(self) -> str:
        auth = self.headers.get("Authorization", "")
        return base64.b64decode(auth.removeprefix("Basic ")).decode() if auth.startswith("Basic ") else ""

    def _signed_in(self) -> bool:
        return self._credentials() == f"admin:{self.password}"

    def do_GET(self) -> None:
        if self.path == "/api/health":
            return self._reply(200, {"database": "ok"})
        self.calls.append((f"GET {self.path}", self._credentials()))
        if self.path == "/api/user":
            return self._reply(200 if self._signed_in() else 401, {"login": "admin"})
        return self._reply(404, {})

    def do_PUT(self) -> None:
        self.calls.append((f"PUT {self.path}", self._credentials()))
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if self.path != "/api/user/password" or not self._signed_in() or body.get("oldPassword") != self.password:
            return self._reply(401, {"message": "invalid username or password"})
        type(self).password = str(body["newPassword"])
        return self._reply(200, {"message": "User password changed"})

    def do_POST(self) -> None:
        self.calls.append((f"POST {self.path}", self._credentials()))
        self._reply(200 if self._signed_in() else 401, {"message": "reloaded"})

    def _reply(self, status: int, body: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def grafana_api() -> Iterator[str]:
    _Grafana.calls = []
    _Grafana.password = "test-only-grafana-admin-password"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Grafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_grafana_reloads_its_provisioning_through_the_admin_api(tmp_path: Path, grafana_api: str) -> None:
    password = "test-only-grafana-admin-password"
    base: dict[str, object] = {
        "grafana_dir": str(tmp_path / "grafana"),
        "grafana_uid": _owner()["uid"],
        "grafana_gid": _owner()["gid"],
        "grafana_admin_password": password,
        "grafana_thresholds": {"temperatura_c": {"alerta": 30, "critico": 35}},
    }
    # Nothing answers on the discard port: a Grafana that does not run reads its new files when it starts.
    output = run_role(tmp_path, "grafana", {**base, "grafana_api_url": "http://127.0.0.1:9"})
    assert "RUNNING HANDLER [grafana : Check that Grafana runs before reloading its provisioning]" in output
    assert _Grafana.calls == []
    # grafana.ini is read at start only (the stack's label recreates the container): no reload.
    run_role(
        tmp_path,
        "grafana",
        {**base, "grafana_api_url": grafana_api, "grafana_ini_overrides": {"log": {"level": "debug"}}},
    )
    assert _Grafana.calls == []
    output = run_role(tmp_path, "grafana", {**base, "grafana_api_url": grafana_api, "grafana_alert_for": "2m"})
    reloads = [
        (f"POST /api/admin/provisioning/{kind}/reload", f"admin:{password}")
        for kind in ("datasources", "dashboards", "alerting")
    ]
    assert _Grafana.calls == [("GET /api/user", f"admin:{password}"), *reloads]
    assert password not in output

    # A rotated admin password (the vault's new one, the previous kept beside it) with a reloadable change: the new
    # one is refused, the previous one sets it, and the reloads log in with it.
    rotated = "test-only-grafana-admin-password-rotated"
    _Grafana.calls = []
    output = run_role(
        tmp_path,
        "grafana",
        {
            **base,
            "grafana_api_url": grafana_api,
            "grafana_alert_for": "3m",
            "grafana_admin_password": rotated,
            "grafana_admin_password_previous": password,
        },
    )
    assert _Grafana.password == rotated
    assert _Grafana.calls == [
        ("GET /api/user", f"admin:{rotated}"),
        ("PUT /api/user/password", f"admin:{password}"),
        *[(path, f"admin:{rotated}") for path, _ in reloads],
    ]
    assert password not in output and rotated not in output


def test_the_e2e_check_reads_a_reload_from_telegrafs_log() -> None:
    start = 'I! [agent] Config: Interval:5s, Quiet:false, Hostname:"", Flush Interval:5s\n'
    reload = (
        'I! Reloading Telegraf config\nI! [agent] Config: Interval:10s, Quiet:false, Hostname:"", Flush Interval:10s\n'
    )
    assert check_reload.telegraf_reloaded(start + reload, "10s")
    assert not check_reload.telegraf_reloaded(start, "5s")  # never reloaded
    assert not check_reload.telegraf_reloaded(start + reload, "5s")  # the reload kept the old interval
