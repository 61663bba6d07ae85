"""Rules: thresholds, hysteresis, per-site/per-type overrides, duplicates never counted as changes."""

from __future__ import annotations

import pytest

from mov_analytics.config import DEFAULT_RULES, RuleConfig
from mov_analytics.parsing import Reading
from mov_analytics.rules import ALERTA, CRITICO, NORMAL, RulesEngine, next_level

T0 = 1_705_314_600 * 10**9


def reading(
    value: float,
    step: int,
    device: str = "sensor_001",
    localizacao: str = "sala_servidores",
    tipo: str = "temperatura",
    field: str = "temperatura_c",
) -> Reading:
    return Reading(
        time_ns=T0 + step * 10**9,
        cliente="industria_abc",
        dispositivo=device,
        localizacao=localizacao,
        tipo=tipo,
        fields={field: value},
    )


def statuses(engine: RulesEngine, values: list[float], **kw: str) -> list[str | None]:
    out = []
    for step, value in enumerate(values):
        change = engine.evaluate(reading(value, step, **kw)).change
        out.append(change.status if change else None)
    return out


def test_default_thresholds() -> None:
    rule = DEFAULT_RULES[0]
    assert (rule.field, rule.alerta, rule.critico) == ("temperatura_c", 30.0, 35.0)
    assert next_level(rule, NORMAL, 30.0) == NORMAL  # "> 30", not ">= 30"
    assert next_level(rule, NORMAL, 30.01) == ALERTA
    assert next_level(rule, NORMAL, 35.01) == CRITICO
    assert next_level(rule, CRITICO, 20.0) == NORMAL


def test_first_reading_reports_initial_status_then_only_changes() -> None:
    engine = RulesEngine(DEFAULT_RULES)
    assert statuses(engine, [25.0, 26.0, 31.0, 32.0, 36.0, 36.5, 20.0]) == [
        "normal",
        None,
        "alerta",
        None,
        "critico",
        None,
        "normal",
    ]


def test_hysteresis_stops_flapping_on_a_threshold() -> None:
    engine = RulesEngine(DEFAULT_RULES)
    hovering = [29.9, 30.1, 29.9, 30.1, 29.8, 30.05, 29.6, 29.5, 30.2]
    assert statuses(engine, hovering) == ["normal", "alerta", None, None, None, None, None, "normal", "alerta"]


def test_hysteresis_going_down_from_critico() -> None:
    engine = RulesEngine(DEFAULT_RULES)
    assert statuses(engine, [36.0, 34.8, 34.4, 29.6, 29.4]) == ["critico", None, "alerta", None, "normal"]


def test_direction_below() -> None:
    rule = RuleConfig(field="pressao", alerta=990.0, critico=980.0, hysteresis=2.0, direction="below")
    engine = RulesEngine([rule])
    values = [1000.0, 989.0, 991.0, 992.5, 979.0]
    assert statuses(engine, values, field="pressao") == ["normal", "alerta", None, "normal", "critico"]


def test_most_specific_rule_wins() -> None:
    generic = RuleConfig(field="temperatura_c", alerta=30.0, critico=35.0)
    site = RuleConfig(field="temperatura_c", alerta=20.0, critico=25.0, localizacao="camara_fria")
    site_and_type = RuleConfig(
        field="temperatura_c", alerta=5.0, critico=8.0, localizacao="camara_fria", tipo="congelador"
    )
    engine = RulesEngine([site_and_type, generic, site])
    assert engine.rule_for("temperatura_c", "sala_servidores", "temperatura") is generic
    assert engine.rule_for("temperatura_c", "camara_fria", "temperatura") is site
    assert engine.rule_for("temperatura_c", "camara_fria", "congelador") is site_and_type
    assert statuses(engine, [21.0], localizacao="camara_fria") == ["alerta"]
    assert statuses(engine, [9.0], device="f1", localizacao="camara_fria", tipo="congelador") == ["critico"]


def test_a_device_that_moves_gets_the_rules_of_its_new_place() -> None:
    generic = RuleConfig(field="temperatura_c", alerta=30.0, critico=35.0)
    cold = RuleConfig(field="temperatura_c", alerta=5.0, critico=8.0, localizacao="camara_fria")
    only_freezers = RuleConfig(field="umidade", alerta=80.0, critico=90.0, tipo="congelador")
    engine = RulesEngine([generic, cold, only_freezers])
    moves = [
        (21.0, "sala_servidores", "temperatura", None),
        (21.0, "camara_fria", "temperatura", "critico"),
        (21.0, "sala_servidores", "temperatura", "normal"),
        (36.0, "sala_servidores", "temperatura", "critico"),
    ]
    for step, (value, place, tipo, expected) in enumerate(moves):
        change = engine.evaluate(reading(value, step + 1, localizacao=place, tipo=tipo)).change
        assert (change.status if change else None) == (expected if step else "normal")
    # A field whose only rule is for another tipo is no rule here, until the device becomes that tipo.
    assert statuses(engine, [95.0], device="h1", field="umidade") == ["normal"]
    change = engine.evaluate(reading(95.0, 5, device="h1", tipo="congelador", field="umidade")).change
    assert change is not None and change.status == "critico"


def test_duplicates_and_out_of_order_do_not_change_status() -> None:
    engine = RulesEngine(DEFAULT_RULES)
    first = reading(36.0, 5)
    assert engine.evaluate(first).change is not None
    duplicate = engine.evaluate(first)
    assert duplicate.kind == "duplicate" and duplicate.change is None
    older = engine.evaluate(reading(20.0, 3))  # late and better than the status then: nothing to say
    assert older.kind == "late" and older.change is None
    assert engine.evaluate(reading(20.0, 6)).change is not None


def test_recovery_flag_only_after_critico() -> None:
    engine = RulesEngine(DEFAULT_RULES)
    changes = [engine.evaluate(reading(v, i)).change for i, v in enumerate([31.0, 20.0, 36.0, 31.0, 20.0])]
    flags = [(c.status, c.recovered) for c in changes if c is not None]
    assert flags == [("alerta", False), ("normal", False), ("critico", False), ("alerta", False), ("normal", True)]


def test_worst_field_drives_device_status() -> None:
    rules = [
        RuleConfig(field="temperatura_c", alerta=30.0, critico=35.0),
        RuleConfig(field="umidade", alerta=70.0, critico=90.0),
    ]
    engine = RulesEngine(rules)
    base = reading(25.0, 0)
    both = Reading(
        time_ns=base.time_ns,
        cliente=base.cliente,
        dispositivo=base.dispositivo,
        localizacao=base.localizacao,
        tipo=base.tipo,
        fields={"temperatura_c": 31.0, "umidade": 95.0},
    )
    change = engine.evaluate(both).change
    assert change is not None
    assert (change.status, change.driver_field, change.driver_value) == ("critico", "umidade", 95.0)


@pytest.mark.parametrize("value", [float(v) for v in range(-10, 60, 3)])
def test_level_is_monotonic_in_value(value: float) -> None:
    rule = DEFAULT_RULES[0]
    assert next_level(rule, NORMAL, value) <= next_level(rule, NORMAL, value + 1.0)


# -- late readings, duplicates, and readings too late to matter (issue 22, item 8) ---------------------------


def test_late_critical_reading_within_the_window_is_an_excursion_with_its_own_time() -> None:
    engine = RulesEngine(DEFAULT_RULES)  # late_window_s 300 by default
    assert statuses(engine, [25.0] * 21)[0] == "normal"  # steps 0..20
    late = engine.evaluate(reading(36.0, 15))
    assert late.kind == "late"
    change = late.change
    assert change is not None and change.late
    assert (change.status, change.previous, change.time_ns) == ("critico", "normal", T0 + 15 * 10**9)
    assert (change.driver_field, change.driver_value) == ("temperatura_c", 36.0)


def test_a_late_reading_never_moves_the_current_status() -> None:
    engine = RulesEngine(DEFAULT_RULES)
    assert statuses(engine, [25.0] * 21)[0] == "normal"
    assert engine.evaluate(reading(36.0, 15)).change is not None  # late critico: an excursion in the past
    device = next(engine.devices())
    assert (device.level, device.last_time_ns) == (NORMAL, T0 + 20 * 10**9)
    assert engine.evaluate(reading(25.0, 21)).change is None  # still normal, no change, no "recovery"
    # And the other way: a late normal reading does not lower a critico device, nor does it recover it.
    assert engine.evaluate(reading(36.0, 22)).change is not None
    assert engine.evaluate(reading(20.0, 18)).change is None
    assert next(engine.devices()).level == CRITICO
    recovery = engine.evaluate(reading(20.0, 23)).change
    assert recovery is not None and recovery.recovered and not recovery.late


def test_a_late_reading_is_compared_with_the_status_the_device_had_at_its_time() -> None:
    engine = RulesEngine(DEFAULT_RULES)
    for step, value in [(0, 25.0), (10, 31.0), (20, 25.0), (30, 25.0)]:  # normal, alerta at 10, normal at 20
        engine.evaluate(reading(value, step))
    as_bad = engine.evaluate(reading(32.0, 12))  # alerta while the device was alerta: nothing new
    assert as_bad.kind == "late" and as_bad.change is None
    worse = engine.evaluate(reading(36.0, 15)).change
    assert worse is not None and (worse.status, worse.previous) == ("critico", "alerta")
    before = engine.evaluate(reading(31.0, 5)).change
    assert before is not None and (before.status, before.previous) == ("alerta", "normal")


def test_a_reading_older_than_the_window_is_stale_and_skipped() -> None:
    engine = RulesEngine(DEFAULT_RULES, late_window_s=300.0)
    engine.evaluate(reading(25.0, 1000))
    too_late = engine.evaluate(reading(36.0, 1000 - 301))
    assert too_late.kind == "stale" and too_late.stale and too_late.change is None
    at_the_edge = engine.evaluate(reading(36.0, 1000 - 300))
    assert at_the_edge.kind == "late" and at_the_edge.change is not None


def test_a_duplicate_is_not_late_and_is_not_evaluated_twice() -> None:
    engine = RulesEngine(DEFAULT_RULES)
    first = reading(36.0, 5)
    assert engine.evaluate(first).change is not None
    again = engine.evaluate(reading(36.0, 5))  # a QoS 1 redelivery: same device, time and values
    assert again.kind == "duplicate" and again.change is None and not again.stale
    engine.evaluate(reading(25.0, 10))
    late = engine.evaluate(reading(36.0, 7))
    assert late.kind == "late" and late.change is None  # the device was critico at 7 already
    assert engine.evaluate(reading(36.0, 7)).kind == "duplicate"
    assert engine.evaluate(reading(36.0, 5)).kind == "duplicate"  # an older redelivery, still remembered
    # Same time, other values: not a redelivery but a reading of its own (late, since it is not newer).
    assert engine.evaluate(reading(37.0, 10)).kind == "late"


def test_late_window_zero_turns_late_evaluation_off() -> None:
    engine = RulesEngine(DEFAULT_RULES, late_window_s=0.0)
    engine.evaluate(reading(25.0, 10))
    assert engine.evaluate(reading(36.0, 9)).kind == "stale"
    assert engine.evaluate(reading(25.0, 10)).kind == "duplicate"
