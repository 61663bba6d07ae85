"""Run playbooks/render.yml against a throwaway copy of the repository's layout (shared by the render tests).

The copy links the real playbooks, roles, scripts and group_vars and copies the inventories, so a test can add a
vault or a secrets file, or override the tree, without touching the checkout. Results are cached per process.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
from executors import Executor, executor_env  # noqa: E402

ENVS = ("local", "staging", "prod")
VAULT_PASSWORD = "test-only-vault-password"


def ansible_env(config: Path = REPO / "ansible.cfg", executor: Executor = "mitogen") -> dict[str, str]:
    """The environment of the tests' own Ansible runs on the controller (renders, a role run alone, preflight cases).
    By default Mitogen's strategy, the documented faster executor (scripts/executors.py): the tasks and their results
    are plain Ansible's (the site scenario runs the deploy with both), in about a third of the controller time for a
    run on one host. A run over many hosts (one a preflight case) is faster plain: Mitogen starts an interpreter for
    each host."""
    return {**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_NOCOLOR": "1", **executor_env(executor)}


def local_play(
    tmp: Path,
    tasks: list[dict[str, object]],
    role: Path,
    results: str,
    play_vars: dict[str, object] | None = None,
    *extra: str,
) -> list[dict[str, object]]:
    """Run `tasks` in one play on this machine with `role`'s modules and action plugins (a role's own Python run as
    Ansible runs it); returns the value of the Jinja expression `results` at the end of the play."""
    out = tmp / "out.json"
    write = {"ansible.builtin.copy": {"content": "{{ " + results + " | to_json }}", "dest": str(out)}}
    playbook = tmp / "play.yml"
    play = {"hosts": "localhost", "gather_facts": False, "vars": play_vars or {}, "tasks": [*tasks, write]}
    playbook.write_text(json.dumps([play]))
    done = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
            *extra,
        ],
        env=dict(
            ansible_env(), ANSIBLE_ACTION_PLUGINS=str(role / "action_plugins"), ANSIBLE_LIBRARY=str(role / "library")
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    values: list[dict[str, object]] = json.loads(out.read_text())
    return values


def resolved(variable: str, *extra: str) -> Any:
    """The local env's value of a variable as Ansible resolves the config tree (nothing runs on a host); extra are
    ansible's own arguments, e.g. "-e", '{"mov_logs_enabled": true}'."""
    result = subprocess.run(
        [
            "ansible",
            "-i",
            "inventories/local",
            "mov-box",
            "-c",
            "local",
            "-m",
            "debug",
            "-a",
            f"var={variable}",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "json",
        },
    )
    # One JSON document among the other callbacks' lines (profile_tasks prints around it).
    start = result.stdout.index("{\n")
    document = json.JSONDecoder().raw_decode(result.stdout[start:])[0]
    return document["plays"][0]["tasks"][0]["hosts"]["mov-box"][variable]


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def password_file(self) -> Path:
        return self.root / "test.vault-password"

    def inventory(self, env: str) -> Path:
        return self.root / "inventories" / env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**ansible_env(self.root / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
        result = subprocess.run(list(args), cwd=self.root, env=env, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def secrets(self, env: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["python3", str(self.root / "scripts" / "platform_secrets.py"), "--env", env, "--root", str(self.root)]
        if env != "local":
            args += ["--vault-password-file", str(self.password_file)]
        return self.run(*args, *extra, check=check)

    def render(self, env: str, dest: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["ansible-playbook", "playbooks/render.yml", "-i", f"inventories/{env}", "-e", f"render_dest={dest}"]
        if env != "local":
            args += ["--vault-password-file", str(self.password_file)]
        return self.run(*args, *extra, check=check)

    def vault_plaintext(self, env: str) -> str:
        from ansible.constants import DEFAULT_VAULT_ID_MATCH
        from ansible.parsing.vault import VaultLib, VaultSecret

        vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(VAULT_PASSWORD.encode()))])
        raw = (self.inventory(env) / "group_vars" / "mov" / "vault.yml").read_bytes()
        return str(vault.decrypt(raw).decode())

    def secret_store(self, env: str) -> dict[str, object]:
        if env == "local":
            text = (self.inventory(env) / "group_vars" / "mov" / "secrets.yml").read_text()
        else:
            text = self.vault_plaintext(env)
        store = yaml.safe_load(text)["vault_mov_secrets"]
        assert isinstance(store, dict)
        return store


def new_workspace() -> Workspace:
    root = Path(tempfile.mkdtemp(prefix="mov-render-test-"))
    for name in ("playbooks", "roles", "scripts", "group_vars", "plugins"):
        (root / name).symlink_to(REPO / name)
    shutil.copy(REPO / "ansible.cfg", root / "ansible.cfg")
    shutil.copytree(
        REPO / "inventories",
        root / "inventories",
        ignore=shutil.ignore_patterns("secrets.yml", "vault.yml", ".vault-pass*"),
    )
    (root / ".cache").mkdir()
    password_file = root / "test.vault-password"
    password_file.write_text(VAULT_PASSWORD + "\n")
    password_file.chmod(0o600)
    # The operator's own vault content (the admin keys) that the generated block must leave alone.
    for env in ENVS[1:]:
        vault = root / "inventories" / env / "group_vars" / "mov" / "vault.yml"
        vault.write_text("---\n# operator's keys\nvault_mov_admin_ssh_keys:\n  - ssh-ed25519 AAAAtest operator@test\n")
    return Workspace(root)


@functools.cache
def workspace() -> Workspace:
    """One workspace per test process: secrets generated for every env, each env rendered once."""
    ws = new_workspace()
    for env in ENVS[1:]:
        ws.secrets(env)
    return ws


@functools.cache
def rendered(env: str) -> tuple[Path, str]:
    """DIR/<host> of the env's render and the playbook's -v output."""
    ws = workspace()
    dest = ws.root / "render" / env
    result = ws.render(env, dest, "-v")
    hosts = sorted(p for p in dest.iterdir() if p.is_dir())
    assert len(hosts) == 1, hosts
    return hosts[0], result.stdout + result.stderr


# Settings written once in the tree, each changed in one render (a render costs ~40 s) that several tests share:
# each reaches its consumers (tests/test_render.py, tests/test_edge_consumers.py). grafana_gateways stands for
# gateways in the inventory (their accounts would need passwords in the vault; tests/test_edge_consumers.py checks
# the tree derives it from mov_edge_gateways).
CHANGED_TREE = {
    "mov_thresholds": {"temperatura_c": {"alerta": 31.5, "critico": 41}, "umidade": {"alerta": 70, "critico": 85}},
    "mov_mqtt_topic_plants": "mov/fabricas",
    "mov_edge_offline_for": "7m",
    "grafana_gateways": ["fabrica_sul", "fabrica_norte"],
}


@functools.cache
def rendered_with_changed_tree() -> Path:
    """DIR/<host> of staging rendered with CHANGED_TREE."""
    ws = workspace()
    dest = ws.root / "render" / "staging-changed-tree"
    # The roles that read these settings (render.yml's render_roles).
    roles = {"render_roles": ["mosquitto", "telegraf", "grafana", "stack"]}
    ws.render("staging", dest, "-e", json.dumps({**CHANGED_TREE, **roles}))
    [host_dir] = [p for p in dest.iterdir() if p.is_dir()]
    return host_dir
