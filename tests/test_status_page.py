"""The status page generator (mov_host.status_page) on fixed inputs: every state, escaping,
no secret from its inputs on the page, movctl missing, the readings the broker dropped; and the page as headless
Chromium draws it, read back from the screenshot's pixels."""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from mov_host.movctl import status as movctl_status
from mov_host.movctl.config import MovctlError
from mov_host.status_page import cli, collect, influx, render
from mov_host.status_page import config as sp_config
from mov_host.status_page import page as sp_page
from mov_render import resolved

REPO = Path(__file__).resolve().parent.parent
# The generator as the host runs it: the package's tool dispatcher (python3 -m mov_host mov-status-page).
GENERATOR = [sys.executable, "-m", "mov_host", "mov-status-page"]
GENERATOR_ENV = {**os.environ, "PYTHONPATH": str(REPO / "hosttools" / "src")}
TOKEN = "s3cr3t-T0ken-QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
NOW = "2026-11-26T12:00:00+00:00"


def service(name: str, state: str = "running", health: str = "healthy") -> dict[str, Any]:
    return {
        "service": name,
        "state": state,
        "health": health,
        "uptime_s": 7200,
        "container": f"mov-{name}-1",
        "image": f"registry.internal.example:5000/mov/{name}:1.0",
    }


def all_ok() -> dict[str, Any]:
    return {
        "now": NOW,
        "movctl": {
            "env": "prod",
            "ok": True,
            "services": [service(n) for n in ("mosquitto", "telegraf", "influxdb", "grafana", "analytics")],
            "backup": {"installed": True, "result": "ok"},
            "certificate": {
                "file": "/opt/mov/tls/fullchain.pem",
                "domains": ["mov.example.com"],
                "not_after": "2027-02-20T10:00:00+00:00",
                "days_left": 85,
            },
            "disk": [
                {
                    "path": "/var/lib/docker",
                    "free_bytes": 50 * 1024**3,
                    "total_bytes": 100 * 1024**3,
                    "free_percent": 50.0,
                }
            ],
            "attention": [],
        },
        "backup": {
            "time": "2026-11-26T02:30:05+00:00",
            "result": "ok",
            "snapshot": "20261126T023000Z",
            "offsite": "ok",
        },
        "drill": {"time": "2026-11-22T04:30:00+00:00", "result": "ok", "snapshot": "20261122T023000Z"},
        "readings": {
            "available": True,
            "error": "",
            "sites": [
                {"site": "linha_1", "time": "2026-11-26T11:59:30Z"},
                {"site": "caldeira", "time": "2026-11-26T11:58:00Z"},
            ],
        },
        "dropped": {"collected": True, "count": 0, "error": ""},
    }


def build(inputs: dict[str, Any]) -> tuple[Any, str]:
    page = sp_page.build_page(sp_config.Config(), inputs)
    return page, render.render_html(page)


def levels(page: Any, title: str) -> list[str]:
    return [row.level for section in page.sections if section.title == title for row in section.rows]


# --- states ------------------------------------------------------------------------------------------


def test_all_ok() -> None:
    page, text = build(all_ok())
    assert page.state == "ok"
    assert 'class="banner ok"' in text and "All systems operational" in text
    assert "generated at" in text and "2026-11-26 12:00:00 UTC" in text
    assert "linha_1" in text and "caldeira" in text and "in 85 days" in text


def test_one_service_unhealthy_is_degraded() -> None:
    inputs = all_ok()
    inputs["movctl"]["services"][2] = service("influxdb", health="unhealthy")
    page, text = build(inputs)
    assert page.state == "degraded" and 'class="banner degraded"' in text
    assert levels(page, "Services").count("bad") == 1


def test_every_service_down_is_down() -> None:
    inputs = all_ok()
    inputs["movctl"]["services"] = [service(s["service"], "exited", "") for s in inputs["movctl"]["services"]]
    assert build(inputs)[0].state == "down"


@pytest.mark.parametrize(
    "part, change",
    [
        ("backup", {"result": "failed", "error": "rclone: https://backup-user:hunter2@storage.internal/ refused"}),
        ("backup", {"time": "2026-11-24T02:30:00+00:00"}),
        ("drill", {"result": "failed", "error": "restored copy differs from production: influxdb"}),
        ("drill", {"time": "2026-11-01T04:30:00+00:00"}),
    ],
)
def test_backup_or_drill_failed_or_old_is_degraded(part: str, change: dict[str, Any]) -> None:
    inputs = all_ok()
    inputs[part].update(change)
    page, text = build(inputs)
    assert page.state == "degraded"
    assert "hunter2" not in text and "storage.internal" not in text and "differs from production" not in text


def test_no_backup_yet_is_degraded() -> None:
    inputs = all_ok()
    inputs["backup"] = None
    page, text = build(inputs)
    assert page.state == "degraded" and "no backup has run yet" in text


def rows(page: Any, title: str) -> dict[str, tuple[str, str]]:
    return {row.label: (row.value, row.level) for s in page.sections if s.title == title for row in s.rows}


@pytest.mark.parametrize(
    "last_ok, shown, level",
    [
        # The night before's backup: within mov_backup_max_age_hours (26), as Grafana's backup alert judges it.
        ("2026-11-26T02:30:05+00:00", "9h 29m ago (2026-11-26 02:30 UTC)", "ok"),
        ("2026-11-25T02:30:05+00:00", "1d 9h ago (2026-11-25 02:30 UTC)", "warn"),
        (None, "none recorded", "warn"),
    ],
)
def test_a_failed_backup_shows_the_last_successful_one(last_ok: str | None, shown: str, level: str) -> None:
    inputs = all_ok()
    inputs["backup"].update(result="failed", time="2026-11-26T11:00:00+00:00")
    inputs["backup_last_ok"] = last_ok
    page, text = build(inputs)
    assert rows(page, "Last backup")["last success"] == (shown, level)
    assert page.state == "degraded" and shown in text
    # After a successful backup the row would repeat "when": it is not shown.
    assert "last success" not in rows(build(all_ok() | {"backup_last_ok": last_ok})[0], "Last backup")


def test_the_last_successful_backup_is_read_from_mov_backups_history(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    entries = [
        {"kind": "backup", "status": {"time": "2026-11-24T02:30:00+00:00", "result": "ok"}},
        {"kind": "backup", "status": {"time": "2026-11-25T02:30:00+00:00", "result": "ok"}},
        {"kind": "backup", "status": {"time": "2026-11-26T02:30:00+00:00", "result": "failed"}},
        {"kind": "drill", "status": {"time": "2026-11-26T04:30:00+00:00", "result": "ok"}},
    ]
    history.write_text("\n".join(json.dumps(e) for e in entries) + "\nnot json\n[1]\n")
    assert collect.last_successful_backup(str(history)) == "2026-11-25T02:30:00+00:00"
    assert collect.last_successful_backup(str(tmp_path / "missing.jsonl")) is None
    history.write_text(json.dumps(entries[2]) + "\n")
    assert collect.last_successful_backup(str(history)) is None


def test_certificate_near_expiry_is_degraded_and_expired_is_down() -> None:
    inputs = all_ok()
    inputs["movctl"]["certificate"]["not_after"] = "2026-12-01T10:00:00+00:00"
    page, text = build(inputs)
    assert page.state == "degraded" and "in 4 days" in text
    inputs["movctl"]["certificate"]["not_after"] = "2026-11-20T10:00:00+00:00"
    page, text = build(inputs)
    assert page.state == "down" and "expired 7 days ago" in text


def test_silent_site_is_degraded() -> None:
    inputs = all_ok()
    inputs["readings"]["sites"][1]["time"] = "2026-11-26T10:00:00Z"
    page, _ = build(inputs)
    assert page.state == "degraded" and levels(page, "Last reading per site") == ["ok", "warn"]


def test_no_influxdb_on_this_host() -> None:
    inputs = all_ok()
    inputs["readings"] = {"available": False, "sites": [], "error": "not available on this host"}
    page, text = build(inputs)
    assert page.state == "ok" and "not available on this host" in text


def movctl_config_file(tmp_path: Path) -> Path:
    path = tmp_path / "movctl.json"
    path.write_text(json.dumps({"env": "prod", "stack": {"dir": str(tmp_path), "services": ["mosquitto"]}}))
    return path


def test_movctl_missing_says_so(tmp_path: Path) -> None:
    # No movctl configuration: the movctl role has not run here, so movctl is not installed.
    cfg = sp_config.Config(
        movctl_config=str(tmp_path / "no-movctl.json"),
        backup_status_file=str(tmp_path / "none.json"),
        drill_status_file=str(tmp_path / "none2.json"),
    )
    inputs = collect.gather(cfg)
    built = sp_page.build_page(cfg, inputs)
    text = render.render_html(built)
    assert built.state == "down" and "Service status unavailable: movctl is not installed" in text
    assert "not available on this host" in text


def test_movctl_failing_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(cfg: Any) -> Any:
        raise MovctlError(f"token {TOKEN}", 3)

    monkeypatch.setattr(movctl_status, "collect_status", failing)
    doc = collect.read_movctl(sp_config.Config(movctl_config=str(movctl_config_file(tmp_path))))
    assert doc == {"error": "movctl status failed (exit 3)"}

    def broken(cfg: Any) -> Any:
        raise KeyError(TOKEN)

    monkeypatch.setattr(movctl_status, "collect_status", broken)
    doc = collect.read_movctl(sp_config.Config(movctl_config=str(movctl_config_file(tmp_path))))
    assert doc == {"error": "movctl status failed (exit 1)"}


def test_movctl_status_is_read_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def status_of(cfg: Any) -> Any:
        seen.append(cfg)
        return all_ok()["movctl"]

    monkeypatch.setattr(movctl_status, "collect_status", status_of)
    cfg = sp_config.Config(movctl_config=str(movctl_config_file(tmp_path)))
    assert collect.read_movctl(cfg) == all_ok()["movctl"]
    assert [(c.env, c.stack_dir) for c in seen] == [("prod", str(tmp_path))]
    # Without a movctl_config, movctl's own default: MOVCTL_CONFIG, as on the command line.
    monkeypatch.setenv("MOVCTL_CONFIG", str(movctl_config_file(tmp_path)))
    assert collect.read_movctl(sp_config.Config())["services"][0]["service"] == "mosquitto"  # type: ignore[typeddict-item]


# --- no secrets, escaping ----------------------------------------------------------------------------


def test_hostile_strings_are_escaped_and_secrets_stay_off(tmp_path: Path) -> None:
    inputs = all_ok()
    inputs["movctl"]["services"][0]["service"] = '<script>alert("x")</script>'
    inputs["movctl"]["services"][1]["state"] = "<img src=x onerror=alert(1)>"
    inputs["movctl"]["attention"] = [f"token {TOKEN}"]
    inputs["movctl"]["env"] = "<b>prod</b>"
    inputs["movctl"]["certificate"]["file"] = f"/opt/mov/tls/{TOKEN}"
    inputs["readings"]["sites"][0]["site"] = 'a&b"<i>'
    inputs["backup"]["error"] = f"password={TOKEN}"
    inputs["backup"]["result"] = "failed"
    inputs["drill"]["error"] = f"Authorization: Token {TOKEN}"
    source = tmp_path / "inputs.json"
    source.write_text(json.dumps(inputs))
    out = tmp_path / "page"
    out.mkdir()
    result = subprocess.run(
        [
            *GENERATOR,
            "--config",
            str(write_config(tmp_path)),
            "--from-json",
            str(source),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=GENERATOR_ENV,
    )
    assert result.returncode == 0, result.stderr
    text = (out / "index.html").read_text()
    status = (out / "status.json").read_text()
    for document in (text, status):
        assert TOKEN not in document
        assert "registry.internal.example" not in document and "mov-mosquitto-1" not in document
        assert "/opt/mov" not in document and "/var/lib" not in document
    assert "<script>" not in text and "<img" not in text and "<i>" not in text and "<b>prod" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "a&amp;b&quot;&lt;i&gt;" in text
    assert json.loads(status)["state"] == "degraded"
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "status.json"]  # no temp file left


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "status-page.json"
    config.write_text(json.dumps({"out_dir": str(tmp_path / "unused"), "influxdb_token_file": str(tmp_path / "t")}))
    return config


def test_flux_csv_parsing() -> None:
    text = (
        "#group,false,false,true,false\r\n#datatype,string,long,string,dateTime:RFC3339\r\n"
        ",result,table,localizacao,_time\r\n,_result,0,caldeira,2026-11-26T11:58:00Z\r\n"
        ",_result,1,linha_1,2026-11-26T11:59:30Z\r\n\r\n"
    )
    assert influx.parse_flux_csv(text, "localizacao") == [
        {"site": "caldeira", "time": "2026-11-26T11:58:00Z"},
        {"site": "linha_1", "time": "2026-11-26T11:59:30Z"},
    ]
    query = influx.flux_last_per_site(sp_config.Config(influxdb_bucket="mov_dados"))
    assert 'from(bucket: "mov_dados")' in query and 'group(columns: ["localizacao"])' in query
    # last() right after the filter, where InfluxDB pushes it down to storage.
    assert '|> filter(fn: (r) => exists r["localizacao"]) |> last() |> keep(' in query
    # Flux string literals: no \\u escapes (Flux refuses them), ${ not interpolated.
    assert influx.flux_string('sala_ç"${x}\\') == '"sala_ç\\"\\${x}\\\\"'


def test_readings_token_missing(tmp_path: Path) -> None:
    cfg = sp_config.Config(
        influxdb_url="http://127.0.0.1:9",
        influxdb_org="o",
        influxdb_bucket="b",
        influxdb_token_file=str(tmp_path / "missing"),
    )
    assert influx.read_readings(cfg)["error"].startswith("no read token yet")


# --- headless Chromium: the page as a browser draws it ------------------------------------------------

GREEN = (0x1F, 0x88, 0x3D)
RED = (0xCF, 0x22, 0x2E)
YELLOW = (0xD4, 0xA7, 0x2C)


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0, f"unsupported PNG {depth=} {color=}"
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        previous = line
        rows.append(bytes(b for x in range(width) for b in line[x * channels : x * channels + 3]))
    return width, height, rows


def share(rows: list[bytes], width: int, top: int, bottom: int, colour: tuple[int, int, int]) -> float:
    """The share of pixels in rows top..bottom within a small distance of colour."""
    hits = total = 0
    for row in rows[top:bottom]:
        for x in range(0, width, 2):
            r, g, b = row[3 * x : 3 * x + 3]
            total += 1
            hits += abs(r - colour[0]) + abs(g - colour[1]) + abs(b - colour[2]) <= 24
    return hits / total


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail(
        "headless Chromium is needed for the status page's screenshot test: apt-get install -y chromium "
        "(.ci/run installs it)"
    )


def screenshot(inputs: dict[str, Any], tmp_path: Path, name: str) -> tuple[int, int, list[bytes]]:
    out = tmp_path / name
    out.mkdir()
    source = tmp_path / f"{name}.json"
    source.write_text(json.dumps(inputs))
    assert cli.main(["--config", str(write_config(tmp_path)), "--from-json", str(source), "--out", str(out)]) == 0
    shot = tmp_path / f"{name}.png"
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1000,800",
            (out / "index.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shot.is_file(), f"chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}"
    return decode_png(shot.read_bytes())


def test_screenshot_shows_the_state(tmp_path: Path) -> None:
    ok_inputs = all_ok()
    degraded = copy.deepcopy(ok_inputs)
    degraded["movctl"]["services"][2] = service("influxdb", health="unhealthy")
    down = copy.deepcopy(ok_inputs)
    down["movctl"] = {"error": "movctl is not installed"}

    width, height, ok_rows = screenshot(ok_inputs, tmp_path, "ok")
    assert (width, height) == (1000, 800)
    _, _, degraded_rows = screenshot(degraded, tmp_path, "degraded")
    _, _, down_rows = screenshot(down, tmp_path, "down")

    # The banner is the page's top 60 px: mostly its state's colour, none of another state's.
    banner = {
        name: {
            colour: share(rows, width, 5, 60, rgb)
            for colour, rgb in (("green", GREEN), ("yellow", YELLOW), ("red", RED))
        }
        for name, rows in (("ok", ok_rows), ("degraded", degraded_rows), ("down", down_rows))
    }
    print(f"banner colour shares: {banner}")
    assert banner["ok"]["green"] > 0.5 and banner["ok"]["red"] < 0.01, banner
    assert banner["degraded"]["yellow"] > 0.5 and banner["degraded"]["green"] < 0.01, banner
    assert banner["down"]["red"] > 0.5 and banner["down"]["green"] < 0.01, banner
    # Below the banner the pages differ too: the unhealthy service's red dot.
    assert ok_rows[60:] != degraded_rows[60:]
    assert share(degraded_rows, width, 60, height, RED) > share(ok_rows, width, 60, height, RED)


# --- the config tree: the minute job and the role's place -----------------------------------------------


def test_the_page_is_written_every_minute_and_can_be_switched_off() -> None:
    # The role owns its job (roles/status_page/tasks/run.yml, through the cron role's jobs entry point), so the
    # host's cron role never schedules it before the generator exists.
    assert "status-page" not in {job["name"] for job in resolved("cron_jobs")}
    assert resolved("status_page_schedule") == "* * * * *"
    assert resolved("status_page_enabled") is True
    assert resolved("status_page_enabled", "-e", '{"mov_status_page_enabled": false}') is False


@contextlib.contextmanager
def fake_influxdb(answer: str, seen: dict[str, str], status: int = 200) -> Iterator[str]:
    """InfluxDB's query API answering every query with `answer` (annotated CSV); `seen` gets the last request's
    path, Authorization header and body. Yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.update(
                path=self.path,
                auth=self.headers.get("Authorization", ""),
                body=self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode(),
            )
            self.send_response(status)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_readings_from_a_fake_influxdb(tmp_path: Path) -> None:
    seen: dict[str, str] = {}
    answer = (
        ",result,table,localizacao,_time\r\n,_result,0,linha_1,2026-11-26T11:59:30Z\r\n"
        ",_result,1,caldeira,2026-11-26T11:58:00Z\r\n\r\n"
    )
    token = tmp_path / "influxdb.token"
    token.write_text(TOKEN + "\n")
    with fake_influxdb(answer, seen) as url:
        cfg = sp_config.Config(
            influxdb_url=url,
            influxdb_org="mov_industria",
            influxdb_bucket="mov_dados",
            influxdb_token_file=str(token),
        )
        readings = influx.read_readings(cfg)
    assert readings == {
        "available": True,
        "error": "",
        "sites": [
            {"site": "caldeira", "time": "2026-11-26T11:58:00Z"},
            {"site": "linha_1", "time": "2026-11-26T11:59:30Z"},
        ],
    }
    assert seen["path"] == "/api/v2/query?org=mov_industria" and seen["auth"] == f"Token {TOKEN}"
    assert 'from(bucket: "mov_dados")' in seen["body"]
    text = render.render_html(sp_page.build_page(cfg, {**all_ok(), "readings": readings}))
    assert TOKEN not in text and "caldeira" in text


# --- the readings the broker dropped (Grafana's drop alert's data, on the page) ------------------------------------


def dropped_cfg(tmp_path: Path, url: str, infra_bucket: str = "mov_infra") -> Any:
    token = tmp_path / "influxdb.token"
    token.write_text(TOKEN + "\n")
    return sp_config.Config(
        influxdb_url=url,
        influxdb_org="mov_industria",
        influxdb_bucket="mov_dados",
        influxdb_token_file=str(token),
        influxdb_infra_bucket=infra_bucket,
    )


def test_the_drop_query_is_the_grafana_rules_over_24_hours() -> None:
    # The Grafana rule (roles/grafana/vars/main.yml) and the page read the same thing; only the window differs.
    grafana = yaml.safe_load((REPO / "roles" / "grafana" / "vars" / "main.yml").read_text())["_grafana_dropped_query"]
    assert '"{{ grafana_infra_bucket }}"' in grafana and "range(start: -10m)" in grafana
    expected = grafana.replace('"{{ grafana_infra_bucket }}"', '"mov_infra"').replace("-10m", "-24h")
    query = influx.flux_dropped(sp_config.Config(influxdb_infra_bucket="mov_infra"))
    assert query.split() == expected.split()


def test_drops_from_a_fake_influxdb_show_their_count_and_degrade_the_page(tmp_path: Path) -> None:
    seen: dict[str, str] = {}
    answer = (
        "#group,false,false,true,false,false\r\n#datatype,string,long,string,dateTime:RFC3339,long\r\n"
        ",result,table,_measurement,_time,_value\r\n"
        ",_result,0,mosquitto_broker,2026-11-26T11:40:00Z,37\r\n\r\n"
    )
    with fake_influxdb(answer, seen) as url:
        dropped = influx.read_dropped(dropped_cfg(tmp_path, url))
    assert dropped == {"collected": True, "count": 37, "error": ""}
    assert seen["path"] == "/api/v2/query?org=mov_industria" and seen["auth"] == f"Token {TOKEN}"
    assert seen["body"] == influx.flux_dropped(sp_config.Config(influxdb_infra_bucket="mov_infra"))
    assert 'from(bucket: "mov_infra") |> range(start: -24h)' in seen["body"]
    page, text = build({**all_ok(), "dropped": dropped})
    assert page.state == "degraded" and 'class="banner degraded"' in text
    assert levels(page, "Readings dropped by the broker") == ["warn"]
    assert "Readings dropped by the broker" in text and "37 dropped" in text and "last 24 h" in text
    assert TOKEN not in text


def test_no_drop_is_none_and_ok(tmp_path: Path) -> None:
    # No row: the counter did not change in the window (Mosquitto publishes it on change only).
    with fake_influxdb("\r\n", {}) as url:
        dropped = influx.read_dropped(dropped_cfg(tmp_path, url))
    assert dropped == {"collected": True, "count": 0, "error": ""}
    page, text = build({**all_ok(), "dropped": dropped})
    assert page.state == "ok" and levels(page, "Readings dropped by the broker") == ["ok"]
    assert "last 24 h</td><td>none" in text


def test_drops_unreadable_need_attention_without_the_error_text(tmp_path: Path) -> None:
    with fake_influxdb('{"code":"not found","message":"bucket \\"mov_infra\\" not found"}', {}, status=404) as url:
        dropped = influx.read_dropped(dropped_cfg(tmp_path, url))
    assert dropped == {"collected": True, "count": None, "error": "InfluxDB answered HTTP 404"}
    page, text = build({**all_ok(), "dropped": dropped})
    assert page.state == "degraded" and "drop count unavailable: InfluxDB query failed" in text
    assert "not found" not in text


def test_drops_not_collected_say_so_rather_than_0(tmp_path: Path) -> None:
    # Infrastructure metrics off: no infra bucket, and InfluxDB is not even asked.
    dropped = influx.read_dropped(dropped_cfg(tmp_path, "http://127.0.0.1:9", infra_bucket=""))
    assert dropped == {"collected": False, "count": None, "error": "not collected: the infrastructure metrics are off"}
    page, text = build({**all_ok(), "dropped": dropped})
    assert page.state == "ok" and levels(page, "Readings dropped by the broker") == []
    assert "not collected: the infrastructure metrics are off" in text
    assert "none" not in text and "0 dropped" not in text
    assert page.counts["dropped"] is None
    public = sp_page.public_page(page)
    assert "readings dropped by the broker</td><td>not collected" in render.render_html(public)
    assert json.loads(render.render_public_json(public))["dropped"] is None
    # No InfluxDB on this host: the same, in its words.
    dropped = influx.read_dropped(sp_config.Config(influxdb_infra_bucket="mov_infra"))
    assert dropped["collected"] is False
    assert "not available on this host" in build({**all_ok(), "dropped": dropped})[1]


def test_the_public_page_shows_the_drop_count(tmp_path: Path) -> None:
    inputs = {**all_ok(), "dropped": {"collected": True, "count": 5, "error": ""}}
    source = tmp_path / "inputs.json"
    source.write_text(json.dumps(inputs))
    config = tmp_path / "public.json"
    config.write_text(json.dumps({"public_page": True, "influxdb_infra_bucket": "mov_infra"}))
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["--config", str(config), "--from-json", str(source), "--out", str(out)]) == 0
    public = json.loads((out / "public.json").read_text())
    assert public["state"] == "degraded" and public["dropped"] == {"window_hours": 24, "count": 5}
    assert "readings dropped by the broker (last 24 h)</td><td>5<" in (out / "public.html").read_text()
    assert "linha_1" not in (out / "public.html").read_text()
    # Drops are not one of the "checks": backup and drill (result, when), certificate, disk.
    assert public["checks"] == {"ok": 6, "attention": 0}


def test_the_drop_count_reads_the_infra_bucket_only_when_it_exists() -> None:
    def grants(*extra: str) -> set[tuple[str, str]]:
        (token,) = [t for t in resolved("influxdb_tokens", *extra) if t["name"] == "status-page"]
        return {(p["action"], p["bucket"]) for p in token["permissions"]}

    off = ("-e", '{"mov_infra_metrics_enabled": false}')
    assert resolved("status_page_influxdb_infra_bucket") == "mov_infra"
    assert grants() == {("read", "mov_dados"), ("read", "mov_infra")}
    assert resolved("status_page_influxdb_infra_bucket", *off) == ""
    assert grants(*off) == {("read", "mov_dados")}


# --- the edge gateways' heartbeats (Grafana's offline rule's data, on the page) ------------------------------------


def gateways_cfg(tmp_path: Path, url: str) -> Any:
    return sp_config.Config(
        **{
            **dropped_cfg(tmp_path, url).__dict__,
            "gateways": ["fabrica_sul", "fabrica_norte", "fabrica_leste"],
            "gateway_offline_minutes": 5.0,
        }
    )


def test_each_gateway_of_the_inventory_shows_its_last_heartbeat_and_a_silent_one_degrades(tmp_path: Path) -> None:
    seen: dict[str, str] = {}
    # A plant no longer in the inventory (fabrica_antiga) is not listed; one never heard from (fabrica_leste) is.
    answer = (
        ",result,table,planta,_time\r\n,_result,0,fabrica_sul,2026-11-26T11:59:50Z\r\n"
        ",_result,1,fabrica_norte,2026-11-26T11:50:00Z\r\n,_result,2,fabrica_antiga,2026-11-26T11:59:50Z\r\n\r\n"
    )
    with fake_influxdb(answer, seen) as url:
        cfg = gateways_cfg(tmp_path, url)
        gateways = influx.read_gateways(cfg)
    assert gateways["collected"] is True and gateways["error"] == ""
    assert seen["body"] == influx.flux_last_heartbeat(cfg)
    assert 'from(bucket: "mov_infra")' in seen["body"] and 'r._measurement == "mov_gateway"' in seen["body"]
    assert 'r._field == "uptime"' in seen["body"]
    page = sp_page.build_page(cfg, {**all_ok(), "gateways": gateways})
    text = render.render_html(page)
    shown = rows(page, "Edge gateways: last heartbeat")
    assert shown == {
        "fabrica_sul": ("10s ago (11:59:50 UTC)", "ok"),
        "fabrica_norte": ("10m 0s ago (11:50:00 UTC)", "warn"),  # older than 5 minutes, as the rule fires
        "fabrica_leste": ("no heartbeat in the last days", "warn"),
    }
    assert page.state == "degraded" and "fabrica_antiga" not in text and TOKEN not in text
    public = json.loads(render.render_public_json(sp_page.public_page(page)))
    assert public["gateways"] == {"reporting": 1, "silent": 2}
    assert "fabrica" not in json.dumps(public)


def test_without_gateways_there_is_no_section_and_no_query(tmp_path: Path) -> None:
    seen: dict[str, str] = {}
    with fake_influxdb("\r\n", seen) as url:
        gateways = influx.read_gateways(dropped_cfg(tmp_path, url))
    assert gateways == {"collected": False, "heartbeats": [], "error": ""} and seen == {}
    page, _ = build({**all_ok(), "gateways": gateways})
    assert page.state == "ok" and "gateways" not in page.counts
    assert not [s for s in page.sections if s.title.startswith("Edge gateways")]


def test_gateway_heartbeats_unreadable_need_attention_without_the_error_text(tmp_path: Path) -> None:
    with fake_influxdb("secret body " + TOKEN, {}, status=500) as url:
        cfg = gateways_cfg(tmp_path, url)
        gateways = influx.read_gateways(cfg)
    assert gateways["error"] == "InfluxDB answered HTTP 500"
    page = sp_page.build_page(cfg, {**all_ok(), "gateways": gateways})
    assert rows(page, "Edge gateways: last heartbeat") == {"gateways": ("unavailable", "warn")}
    assert page.counts["gateways"] is None and TOKEN not in render.render_html(page)
