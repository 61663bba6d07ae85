"""The restore drill (mov-backup drill): the latest off-site snapshot restored into a scratch copy and compared
with production, which it never touches; any difference or damage fails it, records it and alerts."""

from __future__ import annotations

import json
from typing import Any

TOOL = "/usr/local/bin/mov-backup"
CONFIG = "/etc/mov-backup/config.json"
BACKUPS = "/var/backups/mov"
DRILL = "/var/lib/mov-backup/drill.json"
GRAFANA_DB = "/opt/mov/grafana/data/grafana.db"
PRODUCTION = [
    "/opt/mov/mosquitto/data/mosquitto.db",
    "/opt/mov/mosquitto/config/passwd",
    GRAFANA_DB,
    "/opt/mov/grafana/provisioning/datasources/influxdb.yaml",
]
PARTS = {"mosquitto-data", "mosquitto-config", "grafana-db", "grafana-provisioning", "release"}
WEBHOOK = (
    "python3 -c 'import http.server\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_POST(self):\n"
    '        body = self.rfile.read(int(self.headers["Content-Length"]))\n'
    '        open("/tmp/drill-webhook.json", "wb").write(body); self.send_response(204); self.end_headers()\n'
    's = http.server.HTTPServer(("127.0.0.1", 8099), H); s.timeout = 60; s.handle_request()\''
)


def _tool(host, command: str) -> Any:  # type: ignore[no-untyped-def]
    return host.run(f"{TOOL} --config {CONFIG} {command}")


def _sums(host) -> str:  # type: ignore[no-untyped-def]
    return str(host.check_output("sha256sum " + " ".join(PRODUCTION)))


def _drill(host) -> tuple[Any, dict[str, Any]]:  # type: ignore[no-untyped-def]
    result = _tool(host, "drill")
    return result, json.loads(host.file(DRILL).content_string)


def _sql(host, statement: str) -> None:  # type: ignore[no-untyped-def]
    host.check_output(
        f'python3 -c \'import sqlite3; db = sqlite3.connect("{GRAFANA_DB}"); db.execute("{statement}"); db.commit()\''
    )


def test_the_drill_restores_the_latest_off_site_snapshot_and_matches_production(host) -> None:  # type: ignore[no-untyped-def]
    backup = _tool(host, "run")
    assert backup.rc == 0, backup.stdout + backup.stderr
    latest = str(host.check_output(f"{TOOL} --config {CONFIG} list --remote")).split()[-1]
    before = _sums(host)
    result, status = _drill(host)
    assert result.rc == 0, result.stdout + result.stderr
    assert status["result"] == "ok" and status["origin"] == "remote" and status["snapshot"] == latest
    checks = {check["part"]: check for check in status["checks"]}
    assert set(checks) == PARTS and all(check["ok"] for check in checks.values()), checks
    assert checks["grafana-db"]["restored"] == {"integrity": "ok", "dashboards": 1000}
    # Every manifest and one slice of the objects read back (backup_drill_readback_weeks, 4 by default).
    readback = status["readback"]
    assert readback["ok"] and readback["of"] == 4 and readback["manifests"] >= 1, readback
    assert json.loads(host.file(CONFIG).content_string)["drill_readback_weeks"] == 4
    assert host.file(DRILL).mode == 0o644
    assert _sums(host) == before, "the drill touched production"
    assert host.run(f"ls -d {BACKUPS}/mov-drill-*").rc != 0, "the scratch copy was left behind"


def test_a_drill_that_finds_a_difference_fails_records_it_and_alerts(host) -> None:  # type: ignore[no-untyped-def]
    # A dashboard created after the snapshot: the restored set no longer matches production's.
    _sql(host, 'INSERT INTO dashboard (title, data) VALUES (\\"CANARY-DASH-NEW\\", \\"x\\")')
    host.check_output(f"rm -f /tmp/drill-webhook.json; ({WEBHOOK} >/dev/null 2>&1 &); sleep 1")
    try:
        result, status = _drill(host)
    finally:
        _sql(host, 'DELETE FROM dashboard WHERE title = \\"CANARY-DASH-NEW\\"')
    assert result.rc == 1
    assert status["result"] == "failed" and "grafana-db" in status["error"]
    checks = {check["part"]: check for check in status["checks"]}
    assert not checks["grafana-db"]["ok"] and checks["grafana-db"]["production"]["dashboards"] == 1001
    assert all(check["ok"] for part, check in checks.items() if part != "grafana-db")
    alert = json.loads(host.file("/tmp/drill-webhook.json").content_string)
    assert alert["kind"] == "restore_drill_failed" and "grafana-db" in alert["message"]
    assert host.run(f"ls -d {BACKUPS}/mov-drill-*").rc != 0


def test_the_drill_runs_weekly_through_the_cron_runner(host) -> None:  # type: ignore[no-untyped-def]
    crontab = host.check_output("crontab -l -u root")
    assert "restore-drill" in crontab and f"{TOOL} drill" in crontab
