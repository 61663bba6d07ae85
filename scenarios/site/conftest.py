"""The site scenario's boxes and environment: what a user has before their first `ansible-playbook site.yml`.

Fresh Debian boxes (scripts/box.py's image: systemd, sshd with host keys of their own, a root login by the
"provider's" key) on a private network, reached over SSH the way a VPS is; an environment made by
`scripts/new-env --non-interactive` with its vault; then the edits this CI environment needs, as a user would make
them in inventories/<env>/group_vars/mov/ (box.yml, stack.yml): no registry here (the offline bundle, a TEST DOUBLE
of InfluxDB's API as `influxdb`, the Docker API proxy without Telegraf), a self-signed certificate (no public name), a
smaller disk and no NTP daemon.

MOV_SITE_RELEASES (comma-separated, default trixie) picks the Debian releases; each gets a box, and every step
runs against all of them at once, as one inventory. Debian 12 needs Docker's own apt repository
(download.docker.com), which is not reachable where CI runs this; the GitHub workflow's site job runs bookworm.
Two edge gateways (the inventory's group `edge`, docs/plants.md) join the same network, each with a device of its
plant, so that the same first `site.yml` configures the central VPS and its gateways (test_edge.py's steps).

MOV_SITE_NAME (default site) names the scenario's containers and network, MOV_SITE_LAN_PREFIX (default 10.231.7)
and MOV_SITE_PUBLIC_PREFIX (default 198.18) their addresses: two runs on one machine need their own.
MOV_SITE_KEEP=1 keeps the boxes, the env and the work directory after the run (it prints the directory);
MOV_SITE_REUSE=<that directory> runs the steps again against them, without making new ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "molecule"))
sys.path.insert(0, str(REPO / "scenarios"))
import box  # noqa: E402
from executors import Executor, executor_env  # noqa: E402
from prober import Prober, docker  # noqa: E402

ENV = "ci-site"
ADMIN = "movadmin"
DOMAIN = "mov.site.test"
NAME = os.environ.get("MOV_SITE_NAME", "site")
LAN = f"mov-{NAME}-lan"
LAN_PREFIX = os.environ.get("MOV_SITE_LAN_PREFIX", "10.231.7")
PUBLIC_PREFIX = os.environ.get("MOV_SITE_PUBLIC_PREFIX", "198.18")
DOUBLE_IMAGE = "mov/influxdb-api-double:test"
CPU_SHARES = 4096
# What the env's stack.yml gives the bundle (make_env): the images built on the controller, and the references that
# replace mov_images' (no registry here). The analytics worker's reference is mov_images' until a step bumps it.
IMAGE_BUILDS = ["mosquitto", "analytics", "dockerproxy"]
IMAGE_OVERRIDES = {"mosquitto": "mov/mosquitto:2.0.21", "influxdb": DOUBLE_IMAGE, "dockerproxy": "mov/haproxy:debian"}
# The alerts' receiver: a webhook on the LAN that prints each POST's body as one JSON line (`docker logs`).
HOOKS = f"mov-{NAME}-hooks"
HOOKS_URL = f"http://{LAN_PREFIX}.5:8080/alert"
HOOKS_SCRIPT = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
        print(json.dumps({"path": self.path, "body": body}), flush=True)
        self.send_response(204); self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("0.0.0.0", 8080), H).serve_forever()
"""
LOGS = REPO / ".cache" / "test-logs" / "site"
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.M,
)


@dataclass(frozen=True)
class Host:
    name: str  # the inventory's name
    container: str
    address: str
    suite: str
    plant: str = ""  # a gateway's mov_edge_site
    devices: tuple[str, ...] = ()  # a gateway's devices, "<client>/<name>"


# The plants: each gateway's name, site and device (one each: what the edge steps publish as).
GATEWAYS = (
    ("gw-sul", "fabrica_sul", "industria_abc/caldeira_01"),
    ("gw-norte", "fabrica_norte", "industria_abc/forno_01"),
)


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    code: int
    output: str
    log: Path

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP's counts per host (the last recap of the output)."""
        counts: dict[str, dict[str, int]] = {}
        for m in RECAP.finditer(self.output):
            counts[m["host"]] = {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        return counts

    def explain(self) -> str:
        tail = "\n".join(self.output.splitlines()[-60:])
        return f"{' '.join(self.args)} exited {self.code}; log {self.log.relative_to(REPO)}; last lines:\n{tail}"


@dataclass
class Site:
    hosts: list[Host]  # the central VPSes (group mov)
    gateways: list[Host]  # group edge
    work: Path
    vault_password: Path
    provider_key: Path
    admin_key: Path
    known_hosts: Path
    facts: Path
    runs: list[Run] = field(default_factory=list)

    @property
    def inventory(self) -> Path:
        return REPO / "inventories" / ENV

    def env(self, executor: Executor = "plain") -> dict[str, str]:
        return dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.work / "cp"),
            # A fact cache of its own: the repository's (.cache/facts) may hold another box of the same name.
            ANSIBLE_CACHE_PLUGIN_CONNECTION=str(self.facts),
            # Every task a run started, with its time, in the TASKS RECAP (ansible.cfg lists the 10 longest): what a
            # step asserts ran or not, and where a slow run's time went.
            PROFILE_TASKS_TASK_OUTPUT_LIMIT="all",
            **executor_env(executor),
        )

    def _log(self, name: str) -> Path:
        LOGS.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^\w.-]+", "_", name)[:80]
        return LOGS / f"{len(self.runs) + 1:02d}-{slug}.log"

    def ansible(
        self, tool: str, *args: str, root: bool = False, timeout: float = 1800, executor: Executor = "plain"
    ) -> Run:
        """ansible-playbook (or another Ansible tool) against the env, as the admin or, first, as root; with plain
        Ansible or Mitogen (scripts/executors.py)."""
        # The first run: the provider's root login and key, as README's first deploy (-e ansible_user=root).
        first = ("-e", "ansible_user=root", "-e", f"ansible_ssh_private_key_file={self.provider_key}") if root else ()
        cmd = (tool, *args, "-i", str(self.inventory), "--vault-password-file", str(self.vault_password), *first)
        proc = subprocess.run(cmd, cwd=REPO, env=self.env(executor), capture_output=True, text=True, timeout=timeout)
        return self._record(cmd, proc.returncode, proc.stdout + proc.stderr)

    def play(
        self, playbook: str, *args: str, root: bool = False, timeout: float = 1800, executor: Executor = "plain"
    ) -> Run:
        return self.ansible("ansible-playbook", playbook, *args, root=root, timeout=timeout, executor=executor)

    def play_killed(
        self, playbook: str, *args: str, when: re.Pattern[str], after_s: float = 0, timeout: float = 1800
    ) -> Run:
        """Start a playbook and kill it (SIGKILL, its whole process group) after_s seconds after a line of its output
        matches: a controller that dies, or an operator's ^C^C, while the task runs."""
        cmd = (
            "ansible-playbook",
            playbook,
            *args,
            "-i",
            str(self.inventory),
            "--vault-password-file",
            str(self.vault_password),
        )
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        killed = False
        for line in proc.stdout:
            lines.append(line)
            if when.search(line) or time.monotonic() > deadline:
                time.sleep(after_s)
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
        proc.stdout.close()
        code = proc.wait()
        lines.append(f"[site scenario: {'killed here' if killed else 'ended before the kill point'}]\n")
        return self._record(cmd, code, "".join(lines))

    def _record(self, cmd: Sequence[str], code: int, output: str) -> Run:
        log = self._log(" ".join(Path(a).name for a in cmd[:2]))
        log.write_text(output)
        run = Run(tuple(cmd), code, output, log)
        self.runs.append(run)
        return run

    def ssh(
        self,
        host: Host,
        command: str,
        user: str = ADMIN,
        key: Path | None = None,
        timeout: float = 120,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A command over SSH, as a person logs in (the admin by default). One connection, reused (as Ansible's): the
        firewall rate-limits new SSH connections (ufw limit: 6 in 30 s)."""
        return subprocess.run(
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={self.work / 'cp'}/site-%C",
                "-o",
                "ControlPersist=60s",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=10",
                "-i",
                str(key or self.admin_key),
                f"{user}@{host.address}",
                command,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def sudo(
        self, host: Host, command: str, timeout: float = 300, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.ssh(host, f"sudo -n sh -c {_quote(command)}", timeout=timeout, stdin=stdin)

    def hooks(self) -> list[dict[str, str]]:
        """Every alert the webhook received so far."""
        out = docker("logs", HOOKS).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def tree(self, host: Host, *names: str) -> dict[str, Any]:
        """Variables of the env's config tree for one host, as Ansible resolves them (nothing runs on the host): what
        the steps expect of the host. Ask it for no secret: its output is not kept, so the audit cannot search it."""
        message = "{{ {" + ", ".join(f"'{name}': {name}" for name in names) + "} }}"
        env = dict(self.env(), ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="json")
        out = subprocess.run(
            [
                *("ansible", host.name, "-i", str(self.inventory), "--vault-password-file", str(self.vault_password)),
                *("-m", "ansible.builtin.debug", "-a", json.dumps({"msg": message})),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        # One JSON document among the other callbacks' lines (profile_tasks prints around it).
        document = json.JSONDecoder().raw_decode(out.stdout[out.stdout.index("{\n") :])[0]
        values: dict[str, Any] = document["plays"][0]["tasks"][0]["hosts"][host.name]["msg"]
        return values

    def vault(self) -> dict[str, object]:
        out = subprocess.run(
            [
                "ansible-vault",
                "view",
                "--vault-password-file",
                str(self.vault_password),
                str(self.inventory / "group_vars" / "mov" / "vault.yml"),
            ],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        data: dict[str, object] = yaml.safe_load(out.stdout)
        return data


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def start_box(host: Host, provider_pub: Path, extra: Sequence[str] = ()) -> None:
    docker("rm", "-f", "-v", host.container, check=False)
    apt_cache = Path(os.environ.get("MOV_APT_CACHE", "/var/cache/mov-ci/apt"))
    if host.plant:
        # A gateway's own: apt on two boxes at once cannot share one archives directory (its lock is held by the
        # other box's apt, and apt waits for no lock there).
        apt_cache = apt_cache.with_name(f"{apt_cache.name}-{host.name}")
    apt_cache.mkdir(parents=True, exist_ok=True)
    docker(
        "run",
        "-d",
        "--name",
        host.container,
        "--hostname",
        host.name,
        *box.RUN_FLAGS,
        # The Molecule scenarios' shared cache of downloaded .debs: the same packages, fetched once per lane.
        "-v",
        f"{apt_cache}:/var/cache/apt/archives",
        # The run's longest chain (scripts/dev.py test): when the lanes contend for the CPU, these boxes' apt and
        # modules go first; the other lanes' boxes keep Docker's default weight of 1,024. Alone, it changes nothing.
        "--cpu-shares",
        str(CPU_SHARES),
        "--network",
        LAN,
        "--ip",
        host.address,
        *extra,
        box.image_for(host.suite),
        "/lib/systemd/systemd",
    )
    box.wait_for_systemd(host.container)
    # What a provider's image (cloud-init) does: the customer's key for root, packages kept for the next box.
    setup = (
        "install -d -m 0700 /root/.ssh && cat > /root/.ssh/authorized_keys"
        " && chmod 0600 /root/.ssh/authorized_keys"
        " && echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/01mov-keep-cache"
    )
    subprocess.run(
        ["docker", "exec", "-i", host.container, "sh", "-c", setup],
        input=provider_pub.read_text(),
        text=True,
        check=True,
        capture_output=True,
    )


def scan_host_keys(hosts: Sequence[Host], known_hosts: Path) -> None:
    deadline = time.monotonic() + 60
    lines: list[str] = []
    for host in hosts:
        while True:
            out = subprocess.run(
                ["ssh-keyscan", "-T", "5", "-t", "ed25519", host.address], capture_output=True, text=True
            )
            if out.stdout.strip():
                lines.append(out.stdout.strip())
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.container}: sshd did not answer on {host.address}:22")
            time.sleep(1)
    known_hosts.write_text("\n".join(lines) + "\n")


def run_script(name: str, *args: str) -> None:
    """One of the repository's scripts/, as the user runs it."""
    subprocess.run([sys.executable, f"scripts/{name}", *args], cwd=REPO, check=True, capture_output=True, text=True)


def make_env(
    hosts: Sequence[Host], gateways: Sequence[Host], admin_key: Path, known_hosts: Path, vault_password: Path
) -> None:
    """`scripts/new-env --non-interactive` with the gateways, then this CI environment's edits and the gateways'
    devices (with their passwords generated by scripts/platform_secrets.py, as hosts.yml's comment says)."""
    run_script(
        "new_env.py",
        "--non-interactive",
        "--force",
        "--env",
        ENV,
        "--host",
        hosts[0].address,
        "--ssh-user",
        ADMIN,
        "--domains",
        DOMAIN,
        "--acme-email",
        "ops@example.net",
        "--acme-ca",
        "staging",
        "--timezone",
        "UTC",
        "--components",
        "analytics",
        "--alert-webhook",
        HOOKS_URL,
        "--alert-emails",
        "",
        "--smtp-host",
        "",
        "--smtp-port",
        "587",
        "--smtp-user",
        "",
        "--backup-remote",
        "",
        "--admin-ssh-keys",
        str(admin_key.with_suffix(".pub")),
        "--vault-password-file",
        str(vault_password),
        *(f"--gateway={g.name}={g.address}/{g.plant}" for g in gateways),
    )
    inventory = REPO / "inventories" / ENV
    hosts_yml = yaml.safe_load((inventory / "hosts.yml").read_text())
    template = next(iter(hosts_yml["mov"]["hosts"].values()))
    # The admin's key and this run's known hosts, as a user's ~/.ssh would hold them (scripts/movctl reads them too).
    ssh = {
        "ansible_ssh_private_key_file": str(admin_key),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o IdentitiesOnly=yes",
    }
    hosts_yml["mov"]["hosts"] = {h.name: dict(template, ansible_host=h.address, **ssh) for h in hosts}
    for gateway in gateways:
        entry = hosts_yml["edge"]["hosts"][gateway.name]
        entry.update(ssh)
        entry["mov_edge_devices"] = [
            {"name": d.split("/")[1], "client": d.split("/")[0], "site": gateway.plant, "type": "temperatura"}
            for d in gateway.devices
        ]
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts_yml, sort_keys=False))
    group_vars = inventory / "group_vars" / "mov"
    (group_vars / "stack.yml").write_text(
        "---\n# No registry here: the offline bundle of images built on the controller, and a TEST DOUBLE of\n"
        "# InfluxDB's v2 API and CLI (molecule/_shared/influx-api-double) as the `influxdb` service. The Docker API\n"
        "# proxy, which comes with Telegraf (its image cannot be had here), runs without it: its filter is proven on\n"
        "# the box (test_platform.py).\n"
        + yaml.safe_dump(
            {
                "mov_stack_services": ["mosquitto", "influxdb", "analytics"],
                "mov_compose_services": "{{ mov_stack_services + ['dockerproxy'] + mov_logs_services }}",
                "mov_image_source": "bundle",
                "mov_image_builds": IMAGE_BUILDS,
                "mov_image_overrides": IMAGE_OVERRIDES,
            },
            sort_keys=False,
        )
    )
    (group_vars / "box.yml").write_text(
        "---\n# The box is a container on a CI machine: no public name (a self-signed CA), the machine's disk and\n"
        "# memory shared, no NTP daemon, and Docker inside it needs IPv6 on IPv4 interfaces allowed.\n"
        + yaml.safe_dump(
            {
                "mov_tls_mode": "selfsigned",
                "mov_preflight_min_disk_gb": 5,
                "mov_preflight_min_ram_mb": 1024,
                "mov_preflight_check_ntp_sync": False,
                "docker_service_environment": {"DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE": "1"},
            },
            sort_keys=False,
        )
    )
    run_script("platform_secrets.py", "--env", ENV, "--vault-password-file", str(vault_password))


def build_images(suites: Sequence[str]) -> None:
    for suite in suites:
        box.build(suite=suite)
    docker(
        "build",
        "-q",
        "-t",
        DOUBLE_IMAGE,
        "--build-arg",
        f"BASE={box.image_for('trixie')}",
        str(REPO / "molecule" / "_shared" / "influx-api-double"),
        timeout=600,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "audit: a check of every step before it, run after the last step")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The steps in order: test_site.py's, then test_edge.py's and test_platform.py's (on the same boxes), then the
    audits."""
    modules = ("test_site.py", "test_edge.py", "test_platform.py")
    items.sort(key=lambda i: len(modules) if i.get_closest_marker("audit") else modules.index(i.path.name))


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    suites = [s for s in os.environ.get("MOV_SITE_RELEASES", "trixie").split(",") if s]
    unknown = set(suites) - set(box.SUITES)
    assert not unknown, f"MOV_SITE_RELEASES: unknown releases {sorted(unknown)} (known: {box.SUITES})"
    build_images(suites)
    hosts = [
        Host(f"mov-{ENV}-{suite}", f"mov-{NAME}-{suite}", f"{LAN_PREFIX}.{10 + i}", suite)
        for i, suite in enumerate(suites)
    ]
    gateways = [
        Host(name, f"mov-{NAME}-{name}", f"{LAN_PREFIX}.{20 + i}", suites[0], plant, (device,))
        for i, (name, plant, device) in enumerate(GATEWAYS)
    ]
    if reuse := os.environ.get("MOV_SITE_REUSE"):
        # A developer's shortcut: the boxes and env an earlier run kept (MOV_SITE_KEEP=1 printed the directory).
        work = Path(reuse)
        yield Site(
            hosts,
            gateways,
            work,
            work / "vault-password",
            work / "provider",
            work / "admin",
            work / "known_hosts",
            work / "facts",
        )
        return
    work = Path(tempfile.mkdtemp(prefix="mov-site-"))
    (work / "cp").mkdir()
    print(f"site scenario: work directory {work}")
    docker("network", "rm", LAN, check=False)
    docker("network", "create", "--subnet", f"{LAN_PREFIX}.0/24", LAN)
    try:
        provider = keygen(work / "provider", "provider-root")
        admin = keygen(work / "admin", "site-admin")
        docker("rm", "-f", HOOKS, check=False)
        docker(
            "run",
            "-d",
            "--name",
            HOOKS,
            "--network",
            LAN,
            "--ip",
            HOOKS_URL.split("/")[2].split(":")[0],
            box.image_for("trixie"),
            "python3",
            "-c",
            HOOKS_SCRIPT,
        )
        for host in hosts:
            start_box(host, provider.with_suffix(".pub"))
        # The plant's DNS names the central VPS (its certificate's name) at its address.
        for gateway in gateways:
            start_box(gateway, provider.with_suffix(".pub"), ("--add-host", f"{DOMAIN}:{hosts[0].address}"))
        site = Site(
            hosts, gateways, work, work / "vault-password", provider, admin, work / "known_hosts", work / "facts"
        )
        scan_host_keys([*hosts, *gateways], site.known_hosts)
        make_env(hosts, gateways, admin, site.known_hosts, site.vault_password)
        yield site
    finally:
        if os.environ.get("MOV_SITE_KEEP") != "1":
            for name in [HOOKS, *(h.container for h in [*hosts, *gateways])]:
                docker("rm", "-f", "-v", name, check=False)
            docker("network", "rm", LAN, check=False)
            shutil.rmtree(REPO / "inventories" / ENV, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def prober(site: Site) -> Iterator[list[Prober]]:
    """A non-private network with each box on it: what the internet sees."""
    probers = [
        Prober(f"mov-{NAME}-public-{i}", f"{PUBLIC_PREFIX}.{10 + i}.0/24", f"{PUBLIC_PREFIX}.{10 + i}.10", h.container)
        for i, h in enumerate(site.hosts)
    ]
    with ExitStack() as stack:
        for p in probers:
            stack.enter_context(p.attached())
        yield probers
