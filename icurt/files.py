"""Writing files so that a reader never sees half of one (write beside, then rename), and the check
of the data root every command runs first."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from icurt.errors import IcurtError


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """`data` as indented JSON at `path`, replaced atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_data_root(path: str | Path) -> Path:
    """The data root as an absolute path, checked: an IcurtError (one line) when it is a file or
    cannot be created or written. Creates nothing (a folder made to try is removed again)."""
    root = Path(path).expanduser().absolute()
    fix = "point ICURT_DATA (or --set paths.data=...) at a folder you can write"
    if root.exists() and not root.is_dir():
        raise IcurtError(f"the data root {root} is a file, not a folder; {fix}")
    if root.is_dir():
        if not os.access(root, os.W_OK | os.X_OK):
            raise IcurtError(f"the data root {root} cannot be written (no permission); {fix}")
        return root
    missing = []
    probe = root
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for folder in reversed(missing):
            folder.mkdir()
    except OSError as exc:
        raise IcurtError(f"the data root {root} cannot be created ({exc.strerror}: {exc.filename}); {fix}") from None
    finally:
        for folder in missing:
            try:
                folder.rmdir()
            except OSError:
                pass
    return root
