"""The telegraf role's files on a host: owner, modes, a config that parses, the password only in its secret file."""

from __future__ import annotations

import json

CONF = "/opt/mov/telegraf/telegraf.conf"
PASSWORD = "/opt/mov/telegraf/secrets/mqtt.password"


def test_files_are_owned_by_telegraf_with_private_secrets(host) -> None:  # type: ignore[no-untyped-def]
    assert host.file(CONF).uid == 8094 and host.file(CONF).mode == 0o640
    assert host.file("/opt/mov/telegraf/secrets").mode == 0o700
    assert host.file(PASSWORD).uid == 8094 and host.file(PASSWORD).mode == 0o400
    # The docker secret store reads the file's bytes as they are: a newline would be part of the password.
    assert host.file(PASSWORD).content_string == "test-only-telegraf-password"
    assert not host.file("/opt/mov/telegraf/secrets/telegraf.env").exists
    assert "test-only-telegraf-password" not in host.file(CONF).content_string


def test_config_parses_and_the_buffer_follows_the_device_count(host) -> None:  # type: ignore[no-untyped-def]
    config = json.loads(
        host.check_output(f'python3 -c \'import json,tomllib; print(json.dumps(tomllib.load(open("{CONF}", "rb"))))\'')
    )
    # 300 devices every 5 s + 20 internal metrics every 5 s = 64/s; x 900 s x 2 = 115200 -> 116000.
    assert config["agent"]["metric_buffer_limit"] == 116_000
    assert config["inputs"]["mqtt_consumer"][0]["qos"] == 1
    assert config["outputs"]["influxdb_v2"][0]["token"] == "@{docker:telegraf_influxdb_token}"
    assert config["inputs"]["mqtt_consumer"][0]["password"] == "@{docker:telegraf_mqtt_password}"
    assert config["secretstores"]["docker"] == [{"id": "docker"}]
