"""The nginx config each environment renders passes `nginx -t` (on the controller: apt-get install nginx).

Rendered through the role's render tasks (the render preview's path), with the TLS directory pointed at a
throwaway certificate, since nginx -t loads the certificate; then checked by the very script the role's
`validate:` uses on the host.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, ansible_env

ENVS = ("local", "staging", "prod")
CHECKER = REPO / "roles/nginx/files/mov-nginx-check"
PLAYBOOK = """\
- name: Render the nginx config
  hosts: mov
  gather_facts: false
  tasks:
    - name: Render
      ansible.builtin.include_role:
        name: nginx
        tasks_from: render
"""


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(path / "privkey.pem"),
            "-out",
            str(path / "fullchain.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=render.test",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def render(env: str, dest: Path, tls_dir: Path) -> Path:
    # A playbook sees group_vars/ next to it: give the throwaway one the repository's.
    (dest / "group_vars").symlink_to(REPO / "group_vars")
    (dest / "render.yml").write_text(PLAYBOOK)
    result = subprocess.run(
        [
            "ansible-playbook",
            str(dest / "render.yml"),
            "-i",
            f"inventories/{env}",
            "-e",
            f"render_dest={dest / 'out'}",
            "-e",
            f"mov_tls_dir={tls_dir}",
        ],
        cwd=REPO,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [conf] = (dest / "out").glob("*/etc/nginx/conf.d/mov.conf")
    return conf


@pytest.mark.parametrize("env", ENVS)
def test_rendered_config_passes_nginx_t(env: str, tmp_path: Path, tls_dir: Path) -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is not installed on the controller: apt-get install -y nginx")
    conf = render(env, tmp_path, tls_dir)
    check = subprocess.run(
        ["sh", str(CHECKER), str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert check.returncode == 0, check.stderr
    text = conf.read_text()
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "location ^~ /.well-known/acme-challenge/" in text
    assert "limit_req zone=mov_login" in text
    # Grafana is proxied only where the stack runs it (the local env without a registry does not).
    proxies_grafana = "proxy_pass http://127.0.0.1:3000;" in text
    assert proxies_grafana is (env != "local"), env
    assert ("Grafana is not deployed on this host" in text) is (env == "local")


@pytest.mark.parametrize(("env", "domain"), [("staging", "mov-staging.example.com"), ("prod", "mov.example.com")])
def test_remote_envs_serve_their_domain(env: str, domain: str, tmp_path: Path, tls_dir: Path) -> None:
    assert f"server_name {domain};" in render(env, tmp_path, tls_dir).read_text()


def test_a_broken_config_is_refused(tmp_path: Path, tls_dir: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("server { listen 80; bogus_directive on; }\n")
    check = subprocess.run(
        ["sh", str(CHECKER), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert check.returncode != 0
    assert 'unknown directive "bogus_directive"' in check.stderr
