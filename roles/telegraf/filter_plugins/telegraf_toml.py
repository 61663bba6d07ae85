"""to_toml: a TOML document from a dict (the subset Telegraf's config uses).

Tables are dicts, arrays of tables are lists of dicts ([[inputs.mqtt_consumer]]), values are strings,
numbers, booleans and lists of those. Strings are written as TOML basic strings (JSON escaping is a subset).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value!r} here")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"to_toml: unsupported value {value!r}")


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _emit(table: Mapping[str, object], path: list[str], lines: list[str]) -> None:
    for name, value in table.items():
        if not isinstance(value, Mapping) and not _is_table_array(value):
            lines.append(f"{_key(name)} = {_value(value)}")
    for name, value in table.items():
        if isinstance(value, Mapping):
            has_values = not value or any(not isinstance(v, Mapping) and not _is_table_array(v) for v in value.values())
            if has_values:  # a table holding only sub-tables needs no header of its own
                lines.append("")
                lines.append(f"[{'.'.join(_key(p) for p in [*path, name])}]")
            _emit(value, [*path, name], lines)
        elif _is_table_array(value):
            assert isinstance(value, list)
            for item in value:
                lines.append("")
                lines.append(f"[[{'.'.join(_key(p) for p in [*path, name])}]]")
                _emit(item, [*path, name], lines)


def to_toml(data: Mapping[str, object]) -> str:
    lines: list[str] = []
    _emit(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"to_toml": to_toml}
