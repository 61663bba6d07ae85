#!/usr/bin/env python3
"""The configuration reference of the documentation site, generated from the roles' argument specs.

Every role's ``meta/argument_specs.yml`` (type, choices, description, suboptions) and ``defaults/main.yml``
(the default) become one section of ``docs/reference.md``, where the marker line stands. mkdocs runs this file
as a hook (``hooks:`` in mkdocs.yml), so the page is rebuilt from the specs on every build and cannot drift
from them; ``python3 scripts/docs_reference.py`` prints the same Markdown.

The value the platform gives an option (``group_vars/all/*.yml``, where the ``mov_*`` config tree is wired to the
roles' inputs) is shown beside its default.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- generated: role reference -->"
PAGE = "reference.md"
# Longer values of the platform are named by file only: a table cell is no place for a page of YAML.
LONG = 160


class _Unset:
    """No default: the option is required, or has none in defaults/main.yml."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


@dataclass(frozen=True)
class Option:
    name: str  # dotted path; items of a list are `parent[].child`
    type: str
    elements: str | None
    default: object
    default_from: str  # "defaults/main.yml", "argument spec" or ""
    choices: tuple[object, ...]
    required: bool
    secret: bool
    description: str
    platform_value: object
    platform_file: str | None


@dataclass(frozen=True)
class EntryPoint:
    name: str
    short_description: str
    description: str
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Role:
    name: str
    entry_points: tuple[EntryPoint, ...]
    has_readme: bool

    @property
    def main(self) -> EntryPoint:
        return next(e for e in self.entry_points if e.name == "main")


# --- loading ---------------------------------------------------------------------------------------------------


def _yaml_mapping(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    return data if isinstance(data, dict) else {}


def _text(value: object) -> str:
    """A spec description: a string or a list of paragraphs."""
    if isinstance(value, list):
        return "\n\n".join(str(v).strip() for v in value)
    return str(value).strip() if value is not None else ""


def platform_values(repo: Path = REPO) -> dict[str, tuple[str, object]]:
    """Variable -> (file, value) as group_vars/all sets it."""
    values: dict[str, tuple[str, object]] = {}
    for path in sorted((repo / "group_vars" / "all").glob("*.yml")):
        for name, value in _yaml_mapping(path).items():
            values[str(name)] = (path.relative_to(repo).as_posix(), value)
    return values


def _options(
    specs: Mapping[str, Any], defaults: Mapping[str, Any], platform: Mapping[str, tuple[str, object]], prefix: str = ""
) -> list[Option]:
    options: list[Option] = []
    for name, spec in specs.items():
        spec = spec if isinstance(spec, dict) else {}
        path = f"{prefix}{name}"
        if not prefix and name in defaults:
            default, default_from = defaults[name], "defaults/main.yml"
        elif "default" in spec:
            default, default_from = spec["default"], "argument spec"
        else:
            default, default_from = UNSET, ""
        platform_file, platform_value = platform.get(str(name), (None, UNSET)) if not prefix else (None, UNSET)
        kind = str(spec.get("type", "str"))
        options.append(
            Option(
                name=path,
                type=kind,
                elements=str(spec["elements"]) if "elements" in spec else None,
                default=default,
                default_from=default_from,
                choices=tuple(spec.get("choices") or ()),
                required=bool(spec.get("required", False)),
                secret=bool(spec.get("no_log", False)),
                description=_text(spec.get("description")),
                platform_value=platform_value,
                platform_file=platform_file,
            )
        )
        if isinstance(spec.get("options"), dict):
            child = f"{path}[]." if kind == "list" else f"{path}."
            options += _options(spec["options"], {}, platform, child)
    return options


def load_role(role_dir: Path, platform: Mapping[str, tuple[str, object]]) -> Role:
    specs = _yaml_mapping(role_dir / "meta" / "argument_specs.yml").get("argument_specs") or {}
    defaults = _yaml_mapping(role_dir / "defaults" / "main.yml")
    entry_points = tuple(
        EntryPoint(
            name=str(name),
            short_description=_text(spec.get("short_description")),
            description=_text(spec.get("description")),
            options=tuple(_options(spec.get("options") or {}, defaults, platform)),
        )
        for name, spec in specs.items()
        if isinstance(spec, dict)
    )
    if not any(e.name == "main" for e in entry_points):
        raise ValueError(f"roles/{role_dir.name}/meta/argument_specs.yml has no `main` entry point")
    return Role(role_dir.name, entry_points, (role_dir / "README.md").exists())


def load_roles(repo: Path = REPO) -> list[Role]:
    """Every role with tasks, in name order (the same set scripts/check_argument_specs.py checks)."""
    platform = platform_values(repo)
    return [load_role(p, platform) for p in sorted((repo / "roles").iterdir()) if (p / "tasks" / "main.yml").exists()]


# --- rendering -------------------------------------------------------------------------------------------------

_ANSIBLE_MARKUP = re.compile(r"\b([CVOMIBU])\(([^()]*)\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MARKDOWN_SPECIAL = re.compile(r"([\\*_\[\]|#!{}])")


def _code(text: str) -> str:
    """An inline code span holding text as it is (Markdown's tables do not split a row on a pipe in one)."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _prose(text: str) -> str:
    """Description text as Markdown: Ansible markup (C(), I(), B(), ...) converted, code spans kept, everything
    else escaped (a description's `<project>` is no HTML tag, its `*` no emphasis)."""
    text = _ANSIBLE_MARKUP.sub(_markup, text)
    out: list[str] = []
    last = 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_escape(text[last : m.start()]))
        out.append(_code(m.group(2)))
        last = m.end()
    out.append(_escape(text[last:]))
    return "".join(out).replace(_ITALIC, "*").replace(_BOLD, "**")


_ITALIC, _BOLD = "\x00i", "\x00b"  # emphasis marks that survive _escape


def _markup(match: re.Match[str]) -> str:
    kind, inner = match.groups()
    if kind in "CVOM":
        return f"`{inner}`"
    mark = {"I": _ITALIC, "B": _BOLD}.get(kind, "")
    return f"{mark}{inner}{mark}"


def _escape(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def value(data: object) -> str:
    """A value as YAML in flow style, on one line, the way the config files write it; a string as it is (a
    Jinja expression unquoted) unless YAML would read it as something else."""
    if isinstance(data, str):
        return _string(data)
    dumped = yaml.safe_dump(data, default_flow_style=True, sort_keys=False, width=1 << 30, allow_unicode=True)
    dumped = dumped.strip()
    if dumped.endswith("\n..."):
        dumped = dumped[:-4].rstrip()
    return " ".join(dumped.split("\n"))


def _string(text: str) -> str:
    try:
        parsed: object = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = text
    if text == "" or (parsed != text and not isinstance(parsed, (dict, list, str))):
        return yaml.safe_dump(text, default_style='"').strip()
    return " ".join(text.split())


def _type(option: Option) -> str:
    return f"{option.type} of {option.elements}" if option.elements else option.type


def _cell(option: Option) -> str:
    if option.default is UNSET:
        return "required" if option.required else "—"
    return _code(value(option.default))


def _row(option: Option) -> str:
    choices = ", ".join(_code(value(c)) for c in option.choices) or "—"
    notes = [_prose(option.description)] if option.description else []
    if option.secret:
        notes.append("Secret: never logged (`no_log`).")
    if option.platform_file is not None:
        shown = value(option.platform_value)
        notes.append(
            f"The platform sets {_code(shown)} ({_code(option.platform_file)})."
            if len(shown) <= LONG
            else f"The platform sets it in {_code(option.platform_file)}."
        )
    description = "<br>".join(n.replace("\n\n", "<br>").replace("\n", " ") for n in notes)
    anchor = option.name.replace("[]", "").replace(".", "-")
    return (
        f'| <a id="{anchor}"></a>{_code(option.name)} | {_type(option)} | {_cell(option)} | {choices} | {description} |'
    )


def _table(options: Iterable[Option]) -> list[str]:
    return ["| Option | Type | Default | Choices | Description |", "|---|---|---|---|---|", *(_row(o) for o in options)]


def render_role(role: Role) -> str:
    main = role.main
    lines = [f"## {role.name}", "", f"**{_prose(main.short_description)}**", ""]
    if main.description:
        lines += [_prose(main.description), ""]
    others = [e for e in role.entry_points if e.name != "main"]
    if others:
        lines += ["Entry points besides `main`:", ""]
        for entry in others:
            same = entry.options == main.options
            lines.append(
                f"- `{entry.name}`: {_prose(entry.short_description)}"
                + (" (the same options as `main`)" if same else "")
            )
        lines.append("")
    lines += _table(main.options)
    lines.append("")
    for entry in others:
        if entry.options != main.options:
            lines += [f"### {role.name}: `{entry.name}`", "", *_table(entry.options), ""]
    return "\n".join(lines)


def render(roles: Iterable[Role]) -> str:
    return "\n".join(render_role(r) for r in roles)


def insert(markdown: str, roles: Iterable[Role]) -> str:
    """The page with the marker line replaced by the reference."""
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lacks the marker line {MARKER}")
    return markdown.replace(MARKER, render(roles))


# --- the mkdocs hook -------------------------------------------------------------------------------------------


def on_page_markdown(markdown: str, /, *, page: Page, config: MkDocsConfig, files: Files) -> str | None:
    if page.file.src_uri != PAGE:
        return None
    from mkdocs.exceptions import PluginError

    try:
        return insert(markdown, load_roles(Path(config.config_file_path).resolve().parent))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise PluginError(f"configuration reference: {exc}") from exc


def main() -> int:
    sys.stdout.write(render(load_roles()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
