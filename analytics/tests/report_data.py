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
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from mov_analytics.config import RuleConfig
from mov_analytics.report.records import Device, Sample, StatusPoint

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
