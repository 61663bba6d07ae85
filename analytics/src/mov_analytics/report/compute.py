"""The report's numbers, from readings and status changes (pure: no I/O, no clock).

* min / mean / max per field: over the samples in the window (the mean is the plain mean of the samples).
* Time beyond a threshold: time-weighted, without hysteresis. A reading's value holds from its time until the
  next reading of the same field; where the next one is further away than the gap limit (or there is none) it
  holds for one publish interval only, so a gap never counts as time above a threshold. Nothing is counted past
  the window's end. A value counts when it is strictly beyond the threshold (``> 30`` for direction ``above``),
  the same comparison the worker's rules use to enter a level.
* Gaps: every stretch longer than ``gap_factor x publish_interval_s`` without any reading of the device,
  including from the window's start to its first reading and from its last reading to the window's end.
* Alerts raised: status changes into ``alerta`` or ``critico`` from a better level (or from none); a change
  down from critico to alerta is not a new alert.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..config import RuleConfig
from ..rules import LEVELS, RulesEngine
from .backups import BackupSection
from .infra import InfraSection
from .records import Device, Sample, StatusPoint

ALERT_LEVELS = ("alerta", "critico")


@dataclass(frozen=True, slots=True)
class Threshold:
    level: str  # alerta | critico
    value: float
    direction: str  # above | below

    def beyond(self, value: float) -> bool:
        return value > self.value if self.direction == "above" else value < self.value


@dataclass(frozen=True, slots=True)
class FieldStats:
    field: str
    count: int
    minimum: float
    mean: float
    maximum: float
    # (threshold, seconds beyond it) per level of the rule that applies; empty when no rule does.
    beyond: tuple[tuple[Threshold, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Gap:
    start_s: float
    end_s: float

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, slots=True)
class DeviceReport:
    device: Device
    readings: int  # distinct reading times
    fields: tuple[FieldStats, ...]
    gaps: tuple[Gap, ...]
    alerts: dict[str, int]  # level -> alerts raised


@dataclass(frozen=True, slots=True)
class Report:
    start_s: float
    end_s: float
    publish_interval_s: float
    gap_limit_s: float
    devices: tuple[DeviceReport, ...]
    # The platform's own sections (cli.generate adds them); None: not part of this report.
    infra: InfraSection | None = None
    backups: BackupSection | None = None

    def sites(self) -> list[tuple[str, list[DeviceReport]]]:
        grouped: dict[str, list[DeviceReport]] = {}
        for device in self.devices:
            grouped.setdefault(device.device.localizacao, []).append(device)
        return sorted(grouped.items())


@dataclass(slots=True)
class _Series:
    """One field's samples of one device, compact (a week at 5 s is 120 960 samples per field)."""

    times: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))


def thresholds_for(rule: RuleConfig | None) -> tuple[Threshold, ...]:
    if rule is None:
        return ()
    return (Threshold("alerta", rule.alerta, rule.direction), Threshold("critico", rule.critico, rule.direction))


def seconds_beyond(
    times: Sequence[float],
    values: Sequence[float],
    threshold: Threshold,
    *,
    end_s: float,
    publish_interval_s: float,
    gap_limit_s: float,
) -> float:
    """Seconds the held value was strictly beyond ``threshold``; ``times`` ascending (see the module doc)."""
    total = 0.0
    n = len(times)
    for i in range(n):
        start = times[i]
        held = i + 1 < n and times[i + 1] - start <= gap_limit_s
        until = min(times[i + 1] if held else start + publish_interval_s, end_s)
        if until > start and threshold.beyond(values[i]):
            total += until - start
    return total


def find_gaps(times: Sequence[float], *, start_s: float, end_s: float, gap_limit_s: float) -> list[Gap]:
    """Stretches longer than ``gap_limit_s`` without a time in ``times`` (ascending), within [start_s, end_s]."""
    gaps = []
    previous = start_s
    for t in times:
        if t - previous > gap_limit_s:
            gaps.append(Gap(previous, t))
        previous = max(previous, t)
    if end_s - previous > gap_limit_s:
        gaps.append(Gap(previous, end_s))
    return gaps


def count_alerts(points: Iterable[StatusPoint]) -> dict[str, int]:
    counts = dict.fromkeys(ALERT_LEVELS, 0)
    rank = {level: index for index, level in enumerate(LEVELS)}
    for point in points:
        if point.status not in counts:
            continue
        before = rank.get(point.previous, -1) if point.previous is not None else -1
        if before < rank[point.status]:
            counts[point.status] += 1
    return counts


def field_stats(
    name: str,
    times: Sequence[float],
    values: Sequence[float],
    thresholds: Sequence[Threshold],
    *,
    end_s: float,
    publish_interval_s: float,
    gap_limit_s: float,
) -> FieldStats:
    beyond = tuple(
        (
            t,
            seconds_beyond(
                times, values, t, end_s=end_s, publish_interval_s=publish_interval_s, gap_limit_s=gap_limit_s
            ),
        )
        for t in thresholds
    )
    return FieldStats(
        field=name,
        count=len(values),
        minimum=min(values),
        mean=sum(values) / len(values),
        maximum=max(values),
        beyond=beyond,
    )


def build_report(
    samples: Iterable[Sample],
    statuses: Iterable[StatusPoint],
    rules: Sequence[RuleConfig],
    *,
    start_s: float,
    end_s: float,
    publish_interval_s: float,
    gap_factor: float,
) -> Report:
    """The whole report for the window [start_s, end_s); samples and statuses outside it are ignored."""
    gap_limit_s = gap_factor * publish_interval_s
    series: dict[Device, dict[str, _Series]] = {}
    for sample in samples:
        if not start_s <= sample.time_s < end_s:
            continue
        s = series.setdefault(sample.device, {}).setdefault(sample.field, _Series())
        s.times.append(sample.time_s)
        s.values.append(sample.value)
    by_device: dict[Device, list[StatusPoint]] = {}
    for point in statuses:
        if start_s <= point.time_s < end_s:
            by_device.setdefault(point.device, []).append(point)
    engine = RulesEngine(rules)
    reports = []
    for device in sorted(set(series) | set(by_device)):
        fields = []
        all_times: set[float] = set()
        for name, s in sorted(series.get(device, {}).items()):
            order = sorted(range(len(s.times)), key=s.times.__getitem__)
            times = [s.times[i] for i in order]
            values = [s.values[i] for i in order]
            all_times.update(times)
            rule = engine.rule_for(name, device.localizacao, device.tipo)
            fields.append(
                field_stats(
                    name,
                    times,
                    values,
                    thresholds_for(rule),
                    end_s=end_s,
                    publish_interval_s=publish_interval_s,
                    gap_limit_s=gap_limit_s,
                )
            )
        points = sorted(by_device.get(device, []), key=lambda p: p.time_s)
        reports.append(
            DeviceReport(
                device=device,
                readings=len(all_times),
                fields=tuple(fields),
                gaps=tuple(find_gaps(sorted(all_times), start_s=start_s, end_s=end_s, gap_limit_s=gap_limit_s)),
                alerts=count_alerts(points),
            )
        )
    return Report(
        start_s=start_s,
        end_s=end_s,
        publish_interval_s=publish_interval_s,
        gap_limit_s=gap_limit_s,
        devices=tuple(reports),
    )
