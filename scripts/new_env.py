#!/usr/bin/env python3
"""Create a deployment environment: inventories/<env>/ (hosts, group_vars) and its encrypted vault.

Interactive (asks each question, with a default, until the answer is valid):

    scripts/new-env

Non-interactive (CI; every answer a flag, a missing or invalid one is an error):

    scripts/new-env --non-interactive --env prod-eu --host 198.51.100.7 --domain mov.example.net \\
        --acme-email ops@example.net --admin-ssh-key-file ~/.ssh/id_ed25519.pub \\
        --alert-email ops@example.net --vault-password-file ~/.mov-prod-eu.vault-password

The vault gets the admins' public keys and freshly generated secrets (scripts/platform_secrets.py); when the vault
password file does not exist yet, a random password is written to it (0600). An existing environment is never
overwritten without --force. Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import ipaddress
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import config_tree
import platform_secrets as mov_secrets
import yaml

REPO = Path(__file__).resolve().parent.parent

# Services that may be left out; the others are the platform itself.
OPTIONAL_COMPONENTS = ("grafana", "analytics")
CORE_COMPONENTS = ("mosquitto", "telegraf", "influxdb")
ACME_DIRECTORIES = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
ENV_PATTERN = config_tree.ENV_PATTERN
USER_PATTERN = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
URL_PATTERN = re.compile(r"^https?://\S+$")
# An rclone remote and path, e.g. "b2:mov-backups/prod" or "sftp-box:backups".
BACKUP_REMOTE_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_. -]*:\S*$")
SSH_KEY_PATTERN = re.compile(
    r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r"(-cert-v01@openssh\.com)? [A-Za-z0-9+/]+=*( .*)?$"
)


class InvalidAnswer(ValueError):
    """An answer that does not fit; the message says why and what would."""


# --- validation (each returns the normalised value or raises InvalidAnswer) ---------------------------------


def env_name(value: str) -> str:
    value = value.strip()
    if value == "local":
        raise InvalidAnswer("'local' is the VPS in a box (inventories/local), not a deployment environment")
    if not ENV_PATTERN.match(value):
        raise InvalidAnswer(f"{value!r} is not an environment name: lowercase letters, digits and '-', e.g. prod-eu")
    return value


def host_address(value: str) -> str:
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if config_tree.DOMAIN_PATTERN.match(value) and "." in value and not value.replace(".", "").isdigit():
        return value
    raise InvalidAnswer(f"{value!r} is neither an IP address nor a DNS name")


def ssh_user(value: str) -> str:
    value = value.strip()
    if value == "root" or not USER_PATTERN.match(value):
        raise InvalidAnswer(f"{value!r} must be a Linux user name other than root (the admin account the host gets)")
    return value


def domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not config_tree.DOMAIN_PATTERN.match(value) or "." not in value:
        raise InvalidAnswer(f"{value!r} is not a fully qualified DNS name such as mov.example.com")
    return value


def domains(value: str) -> list[str]:
    names = [domain(v) for v in re.split(r"[,\s]+", value.strip()) if v]
    if not names:
        raise InvalidAnswer("at least one domain is needed (the first is the platform's name)")
    if len(set(names)) != len(names):
        raise InvalidAnswer(f"duplicate domain in {', '.join(names)}")
    return names


def email(value: str) -> str:
    value = value.strip()
    if not EMAIL_PATTERN.match(value):
        raise InvalidAnswer(f"{value!r} is not an e-mail address")
    return value


def emails(value: str) -> list[str]:
    return [email(v) for v in re.split(r"[,\s]+", value.strip()) if v]


def webhook_url(value: str) -> str:
    value = value.strip()
    if value and not URL_PATTERN.match(value):
        raise InvalidAnswer(f"{value!r} is not an http(s) URL (or leave it empty)")
    return value


def components(value: str) -> list[str]:
    chosen = [v for v in re.split(r"[,\s]+", value.strip()) if v and v != "none"]
    unknown = sorted(set(chosen) - set(OPTIONAL_COMPONENTS))
    if unknown:
        raise InvalidAnswer(f"unknown component(s) {', '.join(unknown)}; optional: {', '.join(OPTIONAL_COMPONENTS)}")
    return [c for c in OPTIONAL_COMPONENTS if c in chosen]


def backup_remote(value: str) -> str:
    value = value.strip()
    if value and not BACKUP_REMOTE_PATTERN.match(value):
        raise InvalidAnswer(f"{value!r} is not an rclone remote such as b2:mov-backups/prod (or leave it empty)")
    return value


def ssh_public_keys(value: str) -> list[str]:
    """Public keys, or files holding them (one key a line), separated by commas."""
    keys: list[str] = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        if SSH_KEY_PATTERN.match(item):
            keys.append(item)
            continue
        path = Path(item).expanduser()
        if not path.is_file():
            raise InvalidAnswer(f"{item!r} is neither an SSH public key nor a file holding one")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not lines or not all(SSH_KEY_PATTERN.match(line) for line in lines):
            raise InvalidAnswer(f"{item} does not hold SSH public keys (is it the private key? use the .pub file)")
        keys += lines
    if not keys:
        raise InvalidAnswer("at least one admin SSH public key is needed: password logins are turned off")
    return keys


def gateways(value: str) -> list[dict[str, str]]:
    """ "name=address/site, ...": one edge gateway per plant (docs/plants.md)."""
    found: list[dict[str, str]] = []
    for item in (v.strip() for v in value.split(",") if v.strip()):
        name, _, rest = item.partition("=")
        address, _, site = rest.rpartition("/")
        if not (name and address and site) or not config_tree.DOMAIN_PATTERN.match(name):
            raise InvalidAnswer(f"{item!r} is not name=address/site, e.g. gw-sul=192.0.2.20/fabrica_sul")
        why = config_tree._why_bad_name(site)
        if why:
            raise InvalidAnswer(f"{item!r}: the site {why}")
        found.append({"name": name, "address": host_address(address), "site": site})
    for key in ("name", "site"):
        values = [g[key] for g in found]
        if len(set(values)) != len(values):
            raise InvalidAnswer(f"each gateway needs its own {key}")
    return found


def smtp_host(value: str) -> str:
    value = value.strip().lower()
    if not config_tree.DOMAIN_PATTERN.match(value) or "." not in value:
        raise InvalidAnswer(f"{value!r} is not a mail relay's host name such as smtp.example.net")
    return value


def port(value: str) -> int:
    if not value.strip().isdigit() or not 0 < int(value) < 65536:
        raise InvalidAnswer(f"{value!r} is not a TCP port number")
    return int(value)


def smtp_user(value: str) -> str:
    value = value.strip()
    if re.search(r"\s", value):
        raise InvalidAnswer("a user name without spaces")
    return value


def password(value: str) -> str:
    if not value.strip():
        raise InvalidAnswer("the relay user needs its password")
    return value.strip()


def timezone(value: str) -> str:
    value = value.strip()
    if not re.match(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$", value):
        raise InvalidAnswer(f"{value!r} is not an IANA time zone name such as Etc/UTC or America/Sao_Paulo")
    return value


# --- the answers ---------------------------------------------------------------------------------------------


@dataclass
class Answers:
    env: str
    host: str
    ssh_user: str
    domains: list[str]
    acme_email: str
    acme_ca: str
    timezone: str
    components: list[str]
    alert_webhook: str
    alert_emails: list[str]
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str
    backup_remote: str
    admin_ssh_keys: list[str]
    gateways: list[dict[str, str]]
    vault_password_file: Path


@dataclass(frozen=True)
class Question:
    key: str
    prompt: str
    check: Callable[[str], Any]
    default: Callable[[dict[str, Any]], str]
    help: str
    # Asked only when this holds for the answers so far; otherwise the answer is empty.
    when: Callable[[dict[str, Any]], bool] = lambda a: True
    # Read without echo, never shown, never a command-line flag (--smtp-password-file or the environment).
    secret: bool = False


def _first_key_file() -> str:
    for name in ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"):
        if (Path.home() / ".ssh" / name).is_file():
            return f"~/.ssh/{name}"
    return ""


QUESTIONS = (
    Question("env", "Environment name", env_name, lambda a: "", "e.g. prod-eu; becomes inventories/<name>/"),
    Question("host", "Host address", host_address, lambda a: "", "the VPS's public IP address or DNS name"),
    Question(
        "ssh_user", "Admin SSH user", ssh_user, lambda a: "mov", "the account Ansible creates and then deploys as"
    ),
    Question(
        "domains",
        "Domains (first is the platform's name, comma-separated)",
        domains,
        lambda a: "",
        "each must resolve to the host",
    ),
    Question("acme_email", "ACME (Let's Encrypt) e-mail", email, lambda a: "", "expiry warnings go here"),
    Question(
        "acme_ca",
        "Let's Encrypt CA (production/staging)",
        lambda v: _choice(v, ACME_DIRECTORIES),
        lambda a: "production" if str(a.get("env", "")).startswith("prod") else "staging",
        "staging issues untrusted certificates, with generous rate limits",
    ),
    Question("timezone", "Time zone", timezone, lambda a: "Etc/UTC", "IANA name"),
    Question(
        "components",
        f"Optional components ({', '.join(OPTIONAL_COMPONENTS)}; 'none' for none)",
        components,
        lambda a: ",".join(OPTIONAL_COMPONENTS),
        "mosquitto, telegraf and influxdb always run",
    ),
    Question(
        "alert_webhook",
        "Alert webhook URL (empty for none)",
        webhook_url,
        lambda a: "",
        "receives the > critical temperature alerts",
    ),
    Question(
        "alert_emails",
        "Alert e-mails (comma-separated, empty for none)",
        emails,
        lambda a: str(a.get("acme_email", "")),
        "Grafana's alert contact point",
    ),
    Question(
        "smtp_host",
        "Mail relay for the alert e-mails (host)",
        smtp_host,
        lambda a: "",
        "the submission server (STARTTLS)",
        when=lambda a: bool(a.get("alert_emails")),
    ),
    Question(
        "smtp_port", "Mail relay port", port, lambda a: "587", "1-65535", when=lambda a: bool(a.get("alert_emails"))
    ),
    Question(
        "smtp_user",
        "Mail relay user (empty: no login)",
        smtp_user,
        lambda a: "",
        "the relay account",
        when=lambda a: bool(a.get("alert_emails")),
    ),
    Question(
        "smtp_password",
        "Mail relay password (not shown)",
        password,
        lambda a: "",
        "stored in the vault as vault_mov_smtp_password",
        when=lambda a: bool(a.get("smtp_user")),
        secret=True,
    ),
    Question(
        "backup_remote",
        "Backup remote (rclone remote:path, empty for none)",
        backup_remote,
        lambda a: "",
        "where the encrypted off-site backups go",
    ),
    Question(
        "admin_ssh_keys",
        "Admin SSH public keys (keys or .pub files, comma-separated)",
        ssh_public_keys,
        lambda a: _first_key_file(),
        "stored in the vault",
    ),
    Question(
        "gateways",
        "Edge gateways, one per plant (name=address/site, comma-separated, empty for none)",
        gateways,
        lambda a: "",
        "each plant's devices go under its mov_edge_devices in hosts.yml (docs/plants.md)",
    ),
    Question(
        "vault_password_file",
        "Vault password file (created with a random password if missing)",
        lambda v: Path(v.strip()).expanduser() if v.strip() else _raise("a path is needed"),
        lambda a: f"~/.mov-{a.get('env', 'env')}.vault-password",
        "keep it outside the repository",
    ),
)


def _choice(value: str, choices: dict[str, str]) -> str:
    value = value.strip()
    if value not in choices:
        raise InvalidAnswer(f"{value!r}: choose one of {', '.join(choices)}")
    return value


def _raise(message: str) -> Any:
    raise InvalidAnswer(message)


def ask(question: Question, answers: dict[str, Any], read: Callable[[str], str], write: Callable[[str], object]) -> Any:
    """Ask until the answer is valid; an empty answer takes the default."""
    default = question.default(answers)
    while True:
        prompt = f"{question.prompt} [{default}]: " if default else f"{question.prompt}: "
        raw = getpass.getpass(prompt) if question.secret and read is input else read(prompt)
        try:
            return question.check(raw if raw.strip() else default)
        except InvalidAnswer as exc:
            write(f"  invalid: {exc} ({question.help})\n")


def collect(
    given: dict[str, str | None],
    interactive: bool,
    read: Callable[[str], str] = input,
    write: Callable[[str], object] = sys.stderr.write,
) -> Answers:
    """The answers: the flags' values (checked), and for the others the question or, non-interactive, the default."""
    answers: dict[str, Any] = {}
    missing: list[str] = []
    for question in QUESTIONS:
        raw = given.get(question.key)
        if not question.when(answers):
            answers[question.key] = 0 if question.key == "smtp_port" else ""
        elif raw is not None:
            try:
                answers[question.key] = question.check(raw)
            except InvalidAnswer as exc:
                raise SystemExit(f"new-env: {_flag(question)}: {exc}") from None
        elif interactive:
            answers[question.key] = ask(question, answers, read, write)
        else:
            default = question.default(answers)
            try:
                answers[question.key] = question.check(default)
            except InvalidAnswer:
                missing.append(f"{_flag(question)} ({question.help})")
    if missing:
        raise SystemExit("new-env: --non-interactive needs " + "; ".join(missing))
    return Answers(**answers)


def _flag(question: Question) -> str:
    return "--smtp-password-file" if question.secret else "--" + question.key.replace("_", "-")


# --- the files -----------------------------------------------------------------------------------------------


class _IndentedDumper(yaml.SafeDumper):
    """Block sequences indented under their key, as yamllint (indent-sequences) wants them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _yaml(header: str, data: dict[str, Any]) -> str:
    body = yaml.dump(data, Dumper=_IndentedDumper, default_flow_style=False, sort_keys=False, width=1000)
    return "---\n" + "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines()) + body


def inventory_files(a: Answers) -> dict[str, str]:
    """Relative path -> content, mirroring inventories/staging (hosts.yml, group_vars/mov/*.yml)."""
    services = list(CORE_COMPONENTS) + a.components
    hosts = {
        "mov": {
            "hosts": {
                f"mov-{a.env}-1": {
                    "ansible_host": a.host,
                    "ansible_user": "{{ mov_admin_user }}",
                    "ansible_become": True,
                }
            }
        }
    }
    if a.gateways:
        hosts["edge"] = {
            "hosts": {
                g["name"]: {
                    "ansible_host": g["address"],
                    "ansible_user": "{{ mov_admin_user }}",
                    "ansible_become": True,
                    "mov_edge_site": g["site"],
                    "mov_edge_devices": [],
                }
                for g in a.gateways
            }
        }
    plants = (
        "\nEach gateway's devices go under its mov_edge_devices (name, client, site, type): the preflight refuses a"
        "\ngateway without any. Then scripts/platform_secrets.py --env <env> generates the gateway's and its devices'"
        "\npasswords. ansible-playbook site.yml --limit <gateway> deploys one gateway alone."
        if a.gateways
        else ""
    )
    return {
        "hosts.yml": _yaml(
            f"The {a.env} VPS (made by scripts/new-env). The first run on a fresh VPS uses the provider's initial\n"
            f"user: ansible-playbook site.yml -i inventories/{a.env} -e ansible_user=root --vault-password-file FILE"
            + plants,
            hosts,
        ),
        "group_vars/mov/main.yml": _yaml(
            "The environment's settings; the admins' keys are in the vault.",
            {
                "mov_env": a.env,
                "mov_timezone": a.timezone,
                "mov_admin_user": a.ssh_user,
                "mov_admin_ssh_keys": "{{ vault_mov_admin_ssh_keys }}",
            },
        ),
        "group_vars/mov/edge.yml": _yaml(
            "Must resolve to the host before the first run (HTTP-01 through port 80).",
            {
                "mov_domain": a.domains[0],
                "mov_extra_domains": a.domains[1:],
                "mov_acme_email": a.acme_email,
                "mov_acme_directory": ACME_DIRECTORIES[a.acme_ca],
            },
        ),
        "group_vars/mov/services.yml": _yaml(
            "The env's overrides of the config tree (group_vars/all/services.yml)."
            + ("\nThe relay's password is vault_mov_smtp_password in this env's vault." if a.smtp_password else ""),
            {"mov_alert_contacts": {"webhook_url": a.alert_webhook, "emails": a.alert_emails}}
            | (
                {
                    "mov_smtp": {
                        "host": a.smtp_host,
                        "port": a.smtp_port,
                        "user": a.smtp_user,
                        "from_address": "mov@{{ mov_domain }}",
                    }
                }
                if a.smtp_host
                else {}
            ),
        ),
        "group_vars/mov/stack.yml": _yaml(
            "The services that run here (group_vars/all/stack.yml).", {"mov_stack_services": services}
        ),
        "group_vars/mov/backup.yml": _yaml(
            "Where the encrypted off-site backups go (an rclone remote:path; empty: none).",
            {"mov_backup_remote": a.backup_remote},
        ),
    }


def vault_plaintext(a: Answers) -> str:
    return _yaml(
        f"The {a.env} env's vault (ansible-vault). scripts/platform_secrets.py manages the generated block.",
        {"vault_mov_admin_ssh_keys": a.admin_ssh_keys}
        | ({"vault_mov_smtp_password": a.smtp_password} if a.smtp_password else {}),
    )


def ensure_password_file(path: Path) -> bool:
    """Create the vault password file with a random password when it is missing; True when created."""
    if path.exists():
        if path.stat().st_size == 0:
            raise SystemExit(f"new-env: the vault password file {path} is empty")
        return False
    password = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    mov_secrets.write_private(path, (password + "\n").encode())
    return True


def create(a: Answers, root: Path, force: bool) -> list[str]:
    """Write inventories/<env>/ and its vault; returns the generated secrets' names."""
    target = root / "inventories" / a.env
    if target.exists() and not force:
        raise SystemExit(f"new-env: inventories/{a.env} exists; --force replaces it (its vault and secrets too)")
    created_password = ensure_password_file(a.vault_password_file)
    staging = Path(tempfile.mkdtemp(prefix=f".new-env-{a.env}-", dir=root / "inventories"))
    try:
        for relative, content in inventory_files(a).items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        vault = mov_secrets._vault(a.vault_password_file)
        mov_secrets.write_private(
            staging / "group_vars" / "mov" / "vault.yml", vault.encrypt(vault_plaintext(a).encode())
        )
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_password:
            a.vault_password_file.unlink(missing_ok=True)
        raise
    # The secrets the tree needs, generated into the vault's managed block by scripts/platform_secrets.py. A new
    # gateway has no devices yet (the user lists them next): its account's secrets come with the next
    # platform_secrets.py run, as the hosts.yml comment says; the tree's check would refuse it now.
    tree = mov_secrets.load_tree(a.env, root, a.vault_password_file)
    tree["mov_edge_gateways"] = [g for g in config_tree.gateways(tree) if g.get("devices")]
    changed: list[str] = mov_secrets.run(a.env, tree, [], a.vault_password_file, root)
    return changed


def main(argv: Sequence[str] | None = None, read: Callable[[str], str] = input) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--non-interactive", action="store_true", help="never ask; every answer from a flag")
    parser.add_argument("--force", action="store_true", help="replace an existing inventories/<env>")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository (default: this script's)")
    for question in QUESTIONS:
        flag = "--" + question.key.replace("_", "-")
        if question.secret:
            continue
        if question.key in ("domains", "alert_emails", "admin_ssh_keys", "components", "gateways"):
            parser.add_argument(flag, action="append", help=f"{question.prompt}; repeatable ({question.help})")
        else:
            parser.add_argument(flag, help=f"{question.prompt} ({question.help})")
    parser.add_argument("--domain", dest="domains", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--alert-email", dest="alert_emails", action="append", help=argparse.SUPPRESS)
    parser.add_argument(
        "--admin-ssh-key", "--admin-ssh-key-file", dest="admin_ssh_keys", action="append", help=argparse.SUPPRESS
    )
    parser.add_argument("--component", dest="components", action="append", help=argparse.SUPPRESS)
    parser.add_argument("--gateway", dest="gateways", action="append", help=argparse.SUPPRESS)
    parser.add_argument(
        "--smtp-password-file",
        type=Path,
        help="a file holding the mail relay's password (or set MOV_SMTP_PASSWORD); never a flag itself",
    )
    args = parser.parse_args(argv)
    given: dict[str, str | None] = {}
    for question in QUESTIONS:
        value = None if question.secret else getattr(args, question.key)
        given[question.key] = ",".join(value) if isinstance(value, list) else value
    if args.smtp_password_file is not None:
        given["smtp_password"] = args.smtp_password_file.expanduser().read_text().strip()
    elif os.environ.get("MOV_SMTP_PASSWORD"):
        given["smtp_password"] = os.environ["MOV_SMTP_PASSWORD"]
    interactive = not args.non_interactive
    if interactive and not sys.stdin.isatty():
        print("new-env: stdin is not a terminal; give every answer as a flag with --non-interactive", file=sys.stderr)
        return 2
    answers = collect(given, interactive, read=read)
    if interactive:
        for key, value in asdict(answers).items():
            if key == "smtp_password":
                continue
            shown = f"{len(value)} key(s)" if key == "admin_ssh_keys" else value
            print(f"  {key:20} {shown}", file=sys.stderr)
        if read(f"Write inventories/{answers.env}? [Y/n]: ").strip().lower() not in ("", "y", "yes"):
            print("new-env: nothing written", file=sys.stderr)
            return 1
    try:
        changed = create(answers, args.root.resolve(), args.force)
    except mov_secrets.SecretsError as exc:
        print(f"new-env: {exc}", file=sys.stderr)
        return 1
    print(
        f"new-env: wrote inventories/{answers.env}/ (hosts.yml, group_vars/mov/) and its encrypted vault "
        f"with {len(changed)} generated secrets and {len(answers.admin_ssh_keys)} admin key(s)."
    )
    print(
        f"  check: ansible-playbook playbooks/preflight.yml -i inventories/{answers.env} "
        f"--vault-password-file {answers.vault_password_file}"
    )
    print(
        f"  first deploy: ansible-playbook site.yml -i inventories/{answers.env} -e ansible_user=root "
        f"--vault-password-file {answers.vault_password_file}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
