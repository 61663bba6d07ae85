"""The page as a whole: its state (ok, degraded, down) from every section, and the public page of counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mov_host.status_page.config import Config
from mov_host.status_page.sections import (
    Row,
    Section,
    certificate_section,
    disk_section,
    dropped_count,
    dropped_section,
    gateways_section,
    last_success_row,
    parse_time,
    readings_section,
    result_section,
    services_section,
    word,
)

STATE_OF_LEVEL = {"ok": "ok", "warn": "degraded", "unknown": "degraded", "bad": "down"}


@dataclass
class Page:
    title: str
    env: str
    generated_at: datetime
    state: str  # ok, degraded, down
    sections: list[Section]
    # Counts for the public page: services {ok, total}, sites {reporting, silent}, dropped {window_hours, count},
    # checks {ok, attention}, gateways {reporting, silent} (where there are gateways); services, sites or gateways
    # None when unknown; dropped None when not collected, without count when unreadable.
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


def build_page(cfg: Config, inputs: Mapping[str, Any]) -> Page:
    now = parse_time(inputs.get("now")) or datetime.now(UTC)
    raw_movctl = inputs.get("movctl")
    movctl: dict[str, Any] = raw_movctl if isinstance(raw_movctl, dict) else {"error": "no status"}
    services = services_section(movctl)
    raw_dropped = inputs.get("dropped")
    dropped: dict[str, Any] = raw_dropped if isinstance(raw_dropped, dict) else {}
    window_hours = int(cfg.dropped_window_hours)
    certificate = certificate_section(movctl, now, cfg.cert_warn_days)
    backup_max_age_s = cfg.backup_max_age_hours * 3600
    backup = result_section("Last backup", inputs.get("backup"), now, backup_max_age_s, "no backup has run yet")
    raw_backup = inputs.get("backup")
    if isinstance(raw_backup, dict) and raw_backup.get("result") != "ok":
        backup.rows.append(last_success_row(inputs.get("backup_last_ok"), now, backup_max_age_s))
    checks_sections = [
        backup,
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
    raw_gateways = inputs.get("gateways")
    gateways = gateways_section(
        raw_gateways if isinstance(raw_gateways, dict) else {},
        list(cfg.gateways),
        now,
        cfg.gateway_offline_minutes * 60,
    )
    sections = [
        services,
        readings_section(inputs.get("readings") or {}, now, cfg.readings_max_age_minutes * 60),
        *([] if gateways is None else [gateways]),
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
    if gateways is not None:  # only where the inventory has gateways
        heard = [row.level for row in gateways.rows]
        counts["gateways"] = (
            None if gateways.note else {"reporting": heard.count("ok"), "silent": len(heard) - heard.count("ok")}
        )
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
    for label, reporting in (("sites reporting", sites), ("edge gateways reporting", counts.get("gateways"))):
        if reporting is not None:
            total = reporting["reporting"] + reporting["silent"]
            rows.append(
                Row(label, f"{reporting['reporting']} of {total}", "ok" if reporting["silent"] == 0 else "warn")
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
