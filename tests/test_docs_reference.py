"""The documentation site's configuration reference lists every option of every role, and the getting-started
page shows the README's two commands as they are."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import docs_reference as reference

REPO = reference.REPO


def spec_options(specs: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every option path of an argument spec, read here independently of the generator."""
    for name, spec in specs.items():
        yield f"{prefix}{name}"
        if isinstance(spec, dict) and isinstance(spec.get("options"), dict):
            yield from spec_options(spec["options"], f"{prefix}{name}{'[]' if spec.get('type') == 'list' else ''}.")


def role_dirs() -> list[Path]:
    return sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


def missing_options(markdown: str, role: Path) -> list[str]:
    """The role's options (every entry point, suboptions included) that have no row in its section."""
    section = re.search(rf"^## {re.escape(role.name)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    if section is None:
        return [f"section ## {role.name}"]
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    wanted = {path for entry in specs.values() for path in spec_options(entry.get("options") or {})}
    return sorted(
        p for p in wanted if not re.search(rf"^\| <a id=\"[^\"]*\"></a>`{re.escape(p)}` \|", section.group(1), re.M)
    )


@pytest.fixture(scope="module")
def generated() -> str:
    return reference.render(reference.load_roles(REPO))


@pytest.mark.parametrize("role", role_dirs(), ids=lambda p: p.name)
def test_reference_lists_every_option(generated: str, role: Path) -> None:
    assert missing_options(generated, role) == []


def test_a_dropped_option_is_noticed(generated: str) -> None:
    role = REPO / "roles" / "cron"
    dropped = "\n".join(line for line in generated.splitlines() if "`cron_jobs[].schedule`" not in line)
    assert missing_options(dropped, role) == ["cron_jobs[].schedule"]


def test_defaults_come_from_defaults_main(generated: str) -> None:
    for role in role_dirs():
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
        for name, default in defaults.items():
            row = next(line for line in generated.splitlines() if line.startswith(f'| <a id="{name}"></a>'))
            assert f"| `{reference.value(default)}` |" in row, row


def test_the_page_has_the_marker() -> None:
    page = (REPO / "docs" / reference.PAGE).read_text()
    assert page.count(reference.MARKER) == 1
    assert reference.MARKER not in reference.insert(page, reference.load_roles(REPO))


def test_descriptions_are_escaped() -> None:
    assert reference._prose("name <project>-<service>-1, `a|b` and C(x_y) or *_FILE") == (
        r"name &lt;project&gt;-&lt;service&gt;-1, `a|b` and `x_y` or \*\_FILE"
    )


def test_getting_started_shows_the_readme_commands() -> None:
    def two_commands(text: str) -> str:
        match = re.search(r"^## Two commands\n.*?^```sh\n(.*?)^```", text, re.M | re.S)
        assert match is not None
        return match.group(1)

    readme = two_commands((REPO / "README.md").read_text())
    assert "python3 scripts/dev.py up" in readme
    assert two_commands((REPO / "docs" / "getting-started.md").read_text()) == readme
