"""scripts/new_env.py: non-interactive (flags) and interactive (under tmux) creation of an environment.

Every run writes into a throwaway copy of the repository's layout (mov_render.new_workspace), never the checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from mov_render import Workspace, ansible_env, new_workspace

sys.path.append(str(REPO / "scripts"))
import new_env

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGxvY2FsLXRlc3Qta2V5LW5vdC1hLXJlYWwtb25lLTAwMDA operator@laptop"
# Not a documentation address (preflight refuses those) and never contacted: the preflight runs locally.
HOST = "192.168.50.10"


def _flags(ws: Workspace, env: str = "prod-eu", *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "scripts" / "new_env.py"),
        "--non-interactive",
        "--root",
        str(ws.root),
        "--env",
        env,
        "--host",
        HOST,
        "--domain",
        "mov.platform-test.net",
        "--domain",
        "mqtt.platform-test.net",
        "--acme-email",
        "ops@platform-test.net",
        "--admin-ssh-key",
        KEY,
        "--alert-email",
        "ops@platform-test.net",
        "--component",
        "grafana",
        "--backup-remote",
        "b2:mov-backups/prod-eu",
        "--smtp-host",
        "smtp.platform-test.net",
        "--smtp-user",
        "mov-alerts",
        "--smtp-password-file",
        str(_smtp_password_file(ws)),
        "--vault-password-file",
        str(ws.password_file),
        *extra,
    ]


SMTP_PASSWORD = "relay-password-for-the-test"


def _smtp_password_file(ws: Workspace) -> Path:
    path = ws.root / "smtp.password"
    path.write_text(SMTP_PASSWORD + "\n")
    path.chmod(0o600)
    return path


def _run(args: list[str], ws: Workspace) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=ws.root,
        env=ansible_env(ws.root / "ansible.cfg"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def created() -> tuple[Workspace, subprocess.CompletedProcess[str]]:
    ws = new_workspace()
    return ws, _run(_flags(ws), ws)


Created = tuple[Workspace, subprocess.CompletedProcess[str]]


def test_non_interactive_writes_the_env_like_staging(created: Created) -> None:
    ws, result = created
    assert result.returncode == 0, result.stdout + result.stderr
    env_dir = ws.inventory("prod-eu")
    staging = {p.relative_to(ws.inventory("staging")) for p in ws.inventory("staging").rglob("*.yml")}
    written = {p.relative_to(env_dir) for p in env_dir.rglob("*.yml")}
    assert staging <= written, staging - written
    host = _load(env_dir / "hosts.yml")["mov"]["hosts"]["mov-prod-eu-1"]
    assert host["ansible_host"] == HOST
    group = env_dir / "group_vars" / "mov"
    assert _load(group / "main.yml")["mov_env"] == "prod-eu"
    edge = _load(group / "edge.yml")
    assert edge["mov_domain"] == "mov.platform-test.net"
    assert edge["mov_extra_domains"] == ["mqtt.platform-test.net"]
    assert edge["mov_acme_directory"] == new_env.ACME_DIRECTORIES["production"]
    services = _load(group / "services.yml")
    assert services["mov_alert_contacts"]["emails"] == ["ops@platform-test.net"]
    assert services["mov_smtp"] == {
        "host": "smtp.platform-test.net",
        "port": 587,
        "user": "mov-alerts",
        "from_address": "mov@{{ mov_domain }}",
    }
    assert _load(group / "stack.yml")["mov_stack_services"] == ["mosquitto", "telegraf", "influxdb", "grafana"]
    assert _load(group / "backup.yml")["mov_backup_remote"] == "b2:mov-backups/prod-eu"
    plain_files = [str(p) for p in env_dir.rglob("*.yml") if p.name != "vault.yml"]
    lint = subprocess.run(
        ["yamllint", "--strict", "-c", str(REPO / ".yamllint"), *plain_files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout


def test_vault_is_encrypted_private_and_holds_keys_and_secrets(
    created: tuple[Workspace, subprocess.CompletedProcess[str]],
) -> None:
    ws, result = created
    vault = ws.inventory("prod-eu") / "group_vars" / "mov" / "vault.yml"
    assert vault.read_bytes().startswith(b"$ANSIBLE_VAULT;"), "the vault is not encrypted"
    assert vault.stat().st_mode & 0o777 == 0o600
    plain = yaml.safe_load(ws.vault_plaintext("prod-eu"))
    assert plain["vault_mov_admin_ssh_keys"] == [KEY]
    assert plain["vault_mov_smtp_password"] == SMTP_PASSWORD
    store = plain["vault_mov_secrets"]
    assert set(store["mqtt"]) >= {"telegraf", "analytics", "verify", "industria_abc/sensor_001"}
    values = [v for v in store.values() if isinstance(v, str)] + list(store["mqtt"].values()) + [SMTP_PASSWORD]
    assert all(len(v) >= 16 for v in values)
    output = result.stdout + result.stderr
    leaked = [v for v in values if v in output]
    assert not leaked, "a secret was printed"


def test_the_new_env_passes_preflight(created: tuple[Workspace, subprocess.CompletedProcess[str]]) -> None:
    """Inventory, vault and cross-checks of the new env hold; run on this machine (no DNS, no port check here)."""
    ws, _ = created
    result = _run(
        [
            "ansible-playbook",
            "playbooks/preflight.yml",
            "-i",
            "inventories/prod-eu",
            "--vault-password-file",
            str(ws.password_file),
            "-e",
            f"ansible_connection=local ansible_python_interpreter={sys.executable} ansible_become=false",
            "-e",
            '{"mov_preflight_ports": [], "mov_preflight_check_dns": false}',
        ],
        ws,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_an_existing_env_is_kept_without_force(created: tuple[Workspace, subprocess.CompletedProcess[str]]) -> None:
    ws, _ = created
    vault = ws.inventory("prod-eu") / "group_vars" / "mov" / "vault.yml"
    before = hashlib.sha256(vault.read_bytes()).hexdigest()
    again = _run(_flags(ws, "prod-eu", "--host", "192.168.50.99"), ws)
    assert again.returncode != 0
    assert "inventories/prod-eu exists; --force replaces it" in again.stderr
    assert hashlib.sha256(vault.read_bytes()).hexdigest() == before
    forced = _run(_flags(ws, "prod-eu", "--host", "192.168.50.99", "--force"), ws)
    assert forced.returncode == 0, forced.stderr
    hosts = _load(ws.inventory("prod-eu") / "hosts.yml")["mov"]["hosts"]
    assert hosts["mov-prod-eu-1"]["ansible_host"] == "192.168.50.99"
    assert hashlib.sha256(vault.read_bytes()).hexdigest() != before
    assert not list((ws.root / "inventories").glob(".new-env-*")), "a staging directory was left behind"


def test_a_missing_password_file_is_created_private(tmp_path: Path) -> None:
    password = tmp_path / "fresh.vault-password"
    assert new_env.ensure_password_file(password)
    assert password.stat().st_mode & 0o777 == 0o600
    assert len(password.read_text().strip()) >= 40
    assert not new_env.ensure_password_file(password)


GOOD_FLAGS: dict[str, str | None] = {
    "env": "prod-eu",
    "host": HOST,
    "ssh_user": "mov",
    "domains": "mov.platform-test.net",
    "acme_email": "ops@platform-test.net",
    "acme_ca": "production",
    "timezone": "Etc/UTC",
    "components": "grafana",
    "alert_webhook": "",
    "alert_emails": "ops@platform-test.net",
    "smtp_host": "smtp.platform-test.net",
    "smtp_port": "587",
    "smtp_user": "",
    "backup_remote": "",
    "admin_ssh_keys": KEY,
    "vault_password_file": "/nonexistent/pw",
}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("env", "local", "'local' is the VPS in a box"),
        ("env", "Prod EU", "is not an environment name"),
        ("host", "not an address!", "neither an IP address nor a DNS name"),
        ("host", "999.1.1.1", "neither an IP address nor a DNS name"),
        ("ssh_user", "root", "other than root"),
        ("domains", "mov_platform", "is not a fully qualified DNS name"),
        ("domains", "a.example.net,a.example.net", "duplicate domain"),
        ("acme_email", "ops-at-example", "is not an e-mail address"),
        ("acme_ca", "beta", "choose one of production, staging"),
        ("timezone", "../etc/passwd", "is not an IANA time zone name"),
        ("components", "grafana,kibana", "unknown component(s) kibana"),
        ("alert_webhook", "ftp://hooks", "is not an http(s) URL"),
        ("alert_emails", "ops@example.net,nobody", "'nobody' is not an e-mail address"),
        ("backup_remote", "/srv/backups", "is not an rclone remote"),
        ("smtp_host", "smtp relay", "is not a mail relay's host name"),
        ("smtp_port", "99999", "is not a TCP port number"),
        ("admin_ssh_keys", "/nonexistent/id_ed25519.pub", "neither an SSH public key nor a file"),
        ("gateways", "gw-sul=10.0.0.2", "is not name=address/site"),
        ("gateways", "gw-sul=10.0.0.2/fabrica sul", "the site 'fabrica sul' contains a space"),
        ("gateways", "gw-a=10.0.0.2/sul,gw-b=10.0.0.3/sul", "each gateway needs its own site"),
    ],
)
def test_a_bad_flag_fails_naming_it(key: str, value: str, expected: str) -> None:
    with pytest.raises(SystemExit) as exc:
        new_env.collect({**GOOD_FLAGS, key: value}, interactive=False)
    message = str(exc.value)
    assert f"--{key.replace('_', '-')}:" in message
    assert expected in message


def test_gateways_go_into_the_edge_group_with_their_site() -> None:
    answers = new_env.collect({**GOOD_FLAGS, "gateways": "gw-sul=10.0.0.2/fabrica_sul"}, interactive=False)
    edge = yaml.safe_load(new_env.inventory_files(answers)["hosts.yml"])["edge"]["hosts"]
    assert edge["gw-sul"]["ansible_host"] == "10.0.0.2"
    assert edge["gw-sul"]["mov_edge_site"] == "fabrica_sul"
    assert edge["gw-sul"]["mov_edge_devices"] == []


def test_an_env_with_gateways_is_written_and_their_accounts_follow_their_devices() -> None:
    """A new gateway has no devices yet: new-env still writes the env; once the user lists its devices,
    platform_secrets.py generates the gateway's account and its devices' passwords (hosts.yml's comment)."""
    ws = new_workspace()
    out = _run(_flags(ws, "plants", "--gateway", "gw-sul=192.168.50.20/fabrica_sul"), ws)
    assert out.returncode == 0, out.stdout + out.stderr
    inventory = ws.root / "inventories" / "plants"
    hosts = _load(inventory / "hosts.yml")
    hosts["edge"]["hosts"]["gw-sul"]["mov_edge_devices"] = [
        {"name": "caldeira_01", "client": "industria_abc", "site": "caldeira", "type": "temperatura"}
    ]
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    secrets = [sys.executable, str(REPO / "scripts" / "platform_secrets.py"), "--root", str(ws.root)]
    out = _run([*secrets, "--env", "plants", "--vault-password-file", str(ws.password_file)], ws)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "gw_fabrica_sul" in out.stdout and "industria_abc/caldeira_01" in out.stdout, out.stdout


def test_a_private_key_file_is_refused(tmp_path: Path) -> None:
    private = tmp_path / "id_ed25519"
    private.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    with pytest.raises(new_env.InvalidAnswer, match="is it the private key"):
        new_env.ssh_public_keys(str(private))


def test_e_mail_contacts_need_a_relay_and_a_relay_user_its_password() -> None:
    with pytest.raises(SystemExit, match="--smtp-host"):
        new_env.collect({**GOOD_FLAGS, "smtp_host": None}, interactive=False)
    with pytest.raises(SystemExit, match="--smtp-password-file"):
        new_env.collect({**GOOD_FLAGS, "smtp_user": "mov-alerts"}, interactive=False)
    answers = new_env.collect({**GOOD_FLAGS, "alert_emails": "", "smtp_host": None}, interactive=False)
    assert (answers.smtp_host, answers.smtp_password) == ("", "")


def test_non_interactive_names_every_missing_flag() -> None:
    with pytest.raises(SystemExit) as exc:
        new_env.collect({"env": "prod-eu"}, interactive=False)
    message = str(exc.value)
    for flag in ("--host", "--domains", "--acme-email", "--admin-ssh-keys"):
        assert flag in message
    assert "--ssh-user" not in message, "a flag with a valid default is not missing"


def test_a_question_is_asked_again_until_the_answer_is_valid() -> None:
    answers = iter(["Bad Name", "local", "", "prod-eu"])
    prompts: list[str] = []
    notes: list[str] = []

    def read(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    value = new_env.ask(new_env.QUESTIONS[0], {}, read, notes.append)
    assert value == "prod-eu"
    assert len(prompts) == 4
    assert len(notes) == 3 and all(n.startswith("  invalid: ") for n in notes)


# --- interactive, in a real terminal ------------------------------------------------------------------------


class Terminal:
    """A tmux session of its own (own server socket), driven with send-keys and read with capture-pane."""

    def __init__(self, socket: str, command: list[str], env: dict[str, str]) -> None:
        self.tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
        exports = [f"-e{k}={v}" for k, v in env.items()]
        subprocess.run(
            [
                *self.tmux,
                "new-session",
                "-d",
                "-s",
                "new-env",
                "-x",
                "220",
                "-y",
                "60",
                *exports,
                " ".join(command) + "; echo EXIT=$?; sleep 60",
            ],
            check=True,
        )

    def screen(self) -> str:
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-J", "-S", "-200", "-t", "new-env"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} (x{count}) never appeared; the screen:\n{self.screen()}")

    def answer(self, prompt: str, text: str, count: int = 1) -> None:
        self.wait_for(prompt, count)
        if text:
            subprocess.run([*self.tmux, "send-keys", "-t", "new-env", "-l", text], check=True)
        subprocess.run([*self.tmux, "send-keys", "-t", "new-env", "Enter"], check=True)

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, check=False)


def test_interactive_under_tmux(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (apt-get install tmux; .ci/run installs it)")
    ws = new_workspace()
    password = tmp_path / "prod-eu.vault-password"  # missing: new-env creates it
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ws.root / "ansible.cfg"),
        "HOME": str(tmp_path),
    }
    terminal = Terminal(
        f"mov-new-env-{os.getpid()}",
        [sys.executable, str(REPO / "scripts" / "new_env.py"), "--root", str(ws.root)],
        env,
    )
    try:
        terminal.answer("Environment name:", "Prod EU")
        terminal.answer("Environment name:", "prod-eu", count=2)
        terminal.answer("Host address:", HOST)
        terminal.answer("Admin SSH user [mov]:", "")
        terminal.answer("Domains (first is", "mov.platform-test.net, mqtt.platform-test.net")
        terminal.answer("ACME (Let's Encrypt) e-mail:", "ops@platform-test.net")
        terminal.answer("Let's Encrypt CA (production/staging) [production]:", "")
        terminal.answer("Time zone [Etc/UTC]:", "America/Sao_Paulo")
        terminal.answer("Optional components", "analytics")
        terminal.answer("Alert webhook URL", "https://hooks.platform-test.net/mov")
        terminal.answer("Alert e-mails (comma-separated, empty for none) [ops@platform-test.net]:", "")
        terminal.answer("Mail relay for the alert e-mails (host):", "smtp.platform-test.net")
        terminal.answer("Mail relay port [587]:", "")
        terminal.answer("Mail relay user (empty: no login):", "mov-alerts")
        terminal.answer("Mail relay password (not shown):", SMTP_PASSWORD)
        terminal.answer("Backup remote", "")
        terminal.answer("Admin SSH public keys", KEY)
        terminal.answer("Edge gateways", "")
        terminal.answer("Vault password file", str(password))
        terminal.answer("Write inventories/prod-eu? [Y/n]:", "")
        screen = terminal.wait_for("EXIT=", timeout=120)
    finally:
        terminal.close()
    assert "invalid: 'Prod EU' is not an environment name" in screen
    assert "EXIT=0" in screen, screen
    group = ws.inventory("prod-eu") / "group_vars" / "mov"
    assert _load(group / "main.yml")["mov_timezone"] == "America/Sao_Paulo"
    assert _load(group / "stack.yml")["mov_stack_services"] == ["mosquitto", "telegraf", "influxdb", "analytics"]
    assert _load(group / "services.yml")["mov_alert_contacts"] == {
        "webhook_url": "https://hooks.platform-test.net/mov",
        "emails": ["ops@platform-test.net"],
    }
    assert _load(group / "edge.yml")["mov_extra_domains"] == ["mqtt.platform-test.net"]
    assert password.stat().st_mode & 0o777 == 0o600
    assert (group / "vault.yml").read_bytes().startswith(b"$ANSIBLE_VAULT;")
    assert password.read_text().strip() not in screen, "the vault password was shown"
    assert SMTP_PASSWORD not in screen, "the relay's password was echoed"
    assert _load(group / "services.yml")["mov_smtp"]["user"] == "mov-alerts"
    vault = new_env.mov_secrets._vault(password)
    plain = yaml.safe_load(vault.decrypt((group / "vault.yml").read_bytes()).decode())
    assert plain["vault_mov_smtp_password"] == SMTP_PASSWORD
