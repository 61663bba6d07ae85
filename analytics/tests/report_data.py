"""Generated readings and status changes with known answers, shared by the report's tests.

Window: 2026-11-16 00:00 UTC + 2 h, one reading every 5 s (gap limit 3 x 5 = 15 s).

Device A (site sala, rule temperatura_c 30/35):
  segment 1, t = 0 .. 1795 s (k = 0..359): 25 (k < 100), 31 (k < 200), 36 (k < 260), 25, and 36 at k = 359,
  the reading just before the gap: it holds for one publish interval only (5 s), not across the gap;
  planted gap 1795 .. 2400 s;
  segment 2, t = 2400 .. 7195 s (k = 0..959): 30 (k < 100, not strictly above), 35.5 (k < 110), 20.
  Above 30: 100*5 + 60*5 + 5 + 10*5 = 855 s; above 35: 60*5 + 5 + 10*5 = 355 s.
  umidade 60 in every reading (no rule). Status: alerta, critico, back to alerta (not raised), normal,
  critico -> alerta raised 1, critico raised 2.
Device B (site linha, a site-specific rule 20/21): 22 from t = 600 to 7195 s -> leading gap 0 .. 600 s,
  6600 s above both thresholds; no status change.

The platform's sections (infrastructure and backups) cover the week 2026-11-16 to 2026-11-22: see
container_points, usage_totals and history_lines.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from mov_analytics.config import RuleConfig
from mov_analytics.report.records import ContainerPoint, Device, Sample, StatusPoint, UsageTotals

START = datetime(2026, 11, 16, tzinfo=UTC).timestamp()
END = START + 7200
INTERVAL = 5.0
GAP_FACTOR = 3.0

A = Device(localizacao="sala", cliente="industria_abc", dispositivo="sensor_001", tipo="temperatura")
B = Device(localizacao="linha", cliente="industria_abc", dispositivo="sensor_002", tipo="temperatura")

RULES = (
    RuleConfig(field="temperatura_c", alerta=30.0, critico=35.0),
    RuleConfig(field="temperatura_c", alerta=20.0, critico=21.0, localizacao="linha"),
)


def _a_segment1(k: int) -> float:
    if k == 359:
        return 36.0
    if k < 100:
        return 25.0
    if k < 200:
        return 31.0
    if k < 260:
        return 36.0
    return 25.0


def _a_segment2(k: int) -> float:
    if k < 100:
        return 30.0
    if k < 110:
        return 35.5
    return 20.0


def a_temperatures() -> list[tuple[float, float]]:
    first = [(START + 5 * k, _a_segment1(k)) for k in range(360)]
    second = [(START + 2400 + 5 * k, _a_segment2(k)) for k in range(960)]
    return first + second


def samples(shuffle_seed: int | None = 7) -> list[Sample]:
    out = []
    for t, value in a_temperatures():
        out.append(Sample(t, A, "temperatura_c", value))
        out.append(Sample(t, A, "umidade", 60.0))
    out.extend(Sample(START + 600 + 5 * k, B, "temperatura_c", 22.0) for k in range(1320))
    # Outside the window: must change nothing.
    out.append(Sample(START - 5, A, "temperatura_c", 99.0))
    out.append(Sample(END, A, "temperatura_c", -99.0))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(out)  # noqa: S311 - a fixed order, not a secret
    return out


def statuses() -> list[StatusPoint]:
    return [
        StatusPoint(START + 500, A, "alerta", "normal"),
        StatusPoint(START + 1000, A, "critico", "alerta"),
        StatusPoint(START + 1300, A, "alerta", "critico"),
        StatusPoint(START + 1400, A, "normal", "alerta"),
        StatusPoint(START + 2900, A, "critico", "normal"),
        StatusPoint(START - 60, A, "critico", "normal"),  # before the window
    ]


# --- The platform's sections: one week, 2026-11-16 to 2026-11-22 ----------------------------------------------
WEEK_START = START
WEEK_END = START + 7 * 86_400
DAY = 86_400.0
INFRA_BUCKET = "mov_infra"


def container_points() -> list[ContainerPoint]:
    """The first and last point of each state, as the query returns them, in no particular order.

    mov-mosquitto-1 runs all week; mov-analytics-1 is restarted twice by its policy (0 -> 1 -> 2); mov-grafana-1
    stops on day 2; mov-influxdb-1 (3 restarts before the week, not counted) is renamed by compose and recreated on
    day 4, its new container seen first with 1 restart, then 2 -> 3 restarts, 1 recreation; mov-telegraf-1 is
    restarted by hand (2 -> 0, not a restart) then once by its policy (0 -> 1) -> 1 restart; one one-off container.
    """
    s = WEEK_START
    states = [
        ("mov-mosquitto-1", "m1", 0, "running", s + 5, WEEK_END - 5),
        ("mov-analytics-1", "a1", 0, "running", s + 5, s + DAY),
        ("mov-analytics-1", "a1", 1, "running", s + DAY + 20, s + 3 * DAY),
        ("mov-analytics-1", "a1", 2, "running", s + 3 * DAY + 20, WEEK_END - 5),
        ("mov-grafana-1", "g1", 0, "running", s + 5, s + 2 * DAY),
        ("mov-grafana-1", "g1", 0, "exited", s + 2 * DAY + 10, WEEK_END - 5),
        ("mov-influxdb-1", "i1", 3, "running", s + 5, s + 4 * DAY),
        ("0123456789ab_mov-influxdb-1", "i1", 3, "exited", s + 4 * DAY + 10, s + 4 * DAY + 10),
        ("mov-influxdb-1", "i2", 1, "running", s + 4 * DAY + 20, s + 5 * DAY),
        ("mov-influxdb-1", "i2", 2, "running", s + 5 * DAY + 20, WEEK_END - 5),
        ("mov-telegraf-1", "t1", 2, "running", s + 5, s + 2 * DAY),
        ("mov-telegraf-1", "t1", 0, "running", s + 2 * DAY + 10, s + 3 * DAY),
        ("mov-telegraf-1", "t1", 1, "running", s + 3 * DAY + 10, WEEK_END - 5),
        ("mov-influxdb-run-4f9e2a1b3c5d", "o1", 0, "running", s + 2 * DAY, s + 2 * DAY),
    ]
    points = [ContainerPoint(t, name, cid, count, status) for name, cid, count, status, *times in states for t in times]
    random.Random(3).shuffle(points)  # noqa: S311 - a fixed order, not a secret
    return points


MIB = 1024.0 * 1024.0


def usage_totals() -> list[UsageTotals]:
    return [
        UsageTotals("container_cpu", "mov-analytics-1", 100, 250.0, 40.0, 1.0),
        UsageTotals("container_memory", "mov-analytics-1", 100, 100 * 50 * MIB, 80 * MIB, 52 * MIB),
        # The renamed influxdb container's samples count as mov-influxdb-1's: 40 samples, sum 100, max 9.
        UsageTotals("container_cpu", "0123456789ab_mov-influxdb-1", 10, 10.0, 3.0, 1.0),
        UsageTotals("container_cpu", "mov-influxdb-1", 30, 90.0, 9.0, 2.0),
        UsageTotals("container_cpu", "mov-influxdb-run-4f9e2a1b3c5d", 2, 20.0, 15.0, 5.0),
        UsageTotals("host_cpu", "", 60_480, 60_480 * 12.5, 97.0, 11.0),
        UsageTotals("host_memory", "", 60_480, 60_480 * 41.0, 63.0, 40.0),
        UsageTotals("disk", "/", 60_480, 60_480 * 70.0, 71.25, 70.5),
        UsageTotals("disk", "/boot", 60_480, 60_480 * 29.0, 30.0, 29.0),
    ]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def backup_entry(seconds: float, result: str = "ok", **extra: object) -> dict[str, object]:
    """A history line's document as mov-backup writes it (hosttools' records.HistoryEntry of a BackupStatus)."""
    status: dict[str, object] = {
        "time": _iso(seconds),
        "result": result,
        "snapshot": datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%SZ") if result == "ok" else None,
        "size_bytes": 1536 * int(MIB) if result == "ok" else 0,
        "new_bytes": 20 * int(MIB) if result == "ok" else 0,
        "offsite": "ok" if result == "ok" else "failed",
        "duration_s": 41.5,
        "local_snapshots": 9,
    }
    if result == "ok":
        status["uploaded_objects"] = 12
    status.update(extra)
    return {"kind": "backup", "status": status}


def drill_entry(seconds: float, result: str = "ok", **extra: object) -> dict[str, object]:
    status: dict[str, object] = {
        "time": _iso(seconds),
        "result": result,
        "origin": "remote",
        "snapshot": "20261122T023000Z",
        "checks": [{"part": "influxdb", "ok": result == "ok", "restored": {"mov_leituras": 10}, "detail": "counts"}],
        "duration_s": 95.0,
    }
    status.update(extra)
    return {"kind": "drill", "status": status}


def history_lines(drill: str | None = "failed") -> list[str]:
    """The week's history: backups ok every day but 2026-11-18 (failed only) and 2026-11-20 (none); a drill on
    2026-11-22 with result ``drill`` (None: no drill); runs just outside the week; two lines that are not entries."""
    at = WEEK_START + 2.5 * 3600  # 02:30 UTC
    entries = [backup_entry(at + day * DAY) for day in (0, 1, 3, 5, 6)]
    entries.append(backup_entry(at + 2 * DAY, "failed", error="sqlite backup of grafana.db: disk I/O error"))
    entries.append(backup_entry(WEEK_START - 60))  # the day before the week
    entries.append(backup_entry(WEEK_END))  # the day after
    if drill is not None:
        error = {"error": "restored copy differs from production: influxdb"} if drill == "failed" else {}
        entries.append(drill_entry(WEEK_START + 6 * DAY + 4.5 * 3600, drill, **error))
    entries.append(drill_entry(WEEK_START - 3 * DAY))  # last week's, ok
    lines = [json.dumps(e) for e in entries]
    return [*lines[:3], "not json {", *lines[3:], json.dumps({"kind": "restore", "status": {"result": "ok"}})]
