"""Every role's argument specs document exactly its defaults (and the check can fail)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import check_argument_specs as specs


@pytest.mark.parametrize("role", specs.roles(), ids=lambda p: p.name)
def test_role_specs_match_defaults(role: Path) -> None:
    assert specs.role_drift(role) is None


def test_drift_is_reported_both_ways(tmp_path: Path) -> None:
    role = tmp_path / "demo"
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults" / "main.yml").write_text("demo_kept: 1\ndemo_undocumented: 2\n")
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n      demo_kept: {type: int}\n      demo_gone: {type: str}\n"
    )
    drift = specs.role_drift(role)
    assert drift is not None
    assert drift.undocumented == {"demo_undocumented"}
    assert drift.without_default == {"demo_gone"}
