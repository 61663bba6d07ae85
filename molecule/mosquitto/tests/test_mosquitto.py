"""Behaviour of the mosquitto role: Debian's mosquitto 2.0 running the rendered config under systemd.

Clients are mosquitto_pub/mosquitto_sub inside the box, each bounded by -W (seconds) so nothing hangs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from rerun import rerun_converge

VARS = yaml.safe_load((Path(__file__).resolve().parent.parent / "vars" / "accounts.yml").read_text())
PASSWORDS: dict[str, str] = VARS["mosquitto_passwords"]
CONF = "/opt/mov/mosquitto/config"
CA = "/opt/mov/tls/ca.pem"


def _auth(user: str) -> str:
    return f"-u '{user}' -P '{PASSWORDS[user]}'"


def _pub(user: str, topic: str, message: str = "x", extra: str = "") -> str:
    return f"mosquitto_pub -h 127.0.0.1 -p 1883 {_auth(user)} -q 1 -t '{topic}' -m '{message}' {extra}"


def _watch(host, subscriber: str, topic: str, publishes: list[str], seconds: int = 4) -> str:  # type: ignore[no-untyped-def]
    """Run a bounded subscriber, fire the publishes, return what the subscriber saw (topic payload lines)."""
    out = "/tmp/mov-sub.out"
    script = (
        f"rm -f {out}; (mosquitto_sub -h 127.0.0.1 -p 1883 {_auth(subscriber)} -q 1 -t '{topic}' -v -W {seconds}"
        f" > {out} 2>&1 &); sleep 1; " + "; ".join(publishes) + f"; sleep {seconds}; cat {out}"
    )
    return str(host.run(script).stdout)


def test_broker_runs_the_rendered_config(host) -> None:  # type: ignore[no-untyped-def]
    assert host.service("mov-mosquitto").is_running
    for port in (1883, 8883, 9001):
        assert host.socket(f"tcp://0.0.0.0:{port}").is_listening


@pytest.mark.parametrize(("name", "mode"), [("mosquitto.conf", 0o640), ("acl", 0o640), ("passwd", 0o600)])
def test_files_belong_to_the_broker(host, name: str, mode: int) -> None:  # type: ignore[no-untyped-def]
    f = host.file(f"{CONF}/{name}")
    assert f.user == "mosquitto"
    assert f.mode == mode


def test_password_file_holds_hashes_only(host) -> None:  # type: ignore[no-untyped-def]
    content = host.file(f"{CONF}/passwd").content_string
    for user, password in PASSWORDS.items():
        assert password not in content
        if user != "industria_abc/sensor_new":
            assert f"{user}:$7$101$" in content


def test_anonymous_is_refused(host) -> None:  # type: ignore[no-untyped-def]
    result = host.run("mosquitto_pub -h 127.0.0.1 -p 1883 -t mov/dados/x/y -m x")
    assert result.rc != 0
    assert "not authorised" in result.stderr.lower()


def test_wrong_password_is_refused(host) -> None:  # type: ignore[no-untyped-def]
    result = host.run("mosquitto_pub -h 127.0.0.1 -p 1883 -u telegraf -P wrong -t mov/dados/x/y -m x")
    assert result.rc != 0
    assert "not authorised" in result.stderr.lower()


def test_a_device_publishes_only_under_its_own_topic(host) -> None:  # type: ignore[no-untyped-def]
    me = "industria_abc/sensor_001"
    seen = _watch(
        host,
        "telegraf",
        "mov/dados/#",
        [
            _pub(me, "mov/dados/industria_abc/sensor_001/leitura", "mine"),
            _pub(me, "mov/dados/industria_abc/sensor_002/leitura", "spoof-sibling"),
            _pub(me, "mov/dados/industria_xyz/sensor_001/leitura", "spoof-other-client"),
            _pub(me, "mov/status/industria_abc", "spoof-status"),
        ],
    )
    assert "mov/dados/industria_abc/sensor_001/leitura mine" in seen
    assert "spoof" not in seen


def test_a_device_subscribed_to_everything_receives_nothing(host) -> None:  # type: ignore[no-untyped-def]
    seen = _watch(
        host,
        "industria_abc/sensor_001",
        "#",
        [
            _pub("industria_abc/sensor_002", "mov/dados/industria_abc/sensor_002/leitura", "neighbour"),
            _pub("analytics", "mov/status/industria_abc", "status"),
        ],
    )
    assert "neighbour" not in seen
    assert "status" not in seen


def test_telegraf_cannot_publish(host) -> None:  # type: ignore[no-untyped-def]
    seen = _watch(
        host,
        "analytics",
        "mov/dados/#",
        [
            _pub("telegraf", "mov/dados/industria_abc/sensor_001/leitura", "forged"),
            _pub("telegraf", "mov/dados/telegraf/x/leitura", "forged-own-name"),
            _pub("industria_abc/sensor_002", "mov/dados/industria_abc/sensor_002/leitura", "control"),
        ],
    )
    assert "control" in seen
    assert "forged" not in seen


def _publish_v5(host, user: str, topic: str) -> str:  # type: ignore[no-untyped-def]
    """Publish with MQTT 5 at QoS 1: the broker's PUBACK says "Not authorized" when the ACL refuses."""
    result = host.run(_pub(user, topic, "v5", "-V mqttv5"))
    assert result.rc == 0, result.stderr
    return str(result.stdout + result.stderr)


def test_analytics_writes_status_which_telegraf_does_not_see(host) -> None:  # type: ignore[no-untyped-def]
    """Nobody subscribes to status over MQTT (Grafana reads it from InfluxDB): the broker's PUBACK is the witness."""
    assert "Not authorized" not in _publish_v5(host, "analytics", "mov/status/industria_abc")
    assert "Not authorized" in _publish_v5(host, "analytics", "mov/dados/industria_abc/sensor_001/leitura")
    seen = _watch(host, "telegraf", "mov/status/#", [_pub("analytics", "mov/status/industria_abc", "ok")])
    assert "mov/status" not in seen


def test_the_acl_refusals_are_explicit_in_mqtt5(host) -> None:  # type: ignore[no-untyped-def]
    assert "Not authorized" not in _publish_v5(host, "industria_abc/sensor_001", "mov/dados/industria_abc/sensor_001/x")
    assert "Not authorized" in _publish_v5(host, "industria_abc/sensor_001", "mov/dados/industria_xyz/sensor_001/x")
    assert "Not authorized" in _publish_v5(host, "telegraf", "mov/dados/industria_abc/sensor_001/x")
    assert "Not authorized" in _publish_v5(host, "telegraf", "mov/dados/telegraf/x/y")


def test_tls_listener_works_with_the_ca(host) -> None:  # type: ignore[no-untyped-def]
    result = host.run(f"mosquitto_pub -h localhost -p 8883 --cafile {CA} {_auth('verify')} -t mov/verify/tls -m x")
    assert result.rc == 0, result.stderr


def test_tls_listener_refuses_tls_1_1(host) -> None:  # type: ignore[no-untyped-def]
    # SECLEVEL=0 lets the client offer TLS 1.1, so a refusal is the broker's.
    base = "timeout 5 openssl s_client -connect 127.0.0.1:8883 -servername localhost -CAfile " + CA
    modern = host.run(f"{base} -tls1_2 </dev/null")
    assert "Verify return code: 0 (ok)" in modern.stdout
    old = host.run(f"{base} -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null")
    assert old.rc != 0
    assert "Cipher is (NONE)" in old.stdout
    assert "BEGIN CERTIFICATE" not in old.stdout


def test_plain_listener_does_not_speak_tls(host) -> None:  # type: ignore[no-untyped-def]
    result = host.run(f"mosquitto_pub -h localhost -p 1883 --cafile {CA} {_auth('verify')} -t mov/verify/x -m x")
    assert result.rc != 0


def test_a_new_device_gets_in_after_sighup_without_restart(host) -> None:  # type: ignore[no-untyped-def]
    """side_effect.yml added industria_abc/sensor_new and converged: reload by SIGHUP, same broker process."""
    before = host.file("/tmp/mosquitto-pid-before").content_string.strip()
    now = host.check_output("systemctl show -p MainPID --value mov-mosquitto").strip()
    assert before == now and now != "0"
    assert "industria_abc/sensor_new:$7$" in host.file(f"{CONF}/passwd").content_string
    seen = _watch(
        host,
        "telegraf",
        "mov/dados/#",
        [
            _pub("industria_abc/sensor_new", "mov/dados/industria_abc/sensor_new/leitura", "hello"),
        ],
    )
    assert "mov/dados/industria_abc/sensor_new/leitura hello" in seen
    assert "Reloading config" in host.check_output("journalctl --no-pager -u mov-mosquitto")


SCENARIO = Path(__file__).resolve().parent.parent
WATCHER = "mov-reload-watch"
WATCHER_OUT = f"/tmp/{WATCHER}.out"
# The ACL change: verify may now publish as the probe device (newly allowed), analytics may no longer write
# status (newly denied). The devices include side_effect.yml's, so only the ACL differs from what runs.
ALL_DEVICES = "{{ mosquitto_test_devices + [mosquitto_test_new_device] }}"
CHANGED_USERS = [
    {"name": "telegraf", "read": ["mov/dados/#"], "write": []},
    {"name": "analytics", "read": ["mov/dados/#"], "write": []},
    {"name": "verify", "read": ["mov/verify/#"], "write": ["mov/verify/#", "mov/dados/mov_verify/#"]},
]


def rerun_role(extra: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """The converge playbook again, against this box, with extra variables on top."""
    return rerun_converge(SCENARIO, extra)


def _broker_log(host) -> str:  # type: ignore[no-untyped-def]
    return str(host.check_output("journalctl --no-pager -o cat -u mov-mosquitto"))


def _wait_for(host, command: str, seconds: int = 10) -> None:  # type: ignore[no-untyped-def]
    host.check_output(f"for i in $(seq {seconds * 5}); do {command} && exit 0; sleep 0.2; done; exit 1")


def test_an_acl_change_reloads_without_dropping_a_connected_subscriber(host) -> None:  # type: ignore[no-untyped-def]
    """One subscriber stays connected through a converge that changes the ACL: same broker process, the new ACL
    applies at once, and the messages published after the reload reach the same connection."""
    probe_topic = "mov/dados/mov_verify/probe/leitura"
    broker_pid = host.check_output("systemctl show -p MainPID --value mov-mosquitto").strip()
    host.run(f"systemctl stop {WATCHER}; rm -f {WATCHER_OUT}")
    # Bounded by -W; systemd keeps it running across this test's separate commands and says if it exited.
    host.check_output(
        f"systemd-run --unit {WATCHER} -p StandardOutput=file:{WATCHER_OUT} -p StandardError=file:{WATCHER_OUT} "
        f"mosquitto_sub -h 127.0.0.1 -p 1883 {_auth('telegraf')} -i {WATCHER} -q 1 -t 'mov/dados/#' -v -W 300"
    )
    try:
        _wait_for(host, f"journalctl --no-pager -o cat -u mov-mosquitto | grep -q ' as {WATCHER} '")
        watcher_pid = host.check_output(f"systemctl show -p MainPID --value {WATCHER}").strip()
        host.check_output(_pub("industria_abc/sensor_001", "mov/dados/industria_abc/sensor_001/leitura", "before"))
        assert "Not authorized" in _publish_v5(host, "verify", probe_topic)
        assert "Not authorized" not in _publish_v5(host, "analytics", "mov/status/industria_abc")

        result = rerun_role({"mosquitto_devices": ALL_DEVICES, "mosquitto_service_users": CHANGED_USERS})
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "RUNNING HANDLER [mosquitto : Reload mosquitto]" in result.stdout
        assert "topic write mov/dados/mov_verify/#" in host.file(f"{CONF}/acl").content_string
        _wait_for(host, "journalctl --no-pager -o cat -u mov-mosquitto | grep -q 'Reloading config'")

        assert "Not authorized" not in _publish_v5(host, "verify", probe_topic)
        assert "Not authorized" in _publish_v5(host, "analytics", "mov/status/industria_abc")
        host.check_output(_pub("industria_abc/sensor_001", "mov/dados/industria_abc/sensor_001/leitura", "after"))
        _wait_for(host, f"grep -q 'leitura after' {WATCHER_OUT}")

        seen = host.file(WATCHER_OUT).content_string
        assert "mov/dados/industria_abc/sensor_001/leitura before" in seen
        assert f"{probe_topic} v5" in seen
        assert "mov/dados/industria_abc/sensor_001/leitura after" in seen
        assert host.check_output("systemctl show -p MainPID --value mov-mosquitto").strip() == broker_pid
        # The same subscriber process, on its first and only connection.
        assert host.run(f"systemctl is-active -q {WATCHER}").rc == 0
        assert host.check_output(f"systemctl show -p MainPID --value {WATCHER}").strip() == watcher_pid
        log = _broker_log(host)
        assert log.count(f" as {WATCHER} ") == 1, log[-3000:]
        assert f"Client {WATCHER} disconnected" not in log and f"Client {WATCHER} closed" not in log
    finally:
        host.run(f"systemctl stop {WATCHER}")
        restored = rerun_role({"mosquitto_devices": ALL_DEVICES})
        assert restored.returncode == 0, (restored.stdout + restored.stderr)[-3000:]
