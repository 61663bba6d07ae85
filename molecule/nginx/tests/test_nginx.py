"""Behaviour of the nginx role: the redirect and the challenge on :80, TLS and headers on :443, the proxied
upstreams (stand-ins on Grafana's and Mosquitto's websocket ports), and config changes that reload, or are
refused by nginx -t while the running config keeps serving."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

BOX = f"mov-{os.environ.get('MOLECULE_SCENARIO_NAME', 'nginx')}"
SCENARIO = Path(__file__).resolve().parent.parent
REPO = SCENARIO.parent.parent
RESOLVE = "--resolve mov.test:443:127.0.0.1"
SITE = "https://mov.test"
HTTPS = f"{RESOLVE} {SITE}"

# Stand-in upstream: answers every request with the request line and headers it received, as JSON.
ECHO = r"""
import http.server, json, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def reply(self):
        # Read the whole request body first: replying before it is read makes the upstream close on a
        # half-sent body, which nginx reports as 502 (seen with the 11 MB body test).
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "fail401" in self.path:  # Grafana refusing a login or basic credentials
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"port": self.server.server_port, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        # ?hold=N: keep the request open N seconds (a long-lived websocket, for the connection limit).
        if "hold=" in self.path:
            import time; time.sleep(float(self.path.rsplit("hold=", 1)[1]))
        self.reply()
    do_POST = reply
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""


def main_pid(host) -> str:  # type: ignore[no-untyped-def]
    return str(host.check_output("systemctl show -p MainPID --value nginx"))


def curl(host, args: str) -> str:  # type: ignore[no-untyped-def]
    return str(host.check_output(f"curl -sk --max-time 5 {args}"))


def echoed(host, path: str, headers: str = "") -> dict[str, object]:  # type: ignore[no-untyped-def]
    return json.loads(curl(host, f"{headers} {HTTPS}{path}"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module", autouse=True)
def upstreams(host) -> Iterator[None]:  # type: ignore[no-untyped-def]
    host.check_output(f"cat > /tmp/echo.py <<'EOF'\n{ECHO}\nEOF")
    for port in (3000, 9001):
        host.run(f"systemctl stop echo-{port}")
        host.check_output(f"systemd-run --unit echo-{port} python3 /tmp/echo.py {port}")
    host.check_output(
        "for i in $(seq 50); do curl -s 127.0.0.1:3000 && curl -s 127.0.0.1:9001 && exit 0; sleep 0.1; done; exit 1"
    )
    yield
    for port in (3000, 9001):
        host.run(f"systemctl stop echo-{port}")


def rerun_role(extra: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """The converge playbook again, against this box, with extra variables on top."""
    return subprocess.run(
        [
            "ansible-playbook",
            str(SCENARIO / "converge.yml"),
            "-i",
            f"{BOX},",
            "-c",
            "community.docker.docker",
            "--skip-tags",
            "nginx_install",
            "-e",
            json.dumps(extra),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1"),
    )


def test_nginx_runs_with_only_our_site(host) -> None:  # type: ignore[no-untyped-def]
    nginx = host.service("nginx")
    assert nginx.is_running and nginx.is_enabled
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    assert host.run("nginx -t").rc == 0


def test_http_redirects_to_https(host) -> None:  # type: ignore[no-untyped-def]
    out = curl(
        host, "-o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: mov.test' 'http://127.0.0.1/d/abc?orgId=1'"
    )
    assert out == "301 https://mov.test/d/abc?orgId=1"


def test_http_serves_the_acme_challenge(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output(
        "install -d /var/www/mov-acme/.well-known/acme-challenge && "
        "echo token-content > /var/www/mov-acme/.well-known/acme-challenge/token-1"
    )
    url = "-H 'Host: mov.test' http://127.0.0.1/.well-known/acme-challenge"
    assert curl(host, f"-w ' %{{http_code}}' {url}/token-1") == "token-content\n 200"
    assert curl(host, f"-o /dev/null -w '%{{http_code}}' {url}/missing") == "404"


def test_placeholder_certificate_until_one_is_issued(host) -> None:  # type: ignore[no-untyped-def]
    subject = host.check_output(
        "openssl s_client -connect 127.0.0.1:443 -servername mov.test </dev/null "
        "2>/dev/null | openssl x509 -noout -subject -ext subjectAltName"
    )
    assert "MOV placeholder" in subject
    assert "DNS:mov.test" in subject and "DNS:www.mov.test" in subject
    key = host.file("/opt/mov/tls/privkey.pem")
    assert key.mode == 0o600 and key.user == "root"


@pytest.mark.parametrize(("version", "accepted"), [("-tls1_1", False), ("-tls1_2", True), ("-tls1_3", True)])
def test_tls_versions(host, version: str, accepted: bool) -> None:  # type: ignore[no-untyped-def]
    # SECLEVEL=0 so that the client itself is willing to speak TLS 1.1: the refusal must come from nginx.
    result = host.run(
        f"openssl s_client -connect 127.0.0.1:443 -servername mov.test {version} -cipher DEFAULT@SECLEVEL=0 </dev/null"
    )
    assert (result.rc == 0) is accepted, result.stdout + result.stderr
    if not accepted:
        assert "alert protocol version" in result.stdout + result.stderr


def test_security_headers(host) -> None:  # type: ignore[no-untyped-def]
    headers = curl(host, f"-D - -o /dev/null {HTTPS}/").lower()
    assert "strict-transport-security: max-age=63072000" in headers
    assert "x-content-type-options: nosniff" in headers
    assert "x-frame-options: sameorigin" in headers
    assert "content-security-policy: frame-ancestors 'self'" in headers
    assert "referrer-policy: strict-origin-when-cross-origin" in headers


def test_grafana_is_proxied(host) -> None:  # type: ignore[no-untyped-def]
    seen = echoed(host, "/d/abc?orgId=1")
    headers = seen["headers"]
    assert seen["port"] == 3000 and seen["path"] == "/d/abc?orgId=1"
    assert headers["host"] == "mov.test" and headers["x-forwarded-proto"] == "https"  # type: ignore[index]


@pytest.mark.parametrize(("path", "port"), [("/api/live/ws", 3000), ("/mqtt", 9001)])
def test_websocket_upgrades_pass_through(host, path: str, port: int) -> None:  # type: ignore[no-untyped-def]
    seen = echoed(host, path, "-H 'Upgrade: websocket' -H 'Connection: Upgrade' -H 'Sec-WebSocket-Version: 13'")
    headers = seen["headers"]
    assert seen["port"] == port and seen["path"] == path
    assert headers["upgrade"] == "websocket" and headers["connection"] == "upgrade"  # type: ignore[index]


def test_grafana_login_is_rate_limited(host) -> None:  # type: ignore[no-untyped-def]
    codes = host.check_output(
        f"for i in $(seq 15); do curl -sk -o /dev/null -w '%{{http_code}} ' {HTTPS}/login; done"
    ).split()
    assert codes[0] == "200"
    assert "429" in codes, codes


def code(host, args: str) -> str:  # type: ignore[no-untyped-def]
    return curl(host, f"-o /dev/null -w '%{{http_code}}' {args}")


def codes(host, args: str) -> list[str]:  # type: ignore[no-untyped-def]
    """One status per URL of a curl glob (one connection, so the burst is spent at once)."""
    return curl(host, f"-o /dev/null -w '%{{http_code}} ' {args}").split()


def test_status_page_location(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output("echo status-ok > /opt/mov/status-page/index.html")
    assert curl(host, f"--interface 127.0.0.11 -u viewer:molecule-status-password {HTTPS}/status/") == "status-ok"
    assert code(host, f"{HTTPS}/status") == "301"


@pytest.mark.parametrize("path", ["/status/", "/status/index.html", "/status/status.json"])
def test_status_page_needs_a_login(host, path: str) -> None:  # type: ignore[no-untyped-def]
    host.check_output("echo status-ok > /opt/mov/status-page/index.html && echo {} > /opt/mov/status-page/status.json")
    assert code(host, f"{HTTPS}{path}") == "401"
    assert code(host, f"--interface 127.0.0.9 -u viewer:wrong {HTTPS}{path}") == "401"
    assert code(host, f"--interface 127.0.0.11 -u viewer:molecule-status-password {HTTPS}{path}") == "200"


def test_status_page_users_file_is_private(host) -> None:  # type: ignore[no-untyped-def]
    users = host.file("/etc/nginx/mov-status-page.htpasswd")
    assert users.mode == 0o640 and users.user == "root" and users.group == "www-data"
    assert users.content_string.startswith("viewer:$6$") and "molecule-status-password" not in users.content_string


def test_status_page_allowed_address_needs_no_login(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output("echo status-ok > /opt/mov/status-page/index.html")
    assert curl(host, f"--interface 127.0.0.2 {HTTPS}/status/") == "status-ok"


@pytest.mark.parametrize("path", ["/metrics", "/metrics/plugins/x", "/METRICS", "/debug/pprof/", "/%6detrics"])
def test_internal_endpoints_are_not_served(host, path: str) -> None:  # type: ignore[no-untyped-def]
    assert code(host, f"{HTTPS}{path}") == "404"


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("127.0.0.3", "/login/generic_oauth"),
        ("127.0.0.4", "/login/"),
        ("127.0.0.5", "/api/user/password/send-reset-email"),
    ],
)
def test_every_login_path_is_rate_limited(host, source: str, path: str) -> None:  # type: ignore[no-untyped-def]
    # A source address of its own per test: each has its own bucket. Burst 5 at 10r/m: the 7th is refused.
    got = codes(host, f"--interface {source} {RESOLVE} '{SITE}{path}?try=[1-8]'")
    assert got[:5] == ["200"] * 5 and "429" in got, got


def test_basic_auth_on_the_api_is_rate_limited_like_a_login(host) -> None:  # type: ignore[no-untyped-def]
    got = codes(host, f"--interface 127.0.0.6 -u admin:guess {RESOLVE} '{SITE}/api/org?try=[1-8]'")
    assert got[:5] == ["200"] * 5 and "429" in got, got


def test_the_api_limit_is_generous_then_refuses(host) -> None:  # type: ignore[no-untyped-def]
    # A dashboard opening makes 30-60 API calls at once: 150 back to back all pass; a flood past the burst not.
    got = codes(host, f"--interface 127.0.0.7 {RESOLVE} '{SITE}/api/ds/query?n=[1-400]'")
    assert got[:150] == ["200"] * 150, got[:150]
    assert "429" in got, got


def test_mqtt_websockets_connections_are_limited(host) -> None:  # type: ignore[no-untyped-def]
    # 25 connections held open at once from one address: 20 pass, the rest are refused.
    got = host.check_output(
        f"for i in $(seq 25); do curl -sk --max-time 10 --interface 127.0.0.8 -o /dev/null -w '%{{http_code}}\\n' "
        f"-H 'Upgrade: websocket' -H 'Connection: Upgrade' {RESOLVE} '{SITE}/mqtt?hold=3' & done; wait"
    ).split()
    assert got.count("200") == 20 and got.count("429") == 5, got


def test_failed_logins_reach_the_journal_for_fail2ban(host) -> None:  # type: ignore[no-untyped-def]
    # Only failures are logged, the client's address first: a wrong status page password, Grafana refusing basic
    # credentials on its API and its login form (the stand-in answers 401 to ?fail401).
    me = "--interface 127.0.0.10"
    assert code(host, f"{me} -u viewer:wrong {HTTPS}/status/") == "401"
    assert code(host, f"{me} -u viewer:molecule-status-password {HTTPS}/status/") == "200"
    assert code(host, f"{me} {HTTPS}/status/") == "401"  # no credentials yet: a challenge, not a failure
    assert code(host, f"{me} -u admin:guess {RESOLVE} '{SITE}/api/org?fail401'") == "401"
    assert code(host, f"{me} -X POST {RESOLVE} '{SITE}/login?fail401'") == "401"
    assert code(host, f"{me} {RESOLVE} '{SITE}/api/dashboards?fail401'") == "401"  # an expired session: not a login
    expected = [
        'client=127.0.0.10 status=401 method=GET user="viewer" uri="/status/"',
        'client=127.0.0.10 status=401 method=GET user="admin" uri="/api/org"',
        'client=127.0.0.10 status=401 method=POST user="-" uri="/login"',
    ]
    lines: list[str] = []
    for _ in range(20):
        lines = [
            line
            for line in host.check_output("journalctl -q -o cat SYSLOG_IDENTIFIER=mov_nginx_auth").splitlines()
            if line.startswith("client=127.0.0.10 ")
        ]
        if len(lines) >= len(expected):
            break
        host.run("sleep 0.5")
    assert lines == expected


def test_request_body_is_limited(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output("head -c 11000000 /dev/zero > /tmp/body")
    assert curl(host, f"-o /dev/null -w '%{{http_code}}' --data-binary @/tmp/body {HTTPS}/api/ds/query") == "413"


def test_a_broken_change_is_refused_and_nginx_keeps_serving(host) -> None:  # type: ignore[no-untyped-def]
    pid = main_pid(host)
    before = host.file("/etc/nginx/conf.d/mov.conf").content_string
    result = rerun_role({"nginx_extra_server_directives": ["bogus_directive on;"]})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "failed to validate" in output and 'unknown directive "bogus_directive"' in output, output[-3000:]
    assert host.file("/etc/nginx/conf.d/mov.conf").content_string == before
    assert echoed(host, "/")["port"] == 3000
    assert main_pid(host) == pid


def test_a_good_change_reloads_without_restart(host) -> None:  # type: ignore[no-untyped-def]
    pid = main_pid(host)
    result = rerun_role({"nginx_client_max_body_size": "20m"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "RUNNING HANDLER [nginx : Reload nginx]" in result.stdout
    assert "client_max_body_size 20m;" in host.file("/etc/nginx/conf.d/mov.conf").content_string
    assert curl(host, f"-o /dev/null -w '%{{http_code}}' --data-binary @/tmp/body {HTTPS}/api/ds/query") == "200"
    assert main_pid(host) == pid


def test_public_mode_shows_the_counts_and_keeps_the_full_page_private(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output(
        "cd /opt/mov/status-page && echo full-page > index.html && echo counts-page > public.html "
        '&& echo \'{"state": "ok"}\' > public.json'
    )
    assert code(host, f"{HTTPS}/status/public.json") == "401"  # not public until asked
    result = rerun_role({"nginx_status_page_public": True})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert curl(host, f"{HTTPS}/status/") == "counts-page"
    assert curl(host, f"{HTTPS}/status/public.json") == '{"state": "ok"}'
    assert code(host, f"{HTTPS}/status/index.html") == "401"
    assert code(host, f"{HTTPS}/status/status.json") == "401"
    viewer = "--interface 127.0.0.12 -u viewer:molecule-status-password"
    assert curl(host, f"{viewer} {HTTPS}/status/index.html") == "full-page"
