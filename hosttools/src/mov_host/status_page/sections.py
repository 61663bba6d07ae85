"""The page's sections, each value chosen here from known fields only: a service, a result or a reason outside the
fixed vocabulary never reaches the page as it came (error texts hold paths, remotes, tokens)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mov_host.movctl.render import format_duration
from mov_host.status_page.influx import NOT_COLLECTED

LEVELS = ("ok", "warn", "bad", "unknown")


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
    """An age as movctl shows its uptimes ("3d 4h", "5m 2s")."""
    return format_duration(seconds)


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
            when_text(when, age) if age is not None and when is not None else "unknown",
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


def when_text(when: datetime, age: float) -> str:
    return f"{age_text(age)} ago ({when.strftime('%Y-%m-%d %H:%M')} UTC)"


def last_success_row(value: Any, now: datetime, max_age_s: float) -> Row:
    """After a failed backup: the newest successful one (mov-backup's history), needing attention once older than the
    max age, as Grafana's backup alert judges it."""
    when = parse_time(value)
    if when is None:
        return Row("last success", "none recorded", "warn")
    age = (now - when).total_seconds()
    return Row("last success", when_text(when, age), "ok" if age <= max_age_s else "warn")


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


def gateways_section(gateways: dict[str, Any], sites: list[str], now: datetime, max_age_s: float) -> Section | None:
    """Each gateway of the inventory (`sites`, its plant; the labels come from there, not from InfluxDB) with its last
    heartbeat's age; older than max_age_s or none is a warning, as Grafana's offline rule fires. None: no gateway."""
    if not sites:
        return None
    section = Section("Edge gateways: last heartbeat")
    if not gateways.get("collected"):
        section.note = word(gateways.get("error"), ("not available on this host",), NOT_COLLECTED)
        return section
    if gateways.get("error"):
        section.note = "heartbeats unavailable: " + query_error(gateways["error"])
        section.rows.append(Row("gateways", "unavailable", "warn"))
        return section
    heard = {
        str(beat.get("site")): when
        for beat in gateways.get("heartbeats") or []
        if isinstance(beat, dict)
        for when in [parse_time(beat.get("time"))]
        if when is not None
    }
    for site in sites:
        when = heard.get(site)
        if when is None:
            section.rows.append(Row(site, "no heartbeat in the last days", "warn"))
            continue
        age = (now - when).total_seconds()
        value = f"{age_text(age)} ago ({when.strftime('%H:%M:%S')} UTC)"
        section.rows.append(Row(site, value, "ok" if age <= max_age_s else "warn"))
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
