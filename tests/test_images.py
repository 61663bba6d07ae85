"""scripts/images.py and analytics/Dockerfile: the worker's development variant (the local env's developer loop) is
asked for by name, built from its own target under a hash of its own, and never reaches the release image."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Loaded by path: `import images` would find the repository's images/ directory (the images' sources) instead.
_spec = importlib.util.spec_from_file_location("images_script", REPO / "scripts" / "images.py")
assert _spec is not None and _spec.loader is not None
images = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(images)


def test_only_a_built_service_with_a_dev_target_gets_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert images.main(["build", "--build", "mosquitto=mov/mosquitto:2.0.21", "--dev", "mosquitto"]) == 1
    assert "no development variant of 'mosquitto' (only: analytics)" in capsys.readouterr().err
    assert images.main(["build", "--dev", "analytics"]) == 1
    assert "--dev analytics: not among the --build services" in capsys.readouterr().err


def test_the_dev_variant_is_built_from_the_dev_target_under_its_own_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    commands: list[list[str]] = []

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(images, "image_id", lambda ref: "sha256:base")
    monkeypatch.setattr(images, "image_label", lambda ref, label: "")
    monkeypatch.setattr(images.subprocess, "run", run)
    assert images.build("analytics", "mov/analytics:0.1.0", "mov/box:trixie")
    assert images.build("analytics", "mov/analytics:0.1.0-dev", "mov/box:trixie", dev=True)
    release, dev = commands
    assert release[release.index("--target") + 1] == "release" and dev[dev.index("--target") + 1] == "dev"
    assert release[release.index("--label") + 1] != dev[dev.index("--label") + 1]


def test_the_release_target_comes_before_the_loop_and_is_the_default() -> None:
    """The legacy builder (Debian's docker.io) runs every stage up to its --target in file order: the dev stages
    must come after `release`, and a build without --target must still give the release image."""
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", (REPO / "analytics/Dockerfile").read_text(), re.MULTILINE)
    names = [name for _, name in stages]
    assert names.index("release") < names.index("build-dev") < names.index("dev")
    assert stages[-1] == ("release", "")
