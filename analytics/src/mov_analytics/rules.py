"""Threshold rules with hysteresis: readings -> per-device status (normal / alerta / critico).

A rule applies to one field, optionally only for one ``localizacao`` and/or ``tipo``; the most specific
matching rule wins (both > localizacao > tipo > generic). Entering a level needs the value strictly beyond
its threshold (``> 30`` for direction ``above``); leaving it needs the value back by ``hysteresis`` (``<= 29.5``),
so a value hovering on a threshold does not flap. A device's status is the worst level over its fields.

Readings are applied in timestamp order per device: a reading not newer than the last one applied (a QoS 1
redelivery, or an out-of-order sample) leaves the status alone, so a duplicate never counts as a change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from .config import RuleConfig
from .parsing import Reading

LEVELS = ("normal", "alerta", "critico")
NORMAL, ALERTA, CRITICO = 0, 1, 2

# A rule reduced to what next_level() needs: sign, thresholds by level (times sign), hysteresis.
_Compiled = tuple[float, tuple[float, float, float], float]


@dataclass(slots=True)
class DeviceState:
    cliente: str
    dispositivo: str
    localizacao: str
    tipo: str
    level: int = NORMAL
    last_time_ns: int = -1
    field_levels: dict[str, int] = field(default_factory=dict)
    driver_field: str | None = None
    driver_value: float | None = None
    critical_since_normal: bool = False
    # Compiled rule (or None: no rule) by field for this device's current localizacao and tipo.
    rules: dict[str, _Compiled | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusChange:
    device: DeviceState
    time_ns: int
    previous: str | None
    status: str
    driver_field: str | None
    driver_value: float | None
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    change: StatusChange | None
    stale: bool


_STALE = Outcome(change=None, stale=True)
_UNCHANGED = Outcome(change=None, stale=False)




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
    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        self._rules = tuple(rules)
        self._fields = frozenset(r.field for r in self._rules)
        self._devices: dict[tuple[str, str], DeviceState] = {}
        self._lookup: dict[tuple[str, str, str], RuleConfig | None] = {}
        self._compiled: dict[tuple[str, str, str], _Compiled | None] = {}

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
        if state is None:
            state = DeviceState(reading.cliente, reading.dispositivo, reading.localizacao, reading.tipo)
            self._devices[key] = state
        elif reading.time_ns <= state.last_time_ns:
            return _STALE
        state.last_time_ns = reading.time_ns
        localizacao, tipo = reading.localizacao, reading.tipo
        rules = state.rules
        if localizacao != state.localizacao or tipo != state.tipo:  # the device moved: other rules may apply
            state.localizacao, state.tipo = localizacao, tipo
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
        recovered = False
        if worst == CRITICO:
            state.critical_since_normal = True
        elif worst == NORMAL and state.critical_since_normal:
            state.critical_since_normal = False
            recovered = True
        change = StatusChange(
            device=state,
            time_ns=reading.time_ns,
            previous=None if first else LEVELS[previous_level],
            status=LEVELS[worst],
            driver_field=state.driver_field,
            driver_value=state.driver_value,
            recovered=recovered,
        )
        return Outcome(change=change, stale=False)
