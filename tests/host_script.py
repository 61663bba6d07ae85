"""Import a host tool as a module: the files the roles install (mov-backup.py, movctl.py, mov-status-page.py,
scripts/movctl) have hyphens or no .py suffix, so they cannot be imported by name."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(name: str, path: Path) -> ModuleType:
    """The file at path, executed as the module `name` (registered in sys.modules, as dataclasses need)."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
