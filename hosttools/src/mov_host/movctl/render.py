"""What movctl prints: durations, plain tables, JSON documents and the status report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mov_host.movctl.records import StatusDocument


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
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


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *rows]
    ]
    return "\n".join(lines)


def emit_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=False, default=str), flush=True)


def render_status(doc: StatusDocument) -> str:
    rows = [[s["service"], s["state"], s["health"] or "-", format_duration(s["uptime_s"])] for s in doc["services"]]
    lines = [
        f"MOV platform{' (' + doc['env'] + ')' if doc['env'] else ''}",
        "",
        render_table(["SERVICE", "STATE", "HEALTH", "UPTIME"], rows),
        "",
    ]
    backup = doc["backup"]
    if not backup.get("installed"):
        lines.append("backup       not installed")
    elif backup.get("result") is None:
        lines.append("backup       none yet")
    else:
        lines.append(
            f"backup       {backup.get('result')}, {format_duration(backup.get('age_s'))} ago"
            f" (snapshot {backup.get('snapshot') or '-'}, off-site {backup.get('offsite') or '-'})"
        )
    cert = doc["certificate"]
    names = ", ".join(cert["domains"]) or cert["file"]
    if "days_left" in cert and "not_after" in cert:
        lines.append(f"certificate  {names}: expires in {cert['days_left']} days ({cert['not_after'][:10]})")
    else:
        lines.append(f"certificate  {names}: unknown")
    for row in doc["disk"]:
        free_gb = row["free_bytes"] / 1024**3
        lines.append(f"disk         {row['path']}: {free_gb:.1f} GB free ({row['free_percent']:g} %)")
    if doc["attention"]:
        lines += ["", "attention:"] + [f"  - {item}" for item in doc["attention"]]
    return "\n".join(lines)
