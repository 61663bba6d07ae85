"""The grafana role's files on a host: owner, modes, parseable config and provisioning, no secret in them."""

from __future__ import annotations

import json

import yaml

DIR = "/opt/mov/grafana"


def test_files_belong_to_grafana_and_secrets_are_private(host) -> None:  # type: ignore[no-untyped-def]
    assert host.file(f"{DIR}/grafana.ini").uid == 472 and host.file(f"{DIR}/grafana.ini").mode == 0o640
    for name, value in (("admin.password", "test-only-grafana-password"), ("smtp.password", "test-only-smtp-password")):
        secret = host.file(f"{DIR}/secrets/{name}")
        assert (secret.uid, secret.gid, secret.mode, secret.content_string) == (472, 472, 0o400, value)
    assert not host.file(f"{DIR}/secrets/grafana.env").exists
    assert host.file(f"{DIR}/secrets").mode == 0o700


def test_no_secret_outside_its_file(host) -> None:  # type: ignore[no-untyped-def]
    for secret, name in (
        ("test-only-grafana-password", "admin.password"),
        ("test-only-smtp-password", "smtp.password"),
    ):
        found = host.run(f"grep -rl {secret} {DIR} --exclude={name}")
        assert found.stdout.strip() == ""


def test_ini_is_hardened(host) -> None:  # type: ignore[no-untyped-def]
    script = (
        "import configparser,json; c=configparser.ConfigParser(interpolation=None); "
        f"c.read('{DIR}/grafana.ini'); print(json.dumps({{s: dict(c[s]) for s in c.sections()}}))"
    )
    ini = json.loads(host.check_output(f'python3 -c "{script}"'))
    assert ini["server"]["root_url"] == "https://mov.example.com/"
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["security"]["cookie_secure"] == "true"
    assert ini["smtp"]["enabled"] == "true" and ini["smtp"]["host"] == "smtp.example.com:587"
    assert ini["smtp"]["starttls_policy"] == "MandatoryStartTLS"
    # Read from the files by Grafana's $__file{} expansion, never written here.
    assert ini["security"]["admin_password"] == f"$__file{{{DIR}/secrets/admin.password}}"
    assert ini["smtp"]["password"] == f"$__file{{{DIR}/secrets/smtp.password}}"


def test_provisioning_parses_with_pinned_uids(host) -> None:  # type: ignore[no-untyped-def]
    ds = yaml.safe_load(host.file(f"{DIR}/provisioning/datasources/mov-influxdb.yml").content_string)
    assert ds["datasources"][0]["uid"] == "mov-influxdb"
    dashboard = json.loads(host.file(f"{DIR}/dashboards/mov-overview.json").content_string)
    assert dashboard["uid"] == "mov-overview"
    rules = yaml.safe_load(host.file(f"{DIR}/provisioning/alerting/mov-rules.yml").content_string)
    evaluator = rules["groups"][0]["rules"][0]["data"][2]["model"]["conditions"][0]["evaluator"]
    assert evaluator == {"type": "gt", "params": [35.0]}
    points = yaml.safe_load(host.file(f"{DIR}/provisioning/alerting/mov-contact-points.yml").content_string)
    assert points["contactPoints"][0]["receivers"][0]["settings"]["addresses"] == "ops@example.com"
