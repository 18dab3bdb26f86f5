"""Files shipped with icurt (configs/*.toml, sql/*.sql), found installed or in a source tree.

Installed, they are package data (`icurt.configs`, `icurt.sql`). Run from a source tree that is
not installed — e.g. `ray job submit --working-dir .` — they sit beside the `icurt/` folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FOLDERS = {"icurt.configs": "configs", "icurt.sql": "sql"}


def shipped_path(package: str, name: str) -> Path:
    source_tree = Path(__file__).resolve().parent.parent / FOLDERS[package] / name
    try:
        installed = Path(str(resources.files(package) / name))
    except ModuleNotFoundError:
        return source_tree
    return installed if installed.exists() else source_tree
