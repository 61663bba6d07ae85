"""What the edge shows the world (issue 22, items 6 and 9): the rendered configs keep the status page private,
hide internal endpoints, switch Grafana's metrics off; fail2ban's filters catch the failed logins nginx and
Mosquitto log and nothing a client could forge.

The filters are run by the real `fail2ban-regex` (on the controller: apt-get install fail2ban) over lines in
the form fail2ban's journal backend gives them ("<host> <identifier>[<pid>]: <message>"). The Mosquitto messages
were captured from mosquitto 2.0.21 (the stack's image) refusing logins made with mosquitto_pub: a wrong
password, an unknown user, no credentials, MQTT v5.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mov_render import ENVS, REPO, rendered, workspace

FILTERS = REPO / "roles/common/files"

# mosquitto 2.0.21, log_timestamp_format %Y-%m-%dT%H:%M:%S, connection_messages true (roles/mosquitto).
MOSQUITTO_REFUSED = """\
2026-12-06T01:10:10: New connection from {ip}:56242 on port 8883.
2026-12-06T01:10:10: Client sensor-7 disconnected, not authorised.
2026-12-06T01:10:10: New connection from {ip}:56254 on port 8883.
2026-12-06T01:10:10: Client auto-3C08AADE-74FF-9F51-C88F-1415B0F4ED98 disconnected, not authorised.
2026-12-06T01:10:10: New connection from {ip}:56266 on port 8883.
2026-12-06T01:10:10: Client anon-1 disconnected, not authorised.
2026-12-06T01:10:10: New connection from {ip}:56284 on port 8883.
2026-12-06T01:10:10: Client v5-client disconnected, not authorised.
"""
MOSQUITTO_ACCEPTED = """\
2026-12-06T01:10:10: New connection from {ip}:56270 on port 8883.
2026-12-06T01:10:10: New client connected from {ip}:56270 as good-1 (p2, c1, k60, u'dev_1').
2026-12-06T01:10:10: Client good-1 disconnected.
"""
# Refused on the compose network's plain listener (a service's own account): not the public port.
MOSQUITTO_INTERNAL = """\
2026-12-06T01:10:10: New connection from {ip}:4000 on port 1883.
2026-12-06T01:10:10: Client telegraf disconnected, not authorised.
"""


def fail2ban_ips(filter_name: str, messages: str, identifier: str, tmp_path: Path) -> list[str]:
    if shutil.which("fail2ban-regex") is None:
        pytest.fail("fail2ban is not installed on the controller: apt-get install -y fail2ban")
    log = tmp_path / "journal.log"
    log.write_text("".join(f"2026-12-06T01:10:10 mov {identifier}[812]: {line}\n" for line in messages.splitlines()))
    result = subprocess.run(
        ["fail2ban-regex", "-o", "ip", str(log), str(FILTERS / f"{filter_name}.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("ip", ["198.51.100.7", "2001:db8::7"])
def test_mosquitto_filter_counts_every_refused_login(ip: str, tmp_path: Path) -> None:
    assert fail2ban_ips("mov-mosquitto-auth", MOSQUITTO_REFUSED.format(ip=ip), "mosquitto", tmp_path) == [ip] * 4


def test_mosquitto_filter_ignores_accepted_logins_and_the_internal_listener(tmp_path: Path) -> None:
    lines = MOSQUITTO_ACCEPTED.format(ip="198.51.100.8") + MOSQUITTO_INTERNAL.format(ip="172.18.0.5")
    assert fail2ban_ips("mov-mosquitto-auth", lines, "mosquitto", tmp_path) == []


def test_mosquitto_filter_reads_only_mosquittos_lines(tmp_path: Path) -> None:
    assert fail2ban_ips("mov-mosquitto-auth", MOSQUITTO_REFUSED.format(ip="198.51.100.7"), "other", tmp_path) == []


# As roles/nginx's log_format mov_auth_failure writes them (molecule/nginx checks nginx writes exactly these).
NGINX_FAILURES = """\
client=198.51.100.9 status=401 method=GET user="viewer" uri="/status/"
client=198.51.100.9 status=401 method=GET user="admin" uri="/api/org"
client=2001:db8::9 status=401 method=POST user="-" uri="/login"
"""


def test_nginx_filter_counts_each_failure(tmp_path: Path) -> None:
    assert fail2ban_ips("mov-nginx-auth", NGINX_FAILURES, "mov_nginx_auth", tmp_path) == [
        "198.51.100.9",
        "198.51.100.9",
        "2001:db8::9",
    ]


def test_nginx_filter_cannot_be_pointed_at_someone_else(tmp_path: Path) -> None:
    # What a client controls ($uri, the basic auth user) comes after its own address; nginx escapes quotes.
    forged = (
        'client=198.51.100.10 status=401 method=GET user="x client=203.0.113.1 status=401 " '
        'uri="/api/ client=203.0.113.1 status=401 "\n'
    )
    assert fail2ban_ips("mov-nginx-auth", forged, "mov_nginx_auth", tmp_path) == ["198.51.100.10"]


@pytest.mark.parametrize("env", ENVS)
def test_the_full_status_page_is_private_by_default(env: str) -> None:
    host_dir, _ = rendered(env)
    conf = (host_dir / "etc/nginx/conf.d/mov.conf").read_text()
    block = conf.split("location ^~ /status/ {", 1)[1].split("}", 1)[0]
    # The generated password (user `status`, vault_mov_secrets.status_page_password) and no allowed address in the
    # shipped envs: a login, kept as a hash only; nobody gets in without it.
    assert 'auth_basic "MOV status page";' in block and "allow " not in block
    password = str(workspace().secret_store(env)["status_page_password"])
    assert password and password not in conf
    assert "public.html" not in conf


@pytest.mark.parametrize("env", ENVS)
def test_internal_endpoints_and_grafana_metrics_are_off(env: str) -> None:
    host_dir, _ = rendered(env)
    conf = (host_dir / "etc/nginx/conf.d/mov.conf").read_text()
    assert "location ~* ^(/metrics|/debug)(/|$) {\n        return 404;" in conf
    ini = configparser.ConfigParser(interpolation=None)
    ini.read_string((host_dir / "opt/mov/grafana/grafana.ini").read_text())
    assert ini.get("metrics", "enabled") == "false"


@pytest.mark.parametrize("env", ENVS)
def test_every_login_path_and_the_api_are_rate_limited(env: str) -> None:
    host_dir, _ = rendered(env)
    conf = (host_dir / "etc/nginx/conf.d/mov.conf").read_text()
    assert "limit_req_zone $mov_login_client zone=mov_login:10m rate=10r/m;" in conf
    assert "limit_req_zone $binary_remote_addr zone=mov_api:10m rate=20r/s;" in conf
    if env == "local":  # no Grafana there, so no API to proxy
        assert "location ^~ /api/ {" not in conf
    else:
        api = conf.split("location ^~ /api/ {", 1)[1].split("}", 1)[0]
        assert "limit_req zone=mov_login burst=5 nodelay;" in api
        assert "limit_req zone=mov_api burst=200 nodelay;" in api
    assert "limit_conn mov_mqtt_websockets 20;" in conf


# The status page generator as the host runs it: the host tools' dispatcher, from the package's source.
GENERATOR = ["python3", "-m", "mov_host", "mov-status-page"]


def test_the_public_status_page_holds_counts_and_no_site_name(tmp_path: Path) -> None:
    inputs = {
        "now": "2026-11-26T12:00:00+00:00",
        "movctl": {
            "env": "prod",
            "services": [
                {"service": "mosquitto", "state": "running", "health": "healthy"},
                {"service": "grafana", "state": "exited", "health": ""},
            ],
            "certificate": {"not_after": "2027-02-20T10:00:00+00:00"},
        },
        "backup": {"time": "2026-11-26T02:30:05+00:00", "result": "ok"},
        "drill": None,
        "readings": {
            "available": True,
            "error": "",
            "sites": [
                {"site": "linha_1", "time": "2026-11-26T11:59:30Z"},
                {"site": "caldeira_secreta", "time": "2026-11-26T10:00:00Z"},
            ],
        },
    }
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    out = tmp_path / "out"
    out.mkdir()
    run = [*GENERATOR, "--from-json", str(tmp_path / "inputs.json"), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "hosttools" / "src")}
    (tmp_path / "private.json").write_text("{}")
    assert subprocess.run([*run, "--config", str(tmp_path / "private.json")], timeout=60, env=env).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "status.json"]  # only when asked
    (tmp_path / "public.json").write_text('{"public_page": true}')
    assert subprocess.run([*run, "--config", str(tmp_path / "public.json")], timeout=60, env=env).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "public.html", "public.json", "status.json"]
    public = json.loads((out / "public.json").read_text())
    assert public["state"] == "degraded"
    assert public["services"] == {"ok": 1, "total": 2}
    assert public["sites"] == {"reporting": 1, "silent": 1}
    assert public["checks"]["attention"] >= 1  # no restore drill yet
    for name in ("public.json", "public.html"):
        text = (out / name).read_text()
        for secret in ("linha_1", "caldeira_secreta", "mosquitto", "grafana", "prod"):
            assert secret not in text, (name, secret)
    assert 'href="index.html"' in (out / "public.html").read_text()
