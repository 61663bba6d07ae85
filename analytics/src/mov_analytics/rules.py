"""Threshold rules with hysteresis: readings -> per-device status (normal / alerta / critico).

A rule applies to one field, optionally only for one ``localizacao`` and/or ``tipo``; the most specific
matching rule wins (both > localizacao > tipo > generic). Entering a level needs the value strictly beyond
its threshold (``> 30`` for direction ``above``); leaving it needs the value back by ``hysteresis`` (``<= 29.5``),
so a value hovering on a threshold does not flap. A device's status is the worst level over its fields.

Order. Each reading is one of four kinds (``Outcome.kind``), decided per device against the newest reading
applied so far:

* ``fresh``: newer than the newest. Only these move the device's current status (and its hysteresis state).
* ``duplicate``: same device, same timestamp and same field values as a reading already seen within the window
  (a QoS 1 redelivery, e.g. after a broker restart). Not evaluated again: no second change, no second alert.
* ``late``: not newer than the newest, but at most ``late_window_s`` behind it (out of order, e.g. a device's
  queue flushed after a reconnect). It is checked against the entry thresholds on its own (no hysteresis, no
  state change) and compared with the status the device had *at its own time* (the changes of the last
  ``late_window_s`` are kept for that). Only if it is worse is it an *excursion*: a ``StatusChange`` with
  ``late=True``, stamped with the reading's time, from which the worker writes the excursion point and a point
  back to the status of that time one nanosecond later, and alerts if it is ``critico``. A late reading never
  lowers a status, never recovers a device, and never moves the current status: a late ``36`` between two
  ``25`` leaves the device ``normal`` and the next ``25`` is no change.
* ``stale``: more than ``late_window_s`` behind the newest. Skipped by the rules (and counted); a duplicate that
  old is counted here too, since it can no longer be told apart.

The memory this takes is bounded per device: readings of the window (at most 4096, for duplicates) and status
changes of the window (at most 256).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from .config import RuleConfig
from .parsing import Reading

LEVELS = ("normal", "alerta", "critico")
NORMAL, ALERTA, CRITICO = 0, 1, 2
FRESH, LATE, DUPLICATE, STALE = "fresh", "late", "duplicate", "stale"

DEFAULT_LATE_WINDOW_S = 300.0
_RECENT_MAX = 4096  # readings remembered per device for duplicates (a reading a second over 300 s is 300)
_CHANGES_MAX = 256  # status changes remembered per device for late readings

# A rule reduced to what next_level() needs: sign, thresholds by level (times sign), hysteresis.
_Compiled = tuple[float, tuple[float, float, float], float]


@dataclass(slots=True)
class DeviceState:
    cliente: str
    dispositivo: str
    localizacao: str
    tipo: str
    planta: str = ""  # the plant of its newest reading's gateway ("" when it publishes to the central broker)
    level: int = NORMAL
    last_time_ns: int = -1
    field_levels: dict[str, int] = field(default_factory=dict)
    driver_field: str | None = None
    driver_value: float | None = None
    critical_since_normal: bool = False
    # Compiled rule (or None: no rule) by field for this device's current localizacao and tipo, looked up under
    # the engine's rules of generation ``rules_generation`` (RulesEngine.replace_rules).
    rules: dict[str, _Compiled | None] = field(default_factory=dict)
    rules_generation: int = 0
    # Readings of the late window by time (insertion order, roughly oldest first), to tell a duplicate.
    recent: dict[int, Mapping[str, float]] = field(default_factory=dict)
    # Status changes of the late window: (time_ns, level before, level after), oldest first.
    changes: deque[tuple[int, int, int]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class StatusChange:
    device: DeviceState
    time_ns: int
    previous: str | None
    status: str
    driver_field: str | None
    driver_value: float | None
    recovered: bool = False
    # An excursion found by a late reading: time_ns is the reading's, previous the status at that time, and the
    # device's current status is untouched.
    late: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    change: StatusChange | None
    kind: str = FRESH  # FRESH | LATE | DUPLICATE | STALE

    @property
    def stale(self) -> bool:
        return self.kind == STALE


_STALE = Outcome(change=None, kind=STALE)
_DUPLICATE = Outcome(change=None, kind=DUPLICATE)
_LATE = Outcome(change=None, kind=LATE)
_UNCHANGED = Outcome(change=None, kind=FRESH)


def _compile(rule: RuleConfig) -> _Compiled:
    sign = 1.0 if rule.direction == "above" else -1.0
    return sign, (0.0, sign * rule.alerta, sign * rule.critico), rule.hysteresis


def next_level(rule: RuleConfig, current: int, value: float) -> int:
    """Level for ``value`` given the current level, with hysteresis on the way down.

    RulesEngine.evaluate inlines this (same arithmetic on the same _compile() output); keep the two in step.
    """
    sign, thresholds, hysteresis = _compile(rule)
    v = sign * value
    entered = CRITICO if v > thresholds[CRITICO] else ALERTA if v > thresholds[ALERTA] else NORMAL
    if entered >= current:
        return entered
    level = current
    while level > NORMAL and v <= thresholds[level] - hysteresis:
        level -= 1
    return level


class RulesEngine:
    def __init__(self, rules: Sequence[RuleConfig], late_window_s: float = DEFAULT_LATE_WINDOW_S) -> None:
        self._window_ns = int(late_window_s * 1e9)
        self._devices: dict[tuple[str, str], DeviceState] = {}
        self._generation = 0
        self.replace_rules(rules)

    def replace_rules(self, rules: Sequence[RuleConfig]) -> None:
        """Evaluate with ``rules`` from now on, keeping every device's state (its levels, the late window).

        May run on another thread than evaluate(): the lookups are replaced whole, then the generation moves on, and
        each device drops its own lookups at its next reading. A reading evaluated while this runs sees the old
        rules or the new ones."""
        self._rules = tuple(rules)
        self._lookup: dict[tuple[str, str, str], RuleConfig | None] = {}
        self._compiled: dict[tuple[str, str, str], _Compiled | None] = {}
        self._fields = frozenset(r.field for r in self._rules)
        self._generation += 1

    def rule_for(self, field_name: str, localizacao: str, tipo: str) -> RuleConfig | None:
        key = (field_name, localizacao, tipo)
        try:
            return self._lookup[key]
        except KeyError:
            pass
        best: RuleConfig | None = None
        best_score = -1
        for rule in self._rules:
            if rule.field != field_name:
                continue
            if rule.localizacao is not None and rule.localizacao != localizacao:
                continue
            if rule.tipo is not None and rule.tipo != tipo:
                continue
            score = (2 if rule.localizacao is not None else 0) + (1 if rule.tipo is not None else 0)
            if score > best_score:
                best, best_score = rule, score
        if len(self._lookup) < 100_000:
            self._lookup[key] = best
        return best

    def devices(self) -> Iterator[DeviceState]:
        return iter(list(self._devices.values()))

    def _compiled_rule(self, field_name: str, localizacao: str, tipo: str) -> _Compiled | None:
        key = (field_name, localizacao, tipo)
        if key in self._compiled:
            return self._compiled[key]
        rule = self.rule_for(field_name, localizacao, tipo)
        compiled = None if rule is None else _compile(rule)
        if len(self._compiled) < 100_000:
            self._compiled[key] = compiled
        return compiled

    def evaluate(self, reading: Reading) -> Outcome:
        # One call per reading: next_level() is inlined on precomputed thresholds (same arithmetic).
        key = (reading.cliente, reading.dispositivo)
        state = self._devices.get(key)
        first = state is None
        time_ns = reading.time_ns
        if state is None:
            state = DeviceState(reading.cliente, reading.dispositivo, reading.localizacao, reading.tipo, reading.planta)
            self._devices[key] = state
        elif time_ns <= state.last_time_ns:
            return self._out_of_order(state, reading)
        state.last_time_ns = time_ns
        state.planta = reading.planta
        recent = state.recent
        recent[time_ns] = reading.fields
        cutoff = time_ns - self._window_ns
        while len(recent) > 1:  # forget what has left the window (first in, first out)
            oldest = next(iter(recent))
            if oldest >= cutoff and len(recent) <= _RECENT_MAX:
                break
            del recent[oldest]
        localizacao, tipo = reading.localizacao, reading.tipo
        rules = state.rules
        generation = self._generation
        if localizacao != state.localizacao or tipo != state.tipo:  # the device moved: other rules may apply
            state.localizacao, state.tipo = localizacao, tipo
            rules.clear()
        if state.rules_generation != generation:  # the rules were replaced since this device's lookups
            state.rules_generation = generation
            rules.clear()
        previous_level = state.level
        levels = state.field_levels
        fields = reading.fields
        rule_fields = self._fields
        current_driver = state.driver_field
        driver_field: str | None = None
        driver_value = 0.0
        for name, value in fields.items():
            if name not in rule_fields:
                continue
            compiled = rules.get(name)
            if compiled is None:  # not looked up yet for this device, or no rule for this field here
                if name in rules:
                    continue
                compiled = rules[name] = self._compiled_rule(name, localizacao, tipo)
                if compiled is None:
                    continue
            sign, thresholds, hysteresis = compiled
            v = sign * value
            entered = CRITICO if v > thresholds[CRITICO] else ALERTA if v > thresholds[ALERTA] else NORMAL
            level = levels.get(name, NORMAL)
            if entered >= level:
                level = entered
            else:
                while level > NORMAL and v <= thresholds[level] - hysteresis:
                    level -= 1
            levels[name] = level
            if driver_field is None or name == current_driver:
                driver_field, driver_value = name, value
        worst = max(levels.values(), default=NORMAL)
        if worst != NORMAL:
            for name, level in levels.items():
                if level == worst and name in fields:
                    driver_field, driver_value = name, fields[name]
                    break
        state.level = worst
        if driver_field is not None:
            state.driver_field, state.driver_value = driver_field, driver_value
        if not first and worst == previous_level:
            return _UNCHANGED
        changes = state.changes
        changes.append((time_ns, worst if first else previous_level, worst))
        while len(changes) > 1 and (changes[1][0] <= cutoff or len(changes) > _CHANGES_MAX):
            changes.popleft()  # keep the last change at or before the cutoff: it gives the status there
        recovered = False
        if worst == CRITICO:
            state.critical_since_normal = True
        elif worst == NORMAL and state.critical_since_normal:
            state.critical_since_normal = False
            recovered = True
        change = StatusChange(
            device=state,
            time_ns=time_ns,
            previous=None if first else LEVELS[previous_level],
            status=LEVELS[worst],
            driver_field=state.driver_field,
            driver_value=state.driver_value,
            recovered=recovered,
        )
        return Outcome(change=change)

    def _out_of_order(self, state: DeviceState, reading: Reading) -> Outcome:
        """A reading not newer than the device's newest: a duplicate, a late reading, or a stale one."""
        time_ns = reading.time_ns
        recent = state.recent
        seen = recent.get(time_ns)
        if seen is not None and seen == reading.fields:
            return _DUPLICATE
        if time_ns < state.last_time_ns - self._window_ns:
            return _STALE
        recent[time_ns] = reading.fields
        if len(recent) > _RECENT_MAX:
            del recent[next(iter(recent))]
        level, driver_field, driver_value = NORMAL, None, None
        for name, value in reading.fields.items():
            if name not in self._fields:
                continue
            compiled = self._compiled_rule(name, reading.localizacao, reading.tipo)
            if compiled is None:
                continue
            sign, thresholds, _ = compiled
            v = sign * value
            entered = CRITICO if v > thresholds[CRITICO] else ALERTA if v > thresholds[ALERTA] else NORMAL
            if driver_field is None or entered > level:
                level, driver_field, driver_value = entered, name, value
        then = self.level_at(state, time_ns)
        if level <= then:
            return _LATE
        change = StatusChange(
            device=state,
            time_ns=time_ns,
            previous=LEVELS[then],
            status=LEVELS[level],
            driver_field=driver_field,
            driver_value=driver_value,
            late=True,
        )
        return Outcome(change=change, kind=LATE)

    @staticmethod
    def level_at(state: DeviceState, time_ns: int) -> int:
        """The device's status at ``time_ns`` as the fresh readings set it (before its first: the first one's)."""
        level = state.level
        for when, before, after in reversed(state.changes):
            if when <= time_ns:
                return after
            level = before
        return level
