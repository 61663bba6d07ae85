#!/usr/bin/env python3
"""mov-status-page: the platform's public status page, a static index.html and status.json.

Reads what the health checks already know: `movctl status --json` (services, certificate, disk), the backup
tool's status file and restore drill result, and, where InfluxDB runs, the last reading per site and, where the
infrastructure metrics are collected, how many readings the broker dropped in the last hours (a read-only token).
Writes both files atomically into the page directory nginx serves. Nothing secret goes on the page:
only service names, states, times, ages and results; never error texts, paths, tokens or internal addresses.
nginx keeps that page private (roles/nginx). With `public_page` set it also writes public.html and public.json:
counts only (the state, services up, sites reporting or silent, readings dropped, checks needing attention), never a
site's name, for nginx's public mode.

    mov-status-page [--config /etc/mov/status-page.json] [--out DIR]
    mov-status-page --from-json inputs.json --out DIR      # fixed inputs (tests): no host needed

The configuration is written by the Ansible role `status_page`. Exit 0 when the page was written (whatever the
platform's state), 1 when it could not be.
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "/etc/mov/status-page.json"
LEVELS = ("ok", "warn", "bad", "unknown")
STATE_OF_LEVEL = {"ok": "ok", "warn": "degraded", "unknown": "degraded", "bad": "down"}


@dataclass(frozen=True)
class Config:
    out_dir: str = "/opt/mov/status-page"
    title: str = "MOV platform"
    movctl: str = "/usr/local/bin/movctl"
    backup_status_file: str = "/var/lib/mov-backup/status.json"
    drill_status_file: str = "/var/lib/mov-backup/drill.json"
    backup_max_age_hours: float = 26.0
    drill_max_age_days: float = 8.0
    cert_warn_days: int = 14
    readings_max_age_minutes: float = 15.0
    influxdb_url: str = ""  # empty: InfluxDB is not among this host's services
    influxdb_org: str = ""
    influxdb_bucket: str = ""
    influxdb_token_file: str = ""
    influxdb_site_tag: str = "localizacao"
    influxdb_lookback_hours: int = 168
    # The infrastructure bucket, where Telegraf writes the broker's drop counter; empty: not collected here.
    influxdb_infra_bucket: str = ""
    dropped_window_hours: int = 24
    public_page: bool = False  # also write public.html and public.json (counts only)


def load_config(path: str | None) -> Config:
    if path is None:
        return Config()
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a JSON object")
    known = set(Config.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {', '.join(unknown)}")
    return Config(**raw)


# --- inputs ----------------------------------------------------------------------------------------


def read_movctl(cfg: Config) -> dict[str, Any]:
    """movctl's status document, or {"error": ...} when movctl is missing, fails or prints no document."""
    try:
        result = subprocess.run(
            [cfg.movctl, "status", "--json"], capture_output=True, text=True, timeout=90, check=False
        )
    except FileNotFoundError:
        return {"error": "movctl is not installed"}
    except (OSError, subprocess.TimeoutExpired):
        return {"error": "movctl status did not answer"}
    try:
        doc = json.loads(result.stdout)
    except ValueError:
        return {"error": f"movctl status failed (exit {result.returncode})"}
    if not isinstance(doc, dict):
        return {"error": "movctl status printed no status document"}
    if "services" not in doc:  # movctl's error document: {"ok": false, "error": ..., "exit_code": ...}
        return {"error": f"movctl status failed (exit {result.returncode})"}
    return doc


def read_json_file(path: str) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"result": "unreadable"}
    return data if isinstance(data, dict) else {"result": "unreadable"}


def flux_string(text: str) -> str:
    """A Flux string literal: backslash, double quote and ``${`` escaped. Not json.dumps: Flux refuses its \\uXXXX
    escapes (libflux parser/strconv.rs) and would interpolate ``${``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def flux_last_per_site(cfg: Config) -> str:
    """The last reading's time per site. `last()` straight after the filter is pushed down to storage, so one row
    per series reaches the rest of the query instead of every point of the lookback, every minute
    (influxdb v2.7.11 query/stdlib/influxdata/influxdb/rules.go, PushDownBareAggregateRule)."""
    bucket = flux_string(cfg.influxdb_bucket)
    tag = flux_string(cfg.influxdb_site_tag)
    return (
        f"from(bucket: {bucket}) |> range(start: -{int(cfg.influxdb_lookback_hours)}h)"
        f" |> filter(fn: (r) => exists r[{tag}]) |> last()"
        f' |> keep(columns: ["_time", {tag}]) |> group(columns: [{tag}]) |> max(column: "_time")'
    )


def flux_dropped(cfg: Config) -> str:
    """The readings the broker dropped in the last `dropped_window_hours`: the Grafana rule's query
    (roles/grafana/vars/main.yml, `_grafana_dropped_query`) over the page's window instead of the rule's 10 minutes.
    The counter only grows while the broker runs and starts again at 0 with it, hence the non-negative differences
    summed; tests/test_status_page.py keeps the two queries the same."""
    bucket = flux_string(cfg.influxdb_infra_bucket)
    return (
        f"from(bucket: {bucket}) |> range(start: -{int(cfg.dropped_window_hours)}h)"
        ' |> filter(fn: (r) => r._measurement == "mosquitto_broker" and r._field == "value")'
        ' |> group(columns: ["_measurement"]) |> sort(columns: ["_time"])'
        " |> difference(nonNegative: true) |> cumulativeSum() |> last()"
        ' |> keep(columns: ["_time", "_value", "_measurement"])'
    )


def flux_rows(text: str) -> list[dict[str, str]]:
    """The rows of InfluxDB's annotated CSV, by column name; tables repeat their header after a blank line."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for record in csv.reader(io.StringIO(text)):
        if not record or all(not cell for cell in record):
            header = None
            continue
        if record[0].startswith("#"):
            continue
        if header is None:
            header = record
            continue
        rows.append(dict(zip(header, record, strict=False)))
    return rows


def parse_flux_csv(text: str, tag: str) -> list[dict[str, str]]:
    """The last reading per site's rows as {site, time}."""
    return [
        {"site": values[tag], "time": values["_time"]}
        for values in flux_rows(text)
        if values.get(tag) and values.get("_time")
    ]


def query_influxdb(cfg: Config, flux: str) -> tuple[str, str]:
    """(annotated CSV, "") or ("", the reason it could not be read); the reason never holds the token."""
    try:
        token = Path(cfg.influxdb_token_file).read_text(encoding="utf-8").strip()
    except OSError:
        return "", "no read token yet (the stack deploy writes it)"
    query = urllib.parse.urlencode({"org": cfg.influxdb_org})
    request = urllib.request.Request(
        f"{cfg.influxdb_url.rstrip('/')}/api/v2/query?{query}",
        data=flux.encode(),
        method="POST",
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/vnd.flux",
            "Accept": "application/csv",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.read().decode("utf-8", "replace"), ""
    except urllib.error.HTTPError as exc:
        return "", f"InfluxDB answered HTTP {exc.code}"
    except (OSError, ValueError):
        return "", "InfluxDB did not answer"


def read_readings(cfg: Config) -> dict[str, Any]:
    """{"available": bool, "sites": [...], "error": str}: the last reading per site, from InfluxDB."""
    if not cfg.influxdb_url:
        return {"available": False, "sites": [], "error": "not available on this host"}
    text, error = query_influxdb(cfg, flux_last_per_site(cfg))
    if error:
        return {"available": True, "sites": [], "error": error}
    sites = sorted(parse_flux_csv(text, cfg.influxdb_site_tag), key=lambda row: row["site"])
    return {"available": True, "sites": sites, "error": ""}


NOT_COLLECTED = "not collected: the infrastructure metrics are off"


def read_dropped(cfg: Config) -> dict[str, Any]:
    """{"collected": bool, "count": int | None, "error": str}: the readings the broker dropped in the window. No row
    is none dropped: Mosquitto publishes the counter only when it changes (eclipse/mosquitto src/sys_tree.c), and
    Grafana's rule reads no data as OK too."""
    if not cfg.influxdb_url:
        return {"collected": False, "count": None, "error": "not available on this host"}
    if not cfg.influxdb_infra_bucket:
        return {"collected": False, "count": None, "error": NOT_COLLECTED}
    text, error = query_influxdb(cfg, flux_dropped(cfg))
    if error:
        return {"collected": True, "count": None, "error": error}
    values = [row["_value"] for row in flux_rows(text) if row.get("_value")]
    try:
        count = max(0, int(float(values[-1]))) if values else 0
    except ValueError:
        return {"collected": True, "count": None, "error": "InfluxDB query failed"}
    return {"collected": True, "count": count, "error": ""}


def gather(cfg: Config) -> dict[str, Any]:
    return {
        "now": datetime.now(UTC).isoformat(timespec="seconds"),
        "movctl": read_movctl(cfg),
        "backup": read_json_file(cfg.backup_status_file),
        "drill": read_json_file(cfg.drill_status_file),
        "readings": read_readings(cfg),
        "dropped": read_dropped(cfg),
    }


# --- the page's model: every value chosen here, from known fields only ------------------------------


@dataclass
class Row:
    label: str
    value: str
    level: str  # one of LEVELS


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    note: str = ""
    full_page_link: bool = False  # the public page's pointer to the private full page


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def age_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def word(value: Any, allowed: tuple[str, ...], default: str = "unknown") -> str:
    """A value from a fixed vocabulary; anything else (including hostile text) becomes `default`."""
    text = str(value).lower() if value is not None else ""
    return text if text in allowed else default


SERVICE_STATES = ("running", "exited", "restarting", "paused", "created", "dead", "removing", "missing")
HEALTH_STATES = ("healthy", "unhealthy", "starting", "")


def services_section(movctl: dict[str, Any]) -> Section:
    section = Section("Services")
    if "error" in movctl or not isinstance(movctl.get("services"), list):
        reason = word(
            movctl.get("error"), ("movctl is not installed", "movctl status did not answer"), "movctl status failed"
        )
        section.note = f"Service status unavailable: {reason}"
        section.rows.append(Row("status", "unavailable", "bad"))
        return section
    for item in movctl["services"]:
        if not isinstance(item, dict):
            continue
        state = word(item.get("state"), SERVICE_STATES)
        health = word(item.get("health") or "", HEALTH_STATES)
        ok = state == "running" and health in ("healthy", "")
        uptime = item.get("uptime_s")
        value = state + (f", {health}" if health else "")
        if ok and isinstance(uptime, int | float):
            value += f", up {age_text(uptime)}"
        section.rows.append(Row(str(item.get("service", "?")), value, "ok" if ok else "bad"))
    if not section.rows:
        section.rows.append(Row("status", "no services reported", "bad"))
    return section


def result_section(title: str, data: dict[str, Any] | None, now: datetime, max_age_s: float, never: str) -> Section:
    """The backup's or the restore drill's last run: result and age; never its error text (paths, remotes)."""
    section = Section(title)
    if data is None:
        section.rows.append(Row("last run", never, "warn"))
        return section
    result = word(data.get("result"), ("ok", "failed", "unreadable"))
    when = parse_time(data.get("time"))
    age = (now - when).total_seconds() if when else None
    level = "ok" if result == "ok" else "warn"
    if result == "ok" and (age is None or age > max_age_s):
        level = "warn"
    section.rows.append(Row("result", result, "ok" if result == "ok" else "warn"))
    section.rows.append(
        Row(
            "when",
            f"{age_text(age)} ago ({when.strftime('%Y-%m-%d %H:%M')} UTC)"
            if age is not None and when is not None
            else "unknown",
            "ok" if age is not None and age <= max_age_s else "warn",
        )
    )
    if level != "ok":
        section.note = (
            "the last run failed"
            if result != "ok"
            else f"older than {age_text(max_age_s)}: is the scheduled job running?"
        )
    return section


def certificate_section(movctl: dict[str, Any], now: datetime, warn_days: int) -> Section:
    section = Section("Certificate")
    cert = movctl.get("certificate") if isinstance(movctl.get("certificate"), dict) else None
    not_after = parse_time(cert.get("not_after")) if cert else None
    if not_after is None:
        section.rows.append(Row("expiry", "unknown", "warn"))
        return section
    days = int((not_after - now).total_seconds() // 86400)
    level = "bad" if days < 0 else "warn" if days < warn_days else "ok"
    text = f"expired {-days} days ago" if days < 0 else f"in {days} days"
    section.rows.append(Row("expires", f"{text} ({not_after.strftime('%Y-%m-%d')})", level))
    return section


def disk_section(movctl: dict[str, Any]) -> Section | None:
    disk = movctl.get("disk")
    if not isinstance(disk, list) or not disk:
        return None
    section = Section("Disk")
    for index, row in enumerate(item for item in disk if isinstance(item, dict)):
        percent = row.get("free_percent")
        value = f"{float(percent):g} % free" if isinstance(percent, int | float) else "unknown"
        # File systems by number, not path: the host's layout is not the public's business.
        section.rows.append(Row(f"file system {index + 1}", value, "warn" if row.get("problem") else "ok"))
    return section


def query_error(error: Any) -> str:
    """Why InfluxDB could not be read, from a fixed vocabulary (an HTTP status or anything else: the query failed)."""
    return word(
        error, ("no read token yet (the stack deploy writes it)", "influxdb did not answer"), "InfluxDB query failed"
    )


def readings_section(readings: dict[str, Any], now: datetime, max_age_s: float) -> Section:
    section = Section("Last reading per site")
    if not readings.get("available"):
        section.note = "not available on this host"
        return section
    if readings.get("error"):
        section.note = "readings unavailable: " + query_error(readings["error"])
        section.rows.append(Row("readings", "unavailable", "warn"))
        return section
    for site in readings.get("sites") or []:
        when = parse_time(site.get("time")) if isinstance(site, dict) else None
        if when is None:
            continue
        age = (now - when).total_seconds()
        section.rows.append(
            Row(
                str(site.get("site", "?")),
                f"{age_text(age)} ago ({when.strftime('%H:%M:%S')} UTC)",
                "ok" if age <= max_age_s else "warn",
            )
        )
    if not section.rows:
        section.rows.append(Row("readings", "none in the last days", "warn"))
    return section


def dropped_count(dropped: dict[str, Any]) -> int | None:
    count = dropped.get("count")
    if not dropped.get("collected") or dropped.get("error") or isinstance(count, bool) or not isinstance(count, int):
        return None
    return max(0, count)


def dropped_section(dropped: dict[str, Any], window_hours: int) -> Section:
    """The readings the broker acknowledged and then dropped (a consumer's queue full: docs/data-promise.md). Not
    collected is said, never shown as 0."""
    section = Section("Readings dropped by the broker")
    if not dropped.get("collected"):
        section.note = word(dropped.get("error"), ("not available on this host",), NOT_COLLECTED)
        return section
    label = f"last {window_hours} h"
    count = dropped_count(dropped)
    if count is None:
        section.note = "drop count unavailable: " + query_error(dropped.get("error"))
        section.rows.append(Row(label, "unavailable", "warn"))
        return section
    section.rows.append(Row(label, f"{count} dropped" if count else "none", "warn" if count else "ok"))
    if count:
        section.note = "acknowledged readings lost: a consumer's queue was full (see the broker's log)"
    return section


@dataclass
class Page:
    title: str
    env: str
    generated_at: datetime
    state: str  # ok, degraded, down
    sections: list[Section]
    # Counts for the public page: services {ok, total}, sites {reporting, silent}, dropped {window_hours, count},
    # checks {ok, attention}; services or sites None when unknown; dropped None when not collected, without count
    # when unreadable.
    counts: dict[str, dict[str, int] | None] = field(default_factory=dict)


def count_sites(readings: dict[str, Any], now: datetime, max_age_s: float) -> dict[str, int] | None:
    if not readings.get("available") or readings.get("error"):
        return None
    ages = [
        (now - when).total_seconds()
        for site in readings.get("sites") or []
        if isinstance(site, dict)
        for when in [parse_time(site.get("time"))]
        if when is not None
    ]
    return {"reporting": sum(age <= max_age_s for age in ages), "silent": sum(age > max_age_s for age in ages)}


def build_page(cfg: Config, inputs: dict[str, Any]) -> Page:
    now = parse_time(inputs.get("now")) or datetime.now(UTC)
    raw_movctl = inputs.get("movctl")
    movctl: dict[str, Any] = raw_movctl if isinstance(raw_movctl, dict) else {"error": "no status"}
    services = services_section(movctl)
    raw_dropped = inputs.get("dropped")
    dropped: dict[str, Any] = raw_dropped if isinstance(raw_dropped, dict) else {}
    window_hours = int(cfg.dropped_window_hours)
    certificate = certificate_section(movctl, now, cfg.cert_warn_days)
    checks_sections = [
        result_section(
            "Last backup", inputs.get("backup"), now, cfg.backup_max_age_hours * 3600, "no backup has run yet"
        ),
        result_section(
            "Last restore drill",
            inputs.get("drill"),
            now,
            cfg.drill_max_age_days * 86400,
            "no restore drill has run yet",
        ),
        certificate,
    ]
    disk = disk_section(movctl)
    if disk is not None:
        checks_sections.append(disk)
    sections = [
        services,
        readings_section(inputs.get("readings") or {}, now, cfg.readings_max_age_minutes * 60),
        dropped_section(dropped, window_hours),
        *checks_sections,
    ]
    levels = [row.level for section in sections for row in section.rows]
    # Down: nothing can be read, every service is down, or the certificate has expired (clients refuse TLS).
    service_levels = [row.level for row in services.rows]
    if all(level == "bad" for level in service_levels) or "bad" in [r.level for r in certificate.rows]:
        state = "down"
    elif any(level != "ok" for level in levels):
        state = "degraded"
    else:
        state = "ok"
    env = word(movctl.get("env"), ("local", "staging", "prod"), "") if "env" in movctl else ""
    checks = [row.level for section in checks_sections for row in section.rows]
    count = dropped_count(dropped)
    counts = {
        "services": None if services.note else {"ok": service_levels.count("ok"), "total": len(service_levels)},
        "sites": count_sites(inputs.get("readings") or {}, now, cfg.readings_max_age_minutes * 60),
        "dropped": None
        if not dropped.get("collected")
        else {"window_hours": window_hours} | ({} if count is None else {"count": count}),
        "checks": {"ok": checks.count("ok"), "attention": len(checks) - checks.count("ok")},
    }
    return Page(cfg.title, env, now, state, sections, counts)


def public_page(page: Page) -> Page:
    """The page of counts: the same state, no names of sites or services, no environment."""
    counts = page.counts
    services, sites, checks = counts.get("services"), counts.get("sites"), counts.get("checks") or {}
    dropped = counts.get("dropped")
    rows = [
        Row(
            "services running",
            f"{services['ok']} of {services['total']}" if services else "unknown",
            "ok" if services and services["ok"] == services["total"] else "warn",
        )
    ]
    if sites is not None:
        rows.append(
            Row(
                "sites reporting",
                f"{sites['reporting']} of {sites['reporting'] + sites['silent']}",
                "ok" if sites["silent"] == 0 else "warn",
            )
        )
    # A count, never a name: the public may see that readings were lost.
    if dropped is None:
        rows.append(Row("readings dropped by the broker", "not collected", "unknown"))
    else:
        count = dropped.get("count")
        rows.append(
            Row(
                f"readings dropped by the broker (last {dropped['window_hours']} h)",
                "unknown" if count is None else str(count),
                "ok" if count == 0 else "warn",
            )
        )
    rows.append(
        Row(
            "checks needing attention (backup, restore drill, certificate, disk)",
            str(checks.get("attention", 0)),
            "ok" if not checks.get("attention") else "warn",
        )
    )
    return Page(page.title, "", page.generated_at, page.state, [Section("Platform", rows, full_page_link=True)], counts)


# --- output ---------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2125; }
main { max-width: 960px; margin: 0 auto; padding: 0 16px 32px; }
.banner { padding: 28px 24px; color: #fff; font-size: 28px; font-weight: 700; }
.banner.ok { background: #1f883d; }
.banner.degraded { background: #d4a72c; color: #1d2125; }
.banner.down { background: #cf222e; }
.meta { color: #57606a; margin: 12px 0 20px; }
section { background: #fff; border-radius: 6px; padding: 12px 16px; margin-bottom: 14px;
          box-shadow: 0 1px 2px rgba(0,0,0,.1); }
h2 { font-size: 18px; margin: 4px 0 8px; }
table { border-collapse: collapse; width: 100%; }
td { padding: 4px 8px; border-top: 1px solid #eaecef; }
td.label { width: 40%; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 8px; }
.dot.ok { background: #1f883d; } .dot.warn { background: #d4a72c; }
.dot.bad { background: #cf222e; } .dot.unknown { background: #8c959f; }
.note { color: #57606a; font-style: italic; margin: 6px 0; }
"""

BANNER_TEXT = {
    "ok": "All systems operational",
    "degraded": "Degraded: something needs attention",
    "down": "Down: the platform is not working",
}


def render_html(page: Page) -> str:
    esc = html.escape
    title = page.title + (f" ({page.env})" if page.env else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="refresh" content="60">',
        f"<title>{esc(title)}: {esc(page.state)}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<div class="banner {esc(page.state)}" id="state" data-state="{esc(page.state)}">'
        f"{esc(BANNER_TEXT[page.state])}</div>",
        "<main>",
        f'<p class="meta">{esc(title)} &middot; generated at '
        f'<time datetime="{esc(page.generated_at.isoformat(timespec="seconds"))}">'
        f"{esc(page.generated_at.strftime('%Y-%m-%d %H:%M:%S'))} UTC</time>, every minute</p>",
    ]
    for section in page.sections:
        parts.append(f"<section><h2>{esc(section.title)}</h2>")
        if section.note:
            parts.append(f'<p class="note">{esc(section.note)}</p>')
        if section.full_page_link:
            parts.append(
                '<p class="note">Details for operators: <a href="index.html">the full page</a> (sign-in required).</p>'
            )
        if section.rows:
            parts.append("<table>")
            for row in section.rows:
                level = row.level if row.level in LEVELS else "unknown"
                parts.append(
                    f'<tr class="{level}"><td class="label"><span class="dot {level}"></span>'
                    f"{esc(row.label)}</td><td>{esc(row.value)}</td></tr>"
                )
            parts.append("</table>")
        parts.append("</section>")
    parts += ["</main></body></html>", ""]
    return "\n".join(parts)


def render_json(page: Page) -> str:
    doc = {
        "state": page.state,
        "env": page.env,
        "generated_at": page.generated_at.isoformat(timespec="seconds"),
        "sections": [
            {
                "title": s.title,
                "note": s.note,
                "rows": [{"label": r.label, "value": r.value, "level": r.level} for r in s.rows],
            }
            for s in page.sections
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def render_public_json(page: Page) -> str:
    doc = {"state": page.state, "generated_at": page.generated_at.isoformat(timespec="seconds"), **page.counts}
    return json.dumps(doc, indent=2) + "\n"


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mov-status-page", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--config", help=f"configuration file (default {DEFAULT_CONFIG} when it exists)")
    parser.add_argument("--out", help="the page directory (default: the configuration's out_dir)")
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="read the inputs (now, movctl, backup, drill, readings, dropped) from FILE instead of the host",
    )
    args = parser.parse_args(argv)
    try:
        config_path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
        cfg = load_config(config_path)
        if args.from_json:
            inputs = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
            if not isinstance(inputs, dict):
                raise ValueError(f"{args.from_json}: not a JSON object")
        else:
            inputs = gather(cfg)
        page = build_page(cfg, inputs)
        out = Path(args.out or cfg.out_dir)
        write_atomically(out / "status.json", render_json(page))
        write_atomically(out / "index.html", render_html(page))
        if cfg.public_page:
            public = public_page(page)
            write_atomically(out / "public.json", render_public_json(public))
            write_atomically(out / "public.html", render_html(public))
    except (OSError, ValueError, TypeError) as exc:
        print(f"mov-status-page: {exc}", file=sys.stderr)
        return 1
    print(f"mov-status-page: {page.state}, written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
