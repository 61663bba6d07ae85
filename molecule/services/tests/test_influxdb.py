"""The influxdb role's files on a host (the API tasks need a running InfluxDB: GitHub Actions job)."""

from __future__ import annotations

import json

ENV = "/opt/mov/influxdb/secrets/influxdb.env"


def test_setup_env_file_names_the_secret_files_and_holds_no_secret(host) -> None:  # type: ignore[no-untyped-def]
    env = host.file(ENV)
    assert env.uid == 8086 and env.mode == 0o600
    assert host.file("/opt/mov/influxdb/secrets").mode == 0o700
    values = dict(line.split("=", 1) for line in env.content_string.splitlines() if "=" in line)
    assert values["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert values["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"] == "/run/secrets/influxdb_admin_token"
    assert values["DOCKER_INFLUXDB_INIT_PASSWORD_FILE"] == "/run/secrets/influxdb_admin_password"
    assert "test-only" not in env.content_string
    assert "DOCKER_INFLUXDB_INIT_RETENTION" not in values


def test_admin_secrets_are_files_of_their_own(host) -> None:  # type: ignore[no-untyped-def]
    for name, value in (
        ("admin.token", "test-only-influxdb-admin-token-0123456789"),
        ("admin.password", "test-only-influxdb-password"),
    ):
        secret = host.file(f"/opt/mov/influxdb/secrets/{name}")
        assert (secret.uid, secret.mode, secret.content_string) == (8086, 0o400, value)


def test_data_directories_belong_to_influxdb(host) -> None:  # type: ignore[no-untyped-def]
    for path in ("/opt/mov/influxdb/data", "/opt/mov/influxdb/config"):
        assert host.file(path).uid == 8086 and host.file(path).mode == 0o700


def test_token_spec_holds_permissions_and_no_secret(host) -> None:  # type: ignore[no-untyped-def]
    content = host.file("/opt/mov/influxdb/tokens.json").content_string
    assert "test-only" not in content
    spec = json.loads(content)
    assert [t["name"] for t in spec["tokens"]] == ["telegraf", "grafana"]
    assert spec["tokens"][0]["permissions"] == [{"action": "write", "bucket": "mov_dados"}]


def test_token_tasks_did_not_run_without_influxdb(host) -> None:  # type: ignore[no-untyped-def]
    assert not host.file("/opt/mov/telegraf/secrets/influxdb.token").exists
