"""`movctl test`: the checks that run on the host (services healthy, MQTT answers TLS, nginx answers)."""

from __future__ import annotations

import argparse
import shutil
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

from mov_host.movctl.config import EXIT_FAILED, EXIT_OK, Config
from mov_host.movctl.docker import require_stack
from mov_host.movctl.render import emit_json, render_table
from mov_host.movctl.services import read_states

MQTT_CONNECT = bytes([0x10, 0x16, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x0A, 0x00, 0x0A]) + b"movctl-tst"
CONNACK_CODES = {
    0: "accepted",
    1: "bad protocol",
    2: "client id refused",
    3: "unavailable",
    4: "bad credentials",
    5: "not authorised",
}


def _tls_context() -> ssl.SSLContext:
    # Whether it answers TLS is the question; the certificate's validity is status's (expiry) and verify's.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def probe_mqtt_tls(host: str, port: int, server_name: str, timeout: float = 5) -> tuple[bool, str]:
    """A TLS handshake, then an anonymous MQTT CONNECT: any CONNACK proves the broker behind the TLS answers."""
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            _tls_context().wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            version = tls.version()
            tls.sendall(MQTT_CONNECT)
            answer = tls.recv(4)
    except (OSError, ssl.SSLError) as exc:
        return False, f"{host}:{port}: {type(exc).__name__}: {exc}"
    if len(answer) >= 4 and answer[0] == 0x20:
        return True, f"{host}:{port}: {version}, MQTT CONNACK ({CONNACK_CODES.get(answer[3], answer[3])})"
    return False, f"{host}:{port}: {version}, but no MQTT CONNACK (got {answer!r})"


def probe_http(host: str, port: int, server_name: str, use_tls: bool, timeout: float = 5) -> tuple[bool, str]:
    request = f"HEAD / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            conn: socket.socket = _tls_context().wrap_socket(raw, server_hostname=server_name) if use_tls else raw
            conn.sendall(request)
            first = conn.recv(256).split(b"\r\n", 1)[0].decode(errors="replace")
    except (OSError, ssl.SSLError) as exc:
        return False, f"{host}:{port}: {type(exc).__name__}: {exc}"
    if first.startswith("HTTP/"):
        return True, f"{host}:{port}: {first}"
    return False, f"{host}:{port}: not an HTTP answer ({first!r})"


def nginx_present() -> bool:
    return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


def run_checks(cfg: Config) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for state in read_states(cfg):
        if state.service not in cfg.services:
            continue
        detail = f"{state.state}{', ' + state.health if state.health else ''}"
        checks.append({"name": state.service, "ok": state.ok, "detail": detail})
    if "mosquitto" in cfg.services:
        ok, detail = probe_mqtt_tls("127.0.0.1", cfg.mqtt_tls_port, cfg.mqtt_tls_name)
        checks.append({"name": "mqtt-tls", "ok": ok, "detail": detail})
    if nginx_present():
        server_name = cfg.domains[0] if cfg.domains else "localhost"
        for name, port, tls in (
            ("nginx-http", cfg.nginx_http_port, False),
            ("nginx-https", cfg.nginx_https_port, True),
        ):
            ok, detail = probe_http("127.0.0.1", port, server_name, tls)
            checks.append({"name": name, "ok": ok, "detail": detail})
    else:
        checks.append({"name": "nginx", "ok": True, "detail": "not installed on this host: skipped"})
    return checks


def cmd_test(cfg: Config, args: argparse.Namespace) -> int:
    require_stack(cfg)
    checks = run_checks(cfg)
    failed = [c["name"] for c in checks if not c["ok"]]
    if args.json:
        emit_json({"ok": not failed, "failed": failed, "checks": checks})
    else:
        print(
            render_table(
                ["CHECK", "RESULT", "DETAIL"], [[c["name"], "ok" if c["ok"] else "FAILED", c["detail"]] for c in checks]
            )
        )
        if failed:
            print(f"movctl test: FAILED: {', '.join(failed)}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
