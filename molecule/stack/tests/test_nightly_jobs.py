"""The jobs the cleanup and status_page roles own, run on the box as cron runs them (the line the cron role
installed, under cron's bare environment), against the real stack. Runs after test_movctl.py (file order) and
leaves the stack running and healthy.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import yaml

SCENARIO = Path(__file__).resolve().parent.parent
REPORT_DIR = "/opt/mov/report"
REPORTS = f"{REPORT_DIR}/out"
OLD_IMAGE = "mov/mosquitto:0.0.1-nightly-old"
PAGE = "/opt/mov/status-page"
# The scenario's own variables (the converge's secrets among them), read once.
VARIABLES: dict[str, Any] = yaml.safe_load((SCENARIO / "vars" / "stack.yml").read_text())


def cron_command(host, name: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The schedule and command of the job `name`, as in root's crontab."""
    lines = host.check_output("crontab -l -u root").splitlines()
    entry = lines[lines.index(f"#Ansible: mov: {name}") + 1]
    fields = entry.split(None, 5)
    return " ".join(fields[:5]), fields[5]


def run_job(host, name: str):  # type: ignore[no-untyped-def]
    _, command = cron_command(host, name)
    return host.run(f"env -i PATH=/usr/bin:/bin HOME=/root SHELL=/bin/sh /bin/sh -c {shlex.quote(command)}")


def last_result(host, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(host.file(f"/var/lib/mov-cron/{name}.json").content_string)  # type: ignore[no-any-return]


def movctl_json(host, *args: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(host.run("movctl " + " ".join(args) + " --json").stdout)  # type: ignore[no-any-return]


def wait_all_healthy(host, timeout: float = 90) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not movctl_json(host, "test")["ok"]:
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


def test_each_role_owns_its_job_and_files(host) -> None:  # type: ignore[no-untyped-def]
    assert cron_command(host, "cleanup")[0] == "15 4 * * *"
    assert cron_command(host, "status-page")[0] == "* * * * *"
    for tool in ("/usr/local/bin/mov-cleanup", "/usr/local/bin/mov-status-page"):
        f = host.file(tool)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o755), tool
    for config in ("/etc/mov/cleanup.json", "/etc/mov/status-page.json"):
        f = host.file(config)
        assert (f.user, f.mode) == ("root", 0o644), config
    assert json.loads(host.file("/etc/mov/cleanup.json").content_string)["old_files"] == [
        {"path": REPORTS, "pattern": "report-*", "max_age_days": 365}
    ]
    page_dir = host.file(PAGE)
    assert page_dir.is_directory and (page_dir.user, page_dir.mode) == ("root", 0o755)


def test_the_nightly_cleanup(host) -> None:  # type: ignore[no-untyped-def]
    # An image of a platform repository that no release names, used only by a stopped one-off container; a
    # stopped container of a service the compose file does not have; mosquitto stopped by the operator.
    host.run(f"docker rm -f nightly-base nightly-oneoff nightly-oldservice; docker image rm -f {OLD_IMAGE}")
    host.check_output(
        "docker create --name nightly-base mov/mosquitto:2.0.21 true && "
        f"docker commit --change 'LABEL mov.test=nightly-old' nightly-base {OLD_IMAGE} && "
        "docker rm nightly-base"
    )
    project = "--label com.docker.compose.project=mov"
    host.check_output(
        f"docker create --name nightly-oneoff {project} --label com.docker.compose.service=analytics "
        f"--label com.docker.compose.oneoff=True {OLD_IMAGE} true"
    )
    host.check_output(
        f"docker create --name nightly-oldservice {project} "
        "--label com.docker.compose.service=grafana --label com.docker.compose.oneoff=False "
        "mov/mosquitto:2.0.21 true"
    )
    assert host.run("movctl stop mosquitto").rc == 0
    mosquitto_id = host.check_output("docker inspect -f '{{.Id}}' mov-mosquitto-1")
    # Reports: old ones (one a level down), a recent one, an old file of another name, and an old symbolic link
    # to the current release's record (neither the link nor its target may go).
    release = host.check_output("ls -d /opt/mov/releases/*/release.json | tail -n 1")
    host.check_output(
        f"find {REPORTS} -mindepth 1 -delete && mkdir {REPORTS}/2019 && cd {REPORTS} && "
        "touch -d '400 days ago' report-2019-01-06.html 2019/report-2019-01-13.pdf notes.txt && "
        f"touch report-recent.html && ln -s {release} report-link.json && touch -h -d '400 days ago' report-link.json"
    )
    release_before = host.file(release).content_string
    # The stack's named volumes and one no container uses: none may go.
    host.check_output("docker volume create nightly-orphan")
    volumes = host.check_output("docker volume ls -q")
    assert "mov_mosquitto_data" in volumes.split()

    run = run_job(host, "cleanup")
    assert run.rc == 0, run.stdout + run.stderr
    assert last_result(host, "cleanup")["result"] == "ok"
    log = host.file("/var/log/mov-cron/cleanup.log").content_string
    assert "cleanup ok" in log and OLD_IMAGE in log

    assert host.run(f"docker image inspect {OLD_IMAGE}").rc != 0
    for gone in ("nightly-oneoff", "nightly-oldservice"):
        assert host.run(f"docker container inspect {gone}").rc != 0, gone
    assert host.check_output("docker inspect -f '{{.Id}} {{.State.Status}}' mov-mosquitto-1") == (
        f"{mosquitto_id} exited"
    )
    for image in ("mov/analytics:0.1.0", "mov/mosquitto:2.0.21"):
        assert host.run(f"docker image inspect {image}").rc == 0, image
    assert host.check_output("docker volume ls -q") == volumes
    left = set(host.check_output(f"cd {REPORTS} && find . -mindepth 1 | sort").split())
    assert left == {"./2019", "./notes.txt", "./report-recent.html", "./report-link.json"}
    assert host.file(release).content_string == release_before

    assert host.run("docker volume inspect nightly-orphan").rc == 0
    host.check_output("docker volume rm nightly-orphan")
    assert host.run("movctl start").rc == 0
    assert wait_all_healthy(host)


def secrets_of_the_converge(host) -> list[str]:  # type: ignore[no-untyped-def]
    values = list(VARIABLES["mosquitto_passwords"].values())
    values += [
        VARIABLES["stack_analytics_mqtt_password"],
        VARIABLES["stack_verify_mqtt_password"],
        VARIABLES["report_smtp_password"],
    ]
    values.append(host.file("/opt/mov/analytics/secrets/influxdb.token").content_string.strip())
    return [v for v in values if v]


def test_the_status_page_job_writes_the_box_state(host) -> None:  # type: ignore[no-untyped-def]
    host.check_output(f"rm -f {PAGE}/index.html {PAGE}/status.json")
    run = run_job(host, "status-page")
    assert run.rc == 0, run.stdout + run.stderr
    # cron's own minute run may have held the lock: then it is the one that writes the page.
    deadline = time.monotonic() + 75
    while host.run(f"test -s {PAGE}/status.json -a -s {PAGE}/index.html").rc != 0 and time.monotonic() < deadline:
        time.sleep(2)
    assert last_result(host, "status-page")["result"] == "ok"

    for name in ("index.html", "status.json"):
        f = host.file(f"{PAGE}/{name}")
        assert (f.user, f.mode) == ("root", 0o644), name
    page = json.loads(host.file(f"{PAGE}/status.json").content_string)
    services = next(s for s in page["sections"] if s["title"] == "Services")
    on_page = {row["label"]: row["value"].split(", ")[:2] for row in services["rows"]}
    real = {s["service"]: [s["state"], s["health"]] for s in movctl_json(host, "status")["services"]}
    assert (
        on_page
        == real
        == {
            "mosquitto": ["running", "healthy"],
            "influxdb": ["running", "healthy"],
            "analytics": ["running", "healthy"],
            "dockerproxy": ["running", "healthy"],
        }
    )
    html = host.file(f"{PAGE}/index.html").content_string
    assert "mosquitto" in html and "analytics" in html

    text = html + host.file(f"{PAGE}/status.json").content_string
    secrets = secrets_of_the_converge(host)
    assert len(secrets) >= 7
    assert [s for s in secrets if s in text] == []


def test_the_report_role_gives_the_images_user_its_directories_and_mail_secret(host) -> None:  # type: ignore[no-untyped-def]
    expected = {REPORT_DIR: 0o750, REPORTS: 0o750, f"{REPORT_DIR}/secrets": 0o700}
    for path, mode in expected.items():
        d = host.file(path)
        assert d.is_directory and (d.uid, d.gid, d.mode) == (9108, 9108, mode), path
    secret = host.file(f"{REPORT_DIR}/secrets/smtp.password")
    assert (secret.uid, secret.gid, secret.mode) == (9108, 9108, 0o400)
    assert secret.content_string == VARIABLES["report_smtp_password"] + "\n"
    # The image's own user reads the secret and writes a report, with the mounts the weekly job gives its container
    # (mov_report_command in group_vars/all/report.yml; the job itself needs InfluxDB, not in this subset).
    mounts = f"-v {REPORTS}:/reports -v {REPORT_DIR}/secrets:/run/report-secrets:ro"
    probe = host.run(
        f'docker run --rm {mounts} --entrypoint sh mov/analytics:0.1.0 -c \'test "$(id -u)" = 9108 && '
        "cat /run/report-secrets/smtp.password >/dev/null && touch /reports/report-probe.html'"
    )
    assert probe.rc == 0, probe.stdout + probe.stderr
    assert host.file(f"{REPORTS}/report-probe.html").uid == 9108
    host.check_output(f"rm {REPORTS}/report-probe.html")
