#!/usr/bin/env python3
"""Check that every role's meta/argument_specs.yml documents exactly its defaults.

defaults/main.yml is a role's public interface and argument_specs.yml its typed
description; when the two drift, a variable either escapes validation or is
documented but does nothing.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Drift:
    role: str
    undocumented: frozenset[str]
    without_default: frozenset[str]

    def __str__(self) -> str:
        parts = []
        if self.undocumented:
            parts.append(f"in defaults but not in argument_specs: {', '.join(sorted(self.undocumented))}")
        if self.without_default:
            parts.append(f"in argument_specs but not in defaults: {', '.join(sorted(self.without_default))}")
        return f"{self.role}: " + "; ".join(parts)


def _load(path: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError as exc:
        raise SystemExit(f"{path.relative_to(REPO)}: not valid YAML: {exc}") from exc
    return data if isinstance(data, dict) else {}


def role_drift(role_dir: Path) -> Drift | None:
    defaults = set(_load(role_dir / "defaults" / "main.yml"))
    specs = _load(role_dir / "meta" / "argument_specs.yml").get("argument_specs", {})
    main = specs.get("main", {}) if isinstance(specs, dict) else {}
    options = set(main.get("options", {}) or {}) if isinstance(main, dict) else set()
    if defaults == options:
        return None
    return Drift(role_dir.name, frozenset(defaults - options), frozenset(options - defaults))


def roles(root: Path = REPO / "roles") -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "tasks" / "main.yml").exists())


def main() -> int:
    missing = [r.name for r in roles() if not (r / "meta" / "argument_specs.yml").exists()]
    drifts = [d for d in (role_drift(r) for r in roles()) if d is not None]
    for name in missing:
        print(f"{name}: no meta/argument_specs.yml", file=sys.stderr)
    for drift in drifts:
        print(drift, file=sys.stderr)
    if missing or drifts:
        return 1
    print(f"argument specs match defaults in {len(roles())} roles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
