"""The logs role's files on a host: owners and modes, a Loki config that parses with the retention it was given, an
Alloy config with the docker and journal sources and Loki on the compose network, nothing listening."""

from __future__ import annotations

import json
import re

DIR = "/opt/mov/logs"
LOKI = f"{DIR}/loki/loki.yaml"
ALLOY = f"{DIR}/alloy/config.alloy"


def test_files_belong_to_the_services_users_and_are_not_world_readable(host) -> None:  # type: ignore[no-untyped-def]
    assert host.file(DIR).is_directory and host.file(DIR).user == "root" and host.file(DIR).mode == 0o755
    for path, uid, mode in (
        (f"{DIR}/loki", 10001, 0o750),
        (LOKI, 10001, 0o640),
        (f"{DIR}/alloy", 473, 0o750),
        (ALLOY, 473, 0o640),
        (f"{DIR}/alloy/data", 473, 0o750),
    ):
        item = host.file(path)
        assert item.exists, path
        assert (item.uid, item.gid, item.mode) == (uid, uid, mode), path


def test_loki_config_parses_with_the_retention_it_was_given(host) -> None:  # type: ignore[no-untyped-def]
    # The host's own parser (python3-yaml, installed by the role for the validate: step).
    config = json.loads(
        host.check_output(f"python3 -c 'import json, yaml; print(json.dumps(yaml.safe_load(open(\"{LOKI}\"))))'")
    )
    assert config["limits_config"]["retention_period"] == "504h"
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    (period,) = config["schema_config"]["configs"]
    assert (period["store"], period["schema"], period["object_store"]) == ("tsdb", "v13", "filesystem")
    assert config["common"]["path_prefix"] == "/loki"


def test_alloy_reads_docker_and_the_journal_and_writes_to_loki_inside(host) -> None:  # type: ignore[no-untyped-def]
    text = host.file(ALLOY).content_string
    blocks = set(re.findall(r'^([a-z_]+(?:\.[a-z_]+)+) "([a-z_]+)" \{$', text, re.M))
    assert blocks == {
        ("discovery.docker", "containers"),
        ("loki.relabel", "containers"),
        ("loki.source.docker", "containers"),
        ("loki.relabel", "journal"),
        ("loki.source.journal", "host"),
        ("loki.write", "loki"),
    }
    assert 'url = "http://loki:3100/loki/api/v1/push"' in text
    assert 'host = "unix:///var/run/docker.sock"' in text
    assert 'max_age       = "6h"' in text and 'host = "mov-logs-box"' in text
    assert 'values = ["com.docker.compose.project=mov"]' in text


def test_nothing_listens_for_loki_or_alloy_on_the_host(host) -> None:  # type: ignore[no-untyped-def]
    # The role only places files: the compose stack runs the services, Loki on 127.0.0.1 only.
    listening = host.check_output("ss -Htln")
    for port in (3100, 9096, 12345):
        assert not re.search(rf"[:\]]{port}\s", listening), listening
