#!/usr/bin/env python3
"""The developer's entry point: set up the tools, bring the local platform up, run the tests.

    python3 scripts/dev.py up      # the platform on the local "VPS in a box"
    python3 scripts/dev.py test    # lint, argument specs, pytest, every Molecule scenario

Every command first makes sure the pinned tools are installed in .venv (from
requirements.lock) and re-runs itself there, so a fresh clone needs only
Python 3.11+ and a running Docker engine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
import venv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
LOCKS = [REPO / "requirements.lock"]
ANALYTICS = REPO / "analytics"
APT_CACHE = Path(os.environ.get("MOV_APT_CACHE", "/var/cache/mov-ci/apt"))

sys.path.insert(0, str(REPO / "scripts"))
import box  # noqa: E402

# --- tools -------------------------------------------------------------------

def _in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def _install_inputs() -> list[Path]:
    inputs = list(LOCKS)
    for extra in ("requirements-dev.lock", "pyproject.toml"):
        if (ANALYTICS / extra).exists():
            inputs.append(ANALYTICS / extra)
    return inputs


def ensure_venv() -> None:
    """Install the pinned tools in .venv when the locks changed, then re-exec inside it."""
    if _in_venv():
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV.relative_to(REPO)}", flush=True)
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in _install_inputs())).hexdigest()
    stamp = VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != digest:
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(REPO / "requirements.lock")], check=True)
        if (ANALYTICS / "requirements-dev.lock").exists():
            subprocess.run([*pip, "-r", str(ANALYTICS / "requirements-dev.lock")], check=True)
        if (ANALYTICS / "pyproject.toml").exists():
            subprocess.run([*pip, "--no-deps", "-e", str(ANALYTICS)], check=True)
        stamp.write_text(digest)
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    os.execve(str(python), [str(python), *sys.argv], env)


# --- results -----------------------------------------------------------------

@dataclass
class Results:
    passed: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)

    def record(self, name: str, ok: bool, passed: int = 1, failed: int = 0, note: str = "") -> None:
        if ok and failed == 0:
            self.passed += passed
        else:
            self.passed += passed
            self.failed += max(failed, 1)
        self.lines.append(f"{'ok  ' if ok else 'FAIL'} {name}{'  ' + note if note else ''}")

    def report(self) -> int:
        print("\n=== results", flush=True)
        for line in self.lines:
            print(line)
        if started := os.environ.get("MOV_CI_STARTED"):
            print(f"elapsed: {time.time() - float(started):.0f}s since CI started")
        print(f"summary: {self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1


def run_step(cmd: Sequence[str], **kwargs: object) -> tuple[int, str]:
    """Run a command, streaming its output, and return its exit code and output."""
    print(f"\n=== {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(list(cmd), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)  # type: ignore[call-overload]
    assert proc.stdout is not None
    chunks = []
    for line in proc.stdout:
        sys.stdout.write(line)
        chunks.append(line)
    return proc.wait(), "".join(chunks)


PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|error|errors)\b")


def pytest_counts(output: str) -> tuple[int, int]:
    """Passed and failed counts from the last pytest summary line in output."""
    summary = [line for line in output.splitlines() if re.search(r"=+ .*(passed|failed|error).* in [\d.]+s", line)]
    if not summary:
        return 0, 0
    counts = {kind: int(n) for n, kind in PYTEST_COUNTS.findall(summary[-1])}
    return counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)


# --- commands ----------------------------------------------------------------

def lint(results: Results) -> None:
    for name, cmd in (
        ("yamllint", ["yamllint", "--strict", "."]),
        ("ansible-lint", ["ansible-lint", "--offline", "-q"]),
        ("ruff", ["ruff", "check", "scripts", "tests", "molecule"]),
        ("mypy", ["mypy", "--strict", "scripts"]),
        ("argument specs", [sys.executable, "scripts/check_argument_specs.py"]),
    ):
        code, _ = run_step(cmd)
        results.record(name, code == 0)


def unit(results: Results) -> None:
    suites = ["tests"] + (["analytics/tests"] if (ANALYTICS / "tests").is_dir() else [])
    for suite in suites:
        code, out = run_step([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", suite])
        passed, failed = pytest_counts(out)
        if code == 5:  # pytest: no tests collected
            results.record(f"pytest {suite}", False, note="no tests collected")
            continue
        results.record(f"pytest {suite}", code == 0, passed, failed, note=f"{passed} passed, {failed} failed")


SCENARIO_ACTION = re.compile(r"^INFO\s+(\S+) ➜ (\w+): Executing")
PLAYBOOK_TOOK = re.compile(r"Playbook run took (\d+) days, (\d+) hours, (\d+) minutes, (\d+) seconds")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def scenarios() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


def molecule(results: Results, only: Sequence[str] = ()) -> None:
    box.build()
    APT_CACHE.mkdir(parents=True, exist_ok=True)
    names = list(only) or scenarios()
    timings: dict[str, dict[str, int]] = {}
    for name in names:
        started = time.monotonic()
        code, out = run_step(["molecule", "test", "-s", name],
                             env=dict(os.environ, MOV_APT_CACHE=str(APT_CACHE), PY_COLORS="0",
                                      ANSIBLE_FORCE_COLOR="0", NO_COLOR="1"))
        action = ""
        for raw in out.splitlines():
            line = ANSI.sub("", raw).strip().lstrip("│ ").strip()
            if m := SCENARIO_ACTION.match(line):
                action = m.group(2)
            elif (m := PLAYBOOK_TOOK.search(line)) and action in ("converge", "idempotence"):
                d, h, mi, s = map(int, m.groups())
                timings.setdefault(name, {})[action] = ((d * 24 + h) * 60 + mi) * 60 + s
        passed, failed = pytest_counts(ANSI.sub("", out))
        t = timings.get(name, {})
        note = (f"verify {passed} passed, {failed} failed; converge {t.get('converge', '?')}s, "
                f"idempotence {t.get('idempotence', '?')}s, total {time.monotonic() - started:.0f}s")
        results.record(f"molecule {name}", code == 0, passed, failed, note=note)
    print("\n=== deploy speed (converge / second converge, seconds)")
    for name in names:
        t = timings.get(name, {})
        print(f"{name:12} {t.get('converge', '?'):>5} / {t.get('idempotence', '?')}")


def up() -> int:
    box.create()
    code, _ = run_step(["ansible-playbook", "site.yml", "-i", "inventories/local"])
    if code == 0:
        print(f"\nThe local platform host is up in the container {box.CONTAINER}.")
        print(f"  shell:  docker exec -it {box.CONTAINER} bash")
        print("  remove: python3 scripts/box.py destroy")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install the pinned tools in .venv")
    sub.add_parser("up", help="bring the platform up on the local box")
    p_test = sub.add_parser("test", help="lint, argument specs, pytest and every Molecule scenario")
    p_test.add_argument("--no-molecule", action="store_true", help="skip the Molecule scenarios")
    p_test.add_argument("-s", "--scenario", action="append", default=[], help="only this scenario (repeatable)")
    sub.add_parser("lint", help="linters and the argument spec check")
    p_mol = sub.add_parser("molecule", help="Molecule scenarios only")
    p_mol.add_argument("scenario", nargs="*")
    args = parser.parse_args(argv)

    ensure_venv()
    results = Results()
    if args.command == "setup":
        return 0
    if args.command == "up":
        return up()
    if args.command in ("test", "lint"):
        lint(results)
    if args.command == "test":
        unit(results)
        if not args.no_molecule:
            molecule(results, args.scenario)
    if args.command == "molecule":
        molecule(results, args.scenario)
    return results.report()


if __name__ == "__main__":
    sys.exit(main())
