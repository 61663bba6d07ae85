"""scripts/images.py and analytics/Dockerfile: the worker's development variant (the local env's developer loop) is
asked for by name, built from its own target under a hash of its own, and never reaches the release image."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import threading
import time
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


def test_two_builds_of_one_reference_at_once_build_it_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """CI's lanes (and two deploys from one controller) may ask for the same image at once: the second waits for the
    first and finds it up to date, so the reference keeps one image id."""
    labels: dict[str, str] = {}
    builds: list[list[str]] = []

    def run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        time.sleep(0.5)  # a build takes a while: the other caller checks the label meanwhile
        builds.append(command)
        labels[command[command.index("-t") + 1]] = command[command.index("--label") + 1].split("=", 1)[1]
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(images, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(images, "image_id", lambda ref: "sha256:base")
    monkeypatch.setattr(images, "image_label", lambda ref, label: labels.get(ref, ""))
    monkeypatch.setattr(images.subprocess, "run", run)
    results: list[bool] = []
    callers = [
        threading.Thread(
            target=lambda: results.append(images.build("mosquitto", "mov/mosquitto:2.0.21", "mov/box:trixie"))
        )
        for _ in range(2)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=30)
    assert sorted(results) == [False, True] and len(builds) == 1, builds


def test_the_release_target_comes_before_the_loop_and_is_the_default() -> None:
    """The legacy builder (Debian's docker.io) runs every stage up to its --target in file order: the dev stages
    must come after `release`, and a build without --target must still give the release image."""
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", (REPO / "analytics/Dockerfile").read_text(), re.MULTILINE)
    names = [name for _, name in stages]
    assert names.index("release") < names.index("build-dev") < names.index("dev")
    assert stages[-1] == ("release", "")
