"""Parsing and validation of one MQTT reading into a :class:`Reading`, or a :class:`Rejected` with a reason.

Rules (documented in the README too):

* Topic: ``mov/dados/<cliente>/<dispositivo>[/...]``; the topic's cliente and dispositivo must equal the tags.
  Through an edge gateway (docs/plants.md): ``<plants_topic>/<planta>/mov/dados/<cliente>/<dispositivo>[/...]``,
  where ``plants_topic`` is the worker's ``mqtt.plants_topic`` (empty: no gateways); the prefix is taken off, the
  same check applies to the rest, and ``planta`` (a non-empty printable level) joins the reading. A topic under
  the prefix that is not of that shape is ``bad_topic``.
* Payload: a UTF-8 JSON object of at most ``validation.max_payload_bytes`` bytes and nesting depth
  ``validation.max_depth``, with ``timestamp``, ``tags`` (dispositivo, localizacao, tipo, cliente: non-empty
  strings) and ``fields`` (a non-empty object of finite numbers, |value| <= ``max_abs_value`` and within
  ``field_ranges`` when one is configured for the field).
* ``timestamp``: an ISO-8601 string with a timezone (``Z`` or ``+hh:mm``), or an epoch number whose unit is
  told by its magnitude: < 1e11 seconds, < 1e14 milliseconds, < 1e17 microseconds, otherwise nanoseconds.
  It must fall within [now - max_past_s, now + max_future_s]. An epoch number landing more than a year away
  from now is rejected as ``timestamp_unit`` (a wrong unit, not a skewed clock); otherwise an out-of-window
  time is ``timestamp_future`` / ``timestamp_past``.
* Unknown keys (top level or extra tags): ``validation.extra_keys: ignore`` (default) accepts the reading and
  drops them (counted apart); ``reject`` rejects it as ``unknown_key``. Extra *fields* are readings like any
  other and are always kept.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson

from .config import ValidationConfig

REQUIRED_TAGS = ("dispositivo", "localizacao", "tipo", "cliente")
TOP_LEVEL_KEYS = frozenset(("timestamp", "tags", "fields"))
MAX_TAG_LENGTH = 256

REASONS = (
    "oversize",
    "invalid_utf8",
    "malformed_json",
    "not_object",
    "too_deep",
    "missing_field",
    "wrong_type",
    "non_finite",
    "out_of_range",
    "bad_timestamp",
    "timestamp_future",
    "timestamp_past",
    "timestamp_unit",
    "unknown_key",
    "bad_topic",
    "topic_mismatch",
)

_YEAR_S = 365 * 86_400
_NS = 1_000_000_000
_EPOCH_NS_MIN = 10**17  # epoch numbers from here on are nanoseconds (see _timestamp)
_loads = orjson.loads


class Rejected(Exception):
    """A reading that is skipped; ``reason`` is one of :data:`REASONS` (the metric label)."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)  # not frozen: frozen dataclasses cost ~1 us more to build, once per reading
class Reading:
    time_ns: int
    cliente: str
    dispositivo: str
    localizacao: str
    tipo: str
    fields: Mapping[str, float]
    had_unknown_keys: bool = False
    planta: str = ""  # the plant whose gateway forwarded it; "" for a device publishing to the central broker

    @property
    def device_key(self) -> tuple[str, str]:
        return (self.cliente, self.dispositivo)


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFinite(name)


def _depth(value: object, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early once past ``limit``."""
    if isinstance(value, dict):
        children: Any = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return 0
    deepest = 0
    for child in children:
        deepest = max(deepest, _depth(child, limit))
        if deepest >= limit:
            break
    return deepest + 1


_Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG_LENGTH)]


class _Tags(msgspec.Struct, forbid_unknown_fields=True):
    dispositivo: _Tag
    localizacao: _Tag
    tipo: _Tag
    cliente: _Tag


def _shape_decoder(max_abs_value: float) -> msgspec.json.Decoder[Any]:
    """A decoder for the usual valid reading. Integer field values come out as floats, as _parse_doc makes
    them; a float timestamp, an extra key or tag, a null: all fail here and take the full path."""
    # |value| <= a finite bound implies finite: an infinite value (e.g. 1e400) fails here too.
    limit = max_abs_value if math.isfinite(max_abs_value) else sys.float_info.max
    value = Annotated[float, msgspec.Meta(ge=-limit, le=limit)]
    name = Annotated[str, msgspec.Meta(min_length=1)]
    shape = msgspec.defstruct(
        "_Shape",
        [
            ("timestamp", int | str),
            ("tags", _Tags),
            ("fields", Annotated[dict[name, value], msgspec.Meta(min_length=1)]),
        ],
        forbid_unknown_fields=True,
    )
    return msgspec.json.Decoder(shape)


class Validator:
    def __init__(
        self, cfg: ValidationConfig, clock: Callable[[], float] = time.time, *, plants_topic: str = ""
    ) -> None:
        self._cfg = cfg
        self._plants = plants_topic + "/" if plants_topic else ""
        self._clock = clock
        self._max_payload_bytes = cfg.max_payload_bytes
        self._max_future_s = cfg.max_future_s
        self._max_past_s = cfg.max_past_s
        self._decoder = _shape_decoder(cfg.max_abs_value)

    def _decode_slow(self, payload: bytes) -> object:
        """The payload orjson refused: the standard library tells the reasons apart on this (rare) path."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected("invalid_utf8", str(exc)) from None
        try:
            return json.loads(text, parse_constant=_reject_constant)
        except _NonFinite as exc:
            raise Rejected("non_finite", f"{exc} is not a finite number") from None
        except RecursionError:
            raise Rejected("too_deep", "nesting exceeds the parser's limit") from None
        except ValueError as exc:
            raise Rejected("malformed_json", str(exc)) from None

    def _too_deep_or_wrong(self, doc: object, what: str) -> Rejected:
        if _depth(doc, self._cfg.max_depth + 1) > self._cfg.max_depth:
            return Rejected("too_deep", f"nesting deeper than {self._cfg.max_depth}")
        return Rejected("wrong_type", what)

    def parse(self, topic: str, payload: bytes) -> Reading:
        """Validate one message. Raises :class:`Rejected` with the reason when it is not a valid reading."""
        if len(payload) > self._max_payload_bytes:
            raise Rejected("oversize", f"{len(payload)} bytes > {self._max_payload_bytes}")
        # Fast path for the usual shape of a valid reading: msgspec decodes and type-checks it in one pass in C
        # (_Shape: exactly the three keys, exactly the four tags as 1..256 characters, fields a non-empty object
        # of finite numbers within max_abs_value under non-empty names); the rest is checked below. Each
        # condition is a subset of what the full validation (_parse_doc) accepts; anything else, including
        # every rejection, goes through _parse_doc, which alone decides the reason.
        try:
            shape = self._decoder.decode(payload)
        except msgspec.DecodeError:
            return self._parse_doc(topic, self._load(payload))
        tags = shape.tags
        cliente = tags.cliente
        dispositivo = tags.dispositivo
        # A malformed plant topic splits to an empty device topic: the full path names the reason.
        planta, device_topic = self._split_plant(topic) or ("", "")
        parts = device_topic.split("/", 4)
        if (
            cliente.isprintable()
            and dispositivo.isprintable()
            and tags.localizacao.isprintable()
            and tags.tipo.isprintable()
            and len(parts) >= 4
            and parts[0] == "mov"
            and parts[1] == "dados"
            and parts[2] == cliente
            and parts[3] == dispositivo
            and (not self._cfg.field_ranges or self._in_ranges(shape.fields))
        ):
            stamp = shape.timestamp
            if type(stamp) is int and stamp >= _EPOCH_NS_MIN:
                now = self._clock()
                seconds = stamp / _NS
                if (
                    abs(seconds - now) <= _YEAR_S
                    and seconds <= now + self._max_future_s
                    and seconds >= now - self._max_past_s
                ):
                    return Reading(
                        stamp, cliente, dispositivo, tags.localizacao, tags.tipo, shape.fields, planta=planta
                    )
            else:
                # Its rejections are the full path's too: everything it checks before the time passed.
                return Reading(
                    self._timestamp(stamp),
                    cliente,
                    dispositivo,
                    tags.localizacao,
                    tags.tipo,
                    shape.fields,
                    planta=planta,
                )
        return self._parse_doc(topic, self._load(payload))

    def _load(self, payload: bytes) -> object:
        try:
            return _loads(payload)
        except (orjson.JSONDecodeError, RecursionError):
            return self._decode_slow(payload)

    def _in_ranges(self, values: dict[str, float]) -> bool:
        """True when every field with a configured range lies within it."""
        ranges = self._cfg.field_ranges
        for name, value in values.items():
            bounds = ranges.get(name)
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                return False
        return True

    def _parse_doc(self, topic: str, doc: object) -> Reading:
        if not isinstance(doc, dict):
            raise Rejected("not_object", f"top level is {type(doc).__name__}")
        unknown = [] if doc.keys() == TOP_LEVEL_KEYS else [k for k in doc if k not in TOP_LEVEL_KEYS]
        if unknown:
            if any(isinstance(doc[k], (dict, list)) for k in unknown) and (
                _depth(doc, self._cfg.max_depth + 1) > self._cfg.max_depth
            ):
                raise Rejected("too_deep", f"nesting deeper than {self._cfg.max_depth}")
            if self._cfg.extra_keys == "reject":
                raise Rejected("unknown_key", f"unknown key {sorted(unknown)[0]!r}")
        for key in ("timestamp", "tags", "fields"):
            if key not in doc or doc[key] is None:
                raise Rejected("missing_field", f"{key} is missing")
        tags, values = doc["tags"], doc["fields"]
        if not isinstance(tags, dict):
            raise self._too_deep_or_wrong(doc, "tags is not an object")
        if not isinstance(values, dict):
            raise self._too_deep_or_wrong(doc, "fields is not an object")
        tag_values = self._tags(doc, tags)
        extra_tags = len(tags) > len(REQUIRED_TAGS)
        if extra_tags and self._cfg.extra_keys == "reject":
            extra = sorted(set(tags) - set(REQUIRED_TAGS))[0]
            raise Rejected("unknown_key", f"unknown tag {extra!r}")
        cliente, dispositivo, localizacao, tipo = (
            tag_values["cliente"],
            tag_values["dispositivo"],
            tag_values["localizacao"],
            tag_values["tipo"],
        )
        planta = self._check_topic(topic, cliente, dispositivo)
        fields = self._fields(doc, values)
        time_ns = self._timestamp(doc["timestamp"])
        return Reading(
            time_ns=time_ns,
            cliente=cliente,
            dispositivo=dispositivo,
            localizacao=localizacao,
            tipo=tipo,
            fields=fields,
            had_unknown_keys=bool(unknown) or extra_tags,
            planta=planta,
        )

    def _tags(self, doc: object, tags: dict[str, Any]) -> dict[str, str]:
        out = {}
        for name in REQUIRED_TAGS:
            value = tags.get(name)
            if value is None or value == "":
                raise Rejected("missing_field", f"tags.{name} is missing")
            if not isinstance(value, str):
                raise self._too_deep_or_wrong(doc, f"tags.{name} is not a string")
            if len(value) > MAX_TAG_LENGTH or not value.isprintable():
                raise Rejected("wrong_type", f"tags.{name} is too long or has control characters")
            out[name] = value
        if len(tags) > len(REQUIRED_TAGS):
            for name, value in tags.items():
                if isinstance(value, (dict, list)):
                    raise self._too_deep_or_wrong(doc, f"tags.{name} is not a string")
        return out

    def _split_plant(self, topic: str) -> tuple[str, str] | None:
        """(planta, the device's topic) of a gateway's topic, ("", topic) of a direct one, None for a topic under
        the plants' prefix whose plant level is empty, too long or unprintable."""
        plants = self._plants
        if not plants or not topic.startswith(plants):
            return "", topic
        planta, _, device_topic = topic[len(plants) :].partition("/")
        if not planta or len(planta) > MAX_TAG_LENGTH or not planta.isprintable():
            return None
        return planta, device_topic

    def _check_topic(self, topic: str, cliente: str, dispositivo: str) -> str:
        """The topic's identity against the tags; returns the plant of a gateway's topic ("" for a direct one)."""
        split = self._split_plant(topic)
        if split is None:
            raise Rejected("bad_topic", f"{topic!r} is not {self._plants}<planta>/mov/dados/...")
        planta, device_topic = split
        parts = device_topic.split("/")
        if len(parts) < 4 or parts[0] != "mov" or parts[1] != "dados" or not parts[2] or not parts[3]:
            shape = f"{self._plants}<planta>/" if planta else ""
            raise Rejected("bad_topic", f"{topic!r} is not {shape}mov/dados/<cliente>/<dispositivo>/...")
        if parts[2] != cliente or parts[3] != dispositivo:
            raise Rejected("topic_mismatch", f"topic {topic!r} vs tags {cliente}/{dispositivo}")
        return planta

    def _fields(self, doc: object, values: dict[str, Any]) -> dict[str, float]:
        if not values:
            raise Rejected("missing_field", "fields is empty")
        ranges = self._cfg.field_ranges
        limit = self._cfg.max_abs_value
        out: dict[str, float] = {}
        for name, value in values.items():
            if not name:
                raise Rejected("wrong_type", "empty field name")
            if type(value) is float:  # the common case first: one type check instead of three
                number = value
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                if isinstance(value, (dict, list)):
                    raise self._too_deep_or_wrong(doc, f"fields.{name} is not a number")
                raise Rejected("wrong_type", f"fields.{name} is {type(value).__name__}, not a number")
            else:
                number = float(value)
            if not math.isfinite(number):
                raise Rejected("non_finite", f"fields.{name} is not finite")
            if abs(number) > limit:
                raise Rejected("out_of_range", f"fields.{name}={number} beyond +/-{limit}")
            bounds = ranges.get(name)
            if bounds is not None and not bounds[0] <= number <= bounds[1]:
                raise Rejected("out_of_range", f"fields.{name}={number} outside {list(bounds)}")
            out[name] = number
        return out

    def _timestamp(self, value: object) -> int:
        now = self._clock()
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise Rejected("bad_timestamp", f"{value[:40]!r} is not ISO-8601") from None
            if moment.tzinfo is None:
                raise Rejected("bad_timestamp", f"{value[:40]!r} has no timezone (use Z or +hh:mm)")
            seconds = moment.timestamp()
            time_ns = int(moment.timestamp()) * _NS + moment.microsecond * 1000
            epoch = False
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise Rejected("non_finite", "timestamp is not finite")
            magnitude = abs(value)
            # Integers stay exact; a float epoch carries ~microsecond precision at most, so round there.
            if magnitude < 1e11:
                time_ns = value * _NS if isinstance(value, int) else round(value * 1e6) * 1000
            elif magnitude < 1e14:
                time_ns = value * 1_000_000 if isinstance(value, int) else round(value * 1000) * 1000
            elif magnitude < 1e17:
                time_ns = value * 1000 if isinstance(value, int) else round(value) * 1000
            else:
                time_ns = int(value)
            seconds = time_ns / _NS
            epoch = True
        else:
            raise Rejected("wrong_type", f"timestamp is {type(value).__name__}")
        if epoch and abs(seconds - now) > _YEAR_S:
            raise Rejected("timestamp_unit", f"epoch {value!r} lands more than a year from now")
        if seconds > now + self._cfg.max_future_s:
            raise Rejected("timestamp_future", f"{value!r} is {seconds - now:.0f}s in the future")
        if seconds < now - self._cfg.max_past_s:
            raise Rejected("timestamp_past", f"{value!r} is {now - seconds:.0f}s in the past")
        return time_ns
