"""renovate.json's images manager finds every entry of mov_images (and nothing else), digest or not."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from conftest import REPO

SERVICES = REPO / "group_vars" / "all" / "services.yml"


def _images_manager() -> dict[str, Any]:
    config = json.loads((REPO / "renovate.json").read_text())
    managers = [m for m in config["customManagers"] if "services" in m["managerFilePatterns"][0]]
    assert len(managers) == 1
    return dict(managers[0])


def _matches(text: str) -> list[dict[str, str | None]]:
    """Renovate's recursive strategy: each pattern applied within the previous one's matches (JS regex -> Python)."""
    patterns = [re.compile(p.replace("(?<", "(?P<")) for p in _images_manager()["matchStrings"]]
    regions = [text]
    for pattern in patterns[:-1]:
        regions = [m.group(0) for region in regions for m in pattern.finditer(region)]
    return [m.groupdict() for region in regions for m in patterns[-1].finditer(region)]


def test_every_image_of_the_table_is_found() -> None:
    text = SERVICES.read_text()
    table = yaml.safe_load(text)["mov_images"]
    found = {f"{m['depName']}:{m['currentValue']}" for m in _matches(text)}
    assert found == set(table.values())
    assert re.search(_images_manager()["managerFilePatterns"][0].strip("/"), "group_vars/all/services.yml")


def test_a_digest_is_read_and_other_keys_are_left_alone() -> None:
    digest = "sha256:" + "ab" * 32
    text = (
        "---\nmov_devices:\n  - name: sensor_001\n    client: industria_abc\n"
        "mov_images:\n"
        f"  telegraf: telegraf:1.32.3@{digest}\n"
        "  # a comment in the table\n"
        "  grafana: grafana/grafana-oss:11.3.1\n"
        "\n# --- next section\nmov_other:\n  webhook: http://example.net:8080/x\n"
    )
    matches = _matches(text)
    assert [(m["depName"], m["currentValue"], m["currentDigest"]) for m in matches] == [
        ("telegraf", "1.32.3", digest),
        ("grafana/grafana-oss", "11.3.1", None),
    ]
