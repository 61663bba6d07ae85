"""The three environments share one config tree and differ only where they must."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import REPO, ansible_env

ENVS = ("local", "staging", "prod")


def inventory(env: str) -> dict[str, object]:
    out = subprocess.run(
        ["ansible-inventory", "-i", f"inventories/{env}", "--list", "--export"],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("env", ENVS)
def test_env_puts_its_hosts_in_group_mov(env: str) -> None:
    data = inventory(env)
    hosts = data["mov"]["hosts"]  # type: ignore[index]
    assert hosts, f"inventories/{env} has no host in group mov"


@pytest.mark.parametrize("env", ENVS)
def test_env_names_itself(env: str) -> None:
    group_vars = inventory(env)["mov"]["vars"]  # type: ignore[index]
    assert group_vars["mov_env"] == env


@pytest.mark.parametrize("env", ("staging", "prod"))
def test_remote_envs_take_admin_keys_from_the_vault(env: str) -> None:
    group_vars = inventory(env)["mov"]["vars"]  # type: ignore[index]
    assert "vault_mov_admin_ssh_keys" in group_vars["mov_admin_ssh_keys"]


def test_local_targets_the_box_through_docker() -> None:
    host = inventory("local")["_meta"]["hostvars"]["mov-box"]  # type: ignore[index]
    assert host["ansible_connection"] == "community.docker.docker"


def test_no_vault_or_secrets_file_is_tracked() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for path in tracked.splitlines():
        assert not path.endswith(("/vault.yml", "/secrets.yml")), path
