"""Wrong stack settings fail at the stack role's preflight, naming the variable.

Every case of this module runs in one ansible-playbook run, each as a host of its own (conftest.role_preflights)."""

from __future__ import annotations

import pytest
from conftest import role_preflights

IMAGES = {
    "mosquitto": "eclipse-mosquitto:2.0.21",
    "telegraf": "telegraf:1.32.3",
    "influxdb": "influxdb:2.7.11",
    "grafana": "grafana/grafana-oss:11.3.1",
    "analytics": "mov/analytics:0.1.0",
}
GOOD: dict[str, object] = {
    "stack_services": ["mosquitto", "analytics"],
    "stack_images": IMAGES,
    "stack_analytics_rules": [{"field": "temperatura_c", "alerta": 30, "critico": 35}],
}
DIGEST = "sha256:" + "0" * 64  # well formed, and obviously not a real image's digest
# The local env's developer loop, as group_vars/all/stack.yml wires it.
LOOP = {
    **GOOD,
    "stack_env": "local",
    "stack_dev_loop": True,
    "stack_dev_loop_source_dir": "/opt/mov-dev/analytics-src",
    "stack_bundle_dir": "/srv/bundle",
    "stack_bundle_build": ["mosquitto", "analytics"],
}


def images(**changes: str) -> dict[str, object]:
    return {**GOOD, "stack_images": {**IMAGES, **changes}}


VALID: list[dict[str, object]] = [
    GOOD,
    {**GOOD, "stack_services": ["mosquitto", "telegraf", "influxdb", "grafana", "analytics"]},
    images(mosquitto=f"eclipse-mosquitto:2.0.21@{DIGEST}"),
    images(analytics="registry.example:5000/mov/analytics:0.1.0"),
    # Outside prod-like envs (local), a floating tag is the operator's choice.
    {**images(mosquitto="eclipse-mosquitto:latest"), "stack_strict_image_tags": False},
    {
        **GOOD,
        "stack_image_source": "bundle",
        "stack_bundle_dir": "/srv/bundle",
        "stack_bundle_build": ["mosquitto", "analytics"],
    },
    LOOP,
    {**GOOD, "stack_env": "local", "stack_dev_override": {"analytics": {"ports": ["127.0.0.1:9108:9108"]}}},
]
VALID_IDS = [
    "subset",
    "full",
    "digest",
    "registry-port",
    "latest-local",
    "bundle",
    "dev-loop-local",
    "dev-override-local",
]
INVALID: list[tuple[dict[str, object], str]] = [
    (
        images(mosquitto="eclipse-mosquitto:latest"),
        "stack_images.mosquitto (eclipse-mosquitto:latest) is not pinned",
    ),
    (
        {**images(influxdb="influxdb:2"), "stack_services": ["influxdb"]},
        "stack_images.influxdb (influxdb:2) is not pinned",
    ),
    (images(analytics="mov/analytics:v1"), "stack_images.analytics (mov/analytics:v1) is not pinned"),
    (images(mosquitto="eclipse-mosquitto"), "stack_images.mosquitto (eclipse-mosquitto) is not pinned"),
    (images(analytics="registry.example:5000/mov/analytics"), "stack_images.analytics"),
    (images(mosquitto="eclipse-mosquitto:2.0.21@sha256:abc"), "stack_images.mosquitto"),
    ({**GOOD, "stack_services": ["mosquitto", "influx"]}, "stack_services (mosquitto, influx)"),
    ({**GOOD, "stack_services": ["mosquitto", "influx"]}, "not known: influx"),
    ({**GOOD, "stack_services": []}, "stack_services () must be a non-empty list"),
    ({**GOOD, "stack_services": ["mosquitto", "mosquitto"]}, "without duplicates"),
    (
        {**GOOD, "stack_services": ["grafana"], "stack_images": {"mosquitto": "eclipse-mosquitto:2.0.21"}},
        "stack_images has no image for: grafana",
    ),
    ({**GOOD, "stack_mqtt_tls_port": 1884}, "stack_mqtt_tls_port (1884) is published to the world"),
    ({**GOOD, "stack_public_tcp_ports": [443]}, "must be one of stack_public_tcp_ports (443"),
    ({**GOOD, "stack_grafana_port": 8883}, "all must be distinct port numbers"),
    ({**GOOD, "stack_influxdb_port": 70000}, "stack_influxdb_port"),
    ({**GOOD, "stack_image_source": "bundle"}, "needs stack_bundle_dir"),
    ({**GOOD, "stack_image_source": "ftp"}, "stack_image_source"),
    ({**GOOD, "stack_bundle_dir": "/srv/b", "stack_bundle_build": ["grafana"]}, "stack_bundle_build (grafana)"),
    ({**GOOD, "stack_releases_keep": 1}, "stack_releases_keep (1) must be at least 2"),
    ({**GOOD, "stack_analytics_rules": []}, "stack_analytics_rules ([]) must hold at least one rule"),
    (
        {**LOOP, "stack_bundle_build": []},
        "The developer loop (stack_dev_loop) needs analytics in stack_bundle_build",
    ),
    ({**LOOP, "stack_dev_loop_source_dir": "analytics/src"}, "stack_dev_loop_source_dir as an absolute path"),
    ({**LOOP, "stack_dev_loop_debug_port": 8883}, "stack_dev_loop_debug_port (8883) a TCP port that no other"),
]
# Outside the local env, the loop alone is enough to be refused, and so is the override; each names its variable.
OUTSIDE_LOCAL: list[tuple[str, dict[str, object], str]] = [
    (env, variables, message)
    for env in ("staging", "prod")
    for variables, message in (
        ({**LOOP, "stack_env": env}, "stack_dev_loop (the config tree's mov_dev_loop) runs the worker from a host"),
        (
            {**GOOD, "stack_env": env, "stack_dev_override": {"analytics": {"ports": ["127.0.0.1:9108:9108"]}}},
            "stack_dev_override (the config tree's mov_dev_override) publishes debug ports",
        ),
    )
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Case -> the preflight's failure messages, for every case of this module at once (the stack's checks read
    no host fact)."""
    cases = {f"valid-{n}": v for n, v in enumerate(VALID)}
    cases |= {f"invalid-{n}": v for n, (v, _) in enumerate(INVALID)}
    cases |= {f"outside-{n}": v for n, (_, v, _) in enumerate(OUTSIDE_LOCAL)}
    return role_preflights("stack", cases, tmp_path_factory.mktemp("stack-preflight"), gather_facts=False)


@pytest.mark.parametrize("case", range(len(VALID)), ids=VALID_IDS)
def test_valid_stack_settings_pass(outcomes: dict[str, list[str]], case: int) -> None:
    assert outcomes[f"valid-{case}"] == []


@pytest.mark.parametrize("case", range(len(INVALID)), ids=[e[:40] for _, e in INVALID])
def test_bad_input_fails_at_preflight_naming_the_variable(outcomes: dict[str, list[str]], case: int) -> None:
    failures, expected = outcomes[f"invalid-{case}"], INVALID[case][1]
    assert failures, f"passed: {INVALID[case][0]}"
    assert any(expected in failure for failure in failures), failures


@pytest.mark.parametrize("case", range(len(OUTSIDE_LOCAL)), ids=[f"{e}-{m.split()[0]}" for e, _, m in OUTSIDE_LOCAL])
def test_the_developer_loop_and_the_dev_override_are_refused_outside_local(
    outcomes: dict[str, list[str]], case: int
) -> None:
    env, _, message = OUTSIDE_LOCAL[case]
    failures = outcomes[f"outside-{case}"]
    assert any(message in f and f'the env is "{env}"' in f for f in failures), failures
