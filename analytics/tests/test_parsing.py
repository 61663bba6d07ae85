"""Validation: the platform's payload is accepted; every kind of bad input is rejected under its own reason."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from mov_analytics.config import ValidationConfig
from mov_analytics.parsing import REASONS, Rejected, Validator

NOW = 1_705_314_600.0  # 2024-01-15T10:30:00Z
TOPIC = "mov/dados/industria_abc/sensor_001/telemetria"
PLATFORM_PAYLOAD: dict[str, Any] = {
    "timestamp": "2024-01-15T10:30:00Z",
    "tags": {
        "dispositivo": "sensor_001",
        "localizacao": "sala_servidores",
        "tipo": "temperatura",
        "cliente": "industria_abc",
    },
    "fields": {"temperatura_c": 23.5, "umidade": 45.2, "pressao": 1013.25},
}


def validator(**overrides: Any) -> Validator:
    return Validator(ValidationConfig(**overrides), clock=lambda: NOW)


def payload(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PLATFORM_PAYLOAD)
    doc.update(changes)
    return doc


def encode(doc: object) -> bytes:
    return json.dumps(doc).encode()


def reason_of(raw: bytes, topic: str = TOPIC, **cfg: Any) -> str:
    with pytest.raises(Rejected) as caught:
        validator(**cfg).parse(topic, raw)
    assert caught.value.reason in REASONS
    return caught.value.reason


def test_platform_payload_is_accepted() -> None:
    reading = validator().parse(TOPIC, encode(PLATFORM_PAYLOAD))
    assert reading.time_ns == 1_705_314_600 * 10**9
    assert (reading.cliente, reading.dispositivo) == ("industria_abc", "sensor_001")
    assert reading.localizacao == "sala_servidores" and reading.tipo == "temperatura"
    assert dict(reading.fields) == {"temperatura_c": 23.5, "umidade": 45.2, "pressao": 1013.25}
    assert not reading.had_unknown_keys


@pytest.mark.parametrize(
    ("stamp", "expected_ns"),
    [
        (1_705_314_600, 1_705_314_600 * 10**9),  # seconds
        (1_705_314_600.25, 1_705_314_600_250_000_000),  # fractional seconds
        (1_705_314_600_123, 1_705_314_600_123_000_000),  # milliseconds
        (1_705_314_600_123_456, 1_705_314_600_123_456_000),  # microseconds
        (1_705_314_600_123_456_789, 1_705_314_600_123_456_789),  # nanoseconds
        ("2024-01-15T10:30:00.5+00:00", 1_705_314_600_500_000_000),
        ("2024-01-15T07:30:00-03:00", 1_705_314_600 * 10**9),
    ],
)
def test_timestamp_units(stamp: object, expected_ns: int) -> None:
    assert validator().parse(TOPIC, encode(payload(timestamp=stamp))).time_ns == expected_ns


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"timestamp": ', "malformed_json"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"tags": "\xc3\x28"}', "invalid_utf8"),
        (b"[1, 2, 3]", "not_object"),
        (b'"just a string"', "not_object"),
        (b"42", "not_object"),
    ],
)
def test_undecodable_payloads(raw: bytes, reason: str) -> None:
    assert reason_of(raw) == reason


def test_oversize_payload() -> None:
    doc = payload()
    doc["fields"]["nota"] = 1.0
    raw = encode(doc) + b" " * 20_000
    assert reason_of(raw) == "oversize"


def test_deep_nesting_is_too_deep_not_a_crash() -> None:
    nested: Any = 1
    for _ in range(50):
        nested = {"a": nested}
    assert reason_of(encode(payload(extra=nested))) == "too_deep"
    assert reason_of(b"[" * 100_000 + b"]" * 100_000, max_payload_bytes=1_000_000) in ("too_deep", "not_object")
    deep_field = payload()
    deep_field["fields"]["temperatura_c"] = {"a": {"b": {"c": {"d": 1}}}}
    assert reason_of(encode(deep_field)) == "too_deep"


@pytest.mark.parametrize("missing", ["timestamp", "tags", "fields"])
def test_missing_top_level(missing: str) -> None:
    doc = payload()
    del doc[missing]
    assert reason_of(encode(doc)) == "missing_field"


@pytest.mark.parametrize("tag", ["dispositivo", "localizacao", "tipo", "cliente"])
def test_missing_tag(tag: str) -> None:
    doc = payload()
    del doc["tags"][tag]
    assert reason_of(encode(doc)) == "missing_field"


def test_empty_fields_is_missing() -> None:
    assert reason_of(encode(payload(fields={}))) == "missing_field"


@pytest.mark.parametrize(
    "doc",
    [
        payload(tags=["sensor_001"]),
        payload(fields=[23.5]),
        payload(fields={"temperatura_c": "23.5"}),
        payload(fields={"temperatura_c": True}),
        payload(fields={"temperatura_c": None}),
        payload(timestamp=True),
        payload(timestamp={"s": 1}),
        payload(tags={**PLATFORM_PAYLOAD["tags"], "dispositivo": 7}),
        payload(tags={**PLATFORM_PAYLOAD["tags"], "localizacao": "a\nb"}),
    ],
)
def test_wrong_types(doc: dict[str, Any]) -> None:
    assert reason_of(encode(doc)) == "wrong_type"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"timestamp": 1705314600, "tags": {"dispositivo": "sensor_001", "localizacao": "s", "tipo": "t",'
        b' "cliente": "industria_abc"}, "fields": {"temperatura_c": NaN}}',
        b'{"timestamp": 1705314600, "tags": {"dispositivo": "sensor_001", "localizacao": "s", "tipo": "t",'
        b' "cliente": "industria_abc"}, "fields": {"temperatura_c": -Infinity}}',
        b'{"timestamp": 1705314600, "tags": {"dispositivo": "sensor_001", "localizacao": "s", "tipo": "t",'
        b' "cliente": "industria_abc"}, "fields": {"temperatura_c": 1e400}}',
    ],
)
def test_non_finite_numbers(raw: bytes) -> None:
    assert reason_of(raw) == "non_finite"


def test_out_of_range_numbers() -> None:
    assert reason_of(encode(payload(fields={"temperatura_c": 1e13}))) == "out_of_range"
    assert reason_of(encode(payload(fields={"temperatura_c": 10**30}))) == "out_of_range"
    ranged: dict[str, Any] = {"field_ranges": {"temperatura_c": (-50.0, 150.0)}}
    assert reason_of(encode(payload(fields={"temperatura_c": 151.0})), **ranged) == "out_of_range"
    assert validator(**ranged).parse(TOPIC, encode(payload(fields={"temperatura_c": 149.0})))


@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("2024-01-15T11:30:00Z", "timestamp_future"),  # an hour ahead (limit 300 s)
        ("2024-01-01T00:00:00Z", "timestamp_past"),  # two weeks back (limit 7 days)
        (NOW + 3600, "timestamp_future"),
        (NOW - 30 * 86_400, "timestamp_past"),
        (17_053_146_000, "timestamp_unit"),  # deciseconds read as seconds: year 2510
        (1_705_314_600 // 1000, "timestamp_unit"),  # kiloseconds: 1970
        ("2024-01-15T10:30:00", "bad_timestamp"),  # no timezone
        ("yesterday", "bad_timestamp"),
    ],
)
def test_timestamps_out_of_window_or_unit(stamp: object, reason: str) -> None:
    assert reason_of(encode(payload(timestamp=stamp))) == reason


def test_unknown_keys_ignored_by_default_and_counted() -> None:
    doc = payload(firmware="1.2.3")
    doc["tags"]["linha"] = "L1"
    reading = validator().parse(TOPIC, encode(doc))
    assert reading.had_unknown_keys
    assert reading.localizacao == "sala_servidores"


def test_unknown_keys_rejected_when_configured() -> None:
    assert reason_of(encode(payload(firmware="1.2.3")), extra_keys="reject") == "unknown_key"
    doc = payload()
    doc["tags"]["linha"] = "L1"
    assert reason_of(encode(doc), extra_keys="reject") == "unknown_key"


def test_extra_fields_are_kept() -> None:
    doc = payload()
    doc["fields"]["vibracao"] = 0.02
    assert validator().parse(TOPIC, encode(doc)).fields["vibracao"] == 0.02


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("mov/dados/industria_abc", "bad_topic"),
        ("mov/outros/industria_abc/sensor_001", "bad_topic"),
        ("mov/dados/outra_industria/sensor_001", "topic_mismatch"),
        ("mov/dados/industria_abc/sensor_999/x", "topic_mismatch"),
    ],
)
def test_topic_layout(topic: str, reason: str) -> None:
    assert reason_of(encode(PLATFORM_PAYLOAD), topic=topic) == reason


PLANTS = "mov/plantas"  # as group_vars/all/gateways.yml's mov_mqtt_topic_plants reaches the worker's config


def plant_reason(topic: str, doc: object = PLATFORM_PAYLOAD) -> str:
    with pytest.raises(Rejected) as caught:
        Validator(ValidationConfig(), clock=lambda: NOW, plants_topic=PLANTS).parse(topic, encode(doc))
    return caught.value.reason


@pytest.mark.parametrize(
    "doc",
    [
        PLATFORM_PAYLOAD,  # the full path (an ISO timestamp)
        payload(timestamp=NOW),  # the fast path (an epoch number)
        payload(timestamp=int(NOW) * 10**9),  # the fast path's nanoseconds
        payload(extra="x"),  # the full path again (an unknown key)
    ],
)
def test_a_plants_reading_carries_its_plant_and_a_direct_one_none(doc: dict[str, Any]) -> None:
    v = Validator(ValidationConfig(), clock=lambda: NOW, plants_topic=PLANTS)
    through_gateway = v.parse(f"{PLANTS}/fabrica_sul/{TOPIC}", encode(doc))
    assert through_gateway.planta == "fabrica_sul"
    assert (through_gateway.cliente, through_gateway.dispositivo) == ("industria_abc", "sensor_001")
    assert v.parse(TOPIC, encode(doc)).planta == ""


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        (f"{PLANTS}//{TOPIC}", "bad_topic"),  # no plant
        (f"{PLANTS}/fabrica_sul", "bad_topic"),
        (f"{PLANTS}/fabrica_sul/gateway/estado", "bad_topic"),  # the gateway's state is not a reading
        (f"{PLANTS}/fabrica_sul/mov/dados/industria_abc", "bad_topic"),
        (f"{PLANTS}/fabrica\x07sul/{TOPIC}", "bad_topic"),  # a control character in the plant
        (f"{PLANTS}/{'p' * 257}/{TOPIC}", "bad_topic"),  # longer than a tag may be
        (f"{PLANTS}/fabrica_sul/mov/dados/outra_industria/sensor_001", "topic_mismatch"),
        (f"{PLANTS}/fabrica_sul/mov/dados/industria_abc/sensor_999", "topic_mismatch"),
        (f"outras/fabrica_sul/{TOPIC}", "bad_topic"),  # another prefix
    ],
)
def test_a_malformed_plant_topic_is_rejected(topic: str, reason: str) -> None:
    assert plant_reason(topic) == reason
    assert plant_reason(topic, payload(timestamp=NOW)) == reason  # via the fast path


def test_without_plants_topic_a_plants_reading_is_a_bad_topic() -> None:
    assert reason_of(encode(PLATFORM_PAYLOAD), topic=f"{PLANTS}/fabrica_sul/{TOPIC}") == "bad_topic"


NS_NOW = int(NOW) * 10**9


@pytest.mark.parametrize(
    "raw",
    [
        encode(PLATFORM_PAYLOAD),
        encode(payload(timestamp=NS_NOW - 5)),  # epoch ns (the fast path's own)
        encode(payload(timestamp=NOW - 1.5)),  # float seconds
        encode(payload(fields={"temperatura_c": 23, "umidade": -1, "pressao": 0})),  # integers become floats
        encode(payload(fields={"temperatura_c": 1e12, "umidade": -1e12})),  # on max_abs_value
        encode(payload(fields={"temperatura_c": 23.5, "vibracao": 0.02})),
        encode(
            payload(
                tags={
                    "dispositivo": "sensor_001",
                    "localizacao": "sala " + "é" * 200,
                    "tipo": "t" * 256,
                    "cliente": "industria_abc",
                }
            )
        ),
        json.dumps(PLATFORM_PAYLOAD, indent=2, ensure_ascii=False).encode(),
        b'{"timestamp":1,"timestamp":"2024-01-15T10:30:00Z",' + encode(PLATFORM_PAYLOAD)[1:].split(b",", 1)[1],
    ],
)
def test_the_fast_path_reads_what_the_full_validation_reads(raw: bytes) -> None:
    # parse() first tries a typed decode (msgspec) and falls back to the full validation (_parse_doc) for
    # anything unusual; on an accepted reading the two must agree, value types included.
    v = validator()
    fast = v.parse(TOPIC, raw)
    full = v._parse_doc(TOPIC, json.loads(raw))
    assert fast == full
    assert [type(x) for x in fast.fields.values()] == [float] * len(fast.fields)


def test_the_fast_path_keeps_the_configured_field_ranges() -> None:
    ranged: dict[str, Any] = {"field_ranges": {"temperatura_c": (-50.0, 150.0)}}
    assert reason_of(encode(payload(timestamp=NS_NOW, fields={"temperatura_c": 150.5})), **ranged) == "out_of_range"
    reading = validator(**ranged).parse(TOPIC, encode(payload(timestamp=NS_NOW, fields={"temperatura_c": 150})))
    assert reading.fields == {"temperatura_c": 150.0}
    assert (
        reason_of(encode(payload(timestamp=NS_NOW, fields={"temperatura_c": 2.0})), max_abs_value=1.0) == "out_of_range"
    )
