"""Files: written so that a reader never sees half of one (write beside, then rename), read through
one reader per format that turns a damaged file into one line (which file, and what to do), the
check of the data root every command runs first, and the words for a full disk."""

from __future__ import annotations

import errno
import json
import os
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from icurt.errors import IcurtError
from icurt.stage_table import INPUT_STAGE, STAGE_NAMES

DISK_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up"}


def write_json(path: str | Path, data: Any, sort_keys: bool = False) -> None:
    """`data` as indented JSON at `path`, replaced atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n")


def write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
    except OSError:
        tmp.unlink(missing_ok=True)   # a full disk must not keep half a file
        raise
    os.replace(tmp, path)


def read_json(path: str | Path, fix: str | None = None) -> Any:
    """The JSON at `path`; IcurtError (one line: the file, the damage, `fix` or what to do) when it
    is not valid JSON. A missing file raises FileNotFoundError: callers say what its absence means."""
    with reading(path, fix):
        return json.loads(Path(path).read_bytes().decode("utf-8"))


def read_toml(path: str | Path, fix: str | None = None) -> dict:
    """A run's TOML file (its config.toml), with damage said as read_json says it."""
    import tomllib

    with reading(path, fix):
        return tomllib.loads(Path(path).read_bytes().decode("utf-8"))


def read_npz(path: str | Path, fix: str | None = None) -> dict:
    """Every array of the .npz at `path`, loaded (name -> np.ndarray) with allow_pickle=False;
    IcurtError when the archive is truncated or holds object arrays (which would need unpickling)."""
    import numpy as np

    with reading(path, fix), np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def read_npy(path: str | Path, fix: str | None = None):
    """The array of the .npy at `path` (allow_pickle=False), damage said in one line."""
    import numpy as np

    with reading(path, fix):
        return np.load(path, allow_pickle=False)


def read_parquet(path: str | Path, columns: list[str] | None = None, fix: str | None = None):
    """The Parquet file at `path` as a pandas DataFrame, damage said in one line."""
    import pandas as pd

    with reading(path, fix):
        return pd.read_parquet(path, columns=columns)


def read_parquet_columns(path: str | Path, fix: str | None = None) -> list[str]:
    """The column names of the Parquet file at `path` (its footer only), damage said in one line."""
    import pyarrow.parquet as pq

    with reading(path, fix):
        return pq.read_schema(path).names


@contextmanager
def reading(path: str | Path, fix: str | None = None, also: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Inside: read `path`. A damaged file (truncated, not of its format, holding what icurt never
    writes) becomes IcurtError: '<path> is damaged (<what>); <fix>', `fix` defaulting to the
    advice for the run the file belongs to (rerun_advice); `also`: more exception types that mean
    damage to this reader. A missing file, a permission and a full disk pass unchanged."""
    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile, zlib.error, *also) as exc:
        if disk_full(exc):
            raise
        raise damaged(path, damage(exc), fix) from exc
    except Exception as exc:
        if type(exc).__module__.startswith(("pyarrow", "_pickle", "pickle")):
            raise damaged(path, damage(exc), fix) from exc
        raise


def damaged(path: str | Path, what: str, fix: str | None = None) -> IcurtError:
    """The one line for a damaged file: '<path> is damaged (<what>); <fix or rerun_advice(path)>'
    (`what` is kept as the error's `damage` too)."""
    error = IcurtError(f"{path} is damaged ({what}); {fix or rerun_advice(path)}")
    error.damage = what
    return error


def damage(exc: BaseException) -> str:
    """A few words on what is wrong with a file, from the error its reader raised."""
    text = " ".join(str(exc).split())
    if isinstance(exc, zipfile.BadZipFile) or "zip archive" in text:
        return "not a complete zip archive: truncated or overwritten"
    if "Object arrays cannot be loaded" in text or "pickled data" in text:
        return "it holds Python objects, which icurt never writes and will not unpickle"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg.removesuffix(' starting at')}"
    if type(exc).__name__ == "UnpicklingError":
        return "not a plain state_dict of tensors: refused to unpickle it (weights_only)"
    if "magic bytes" in text or "Parquet" in text:
        return "not a complete Parquet file: truncated or overwritten"
    if isinstance(exc, EOFError) or "not fully written" in text:
        return "truncated"
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def rerun_advice(path: str | Path) -> str:
    """What to do about a damaged file of a run: rerun its stage (or read another run of it); for a
    run not finished, start a new one; outside any run, replace the file."""
    for folder in Path(path).parents:
        stage = folder.parent.name
        if stage in STAGE_NAMES:
            if folder.name.startswith("."):
                return f"start a new {stage} run instead of resuming this one"
            another = (f" or pass another {stage} run with --from" if stage in INPUT_STAGE.values() else "")
            return f"rerun `icurt {stage}`{another}"
    return "replace or delete it"


def disk_full(exc: BaseException | None) -> OSError | None:
    """The OSError meaning no space (ENOSPC) or no quota (EDQUOT) left that `exc` is, or was raised
    from or while handling; None otherwise."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_line(error: OSError) -> str:
    """'<the disk is full> (writing <path>); free space ...' for an ENOSPC or EDQUOT error."""
    where = f" (writing {error.filename})" if error.filename else ""
    return (f"{DISK_FULL.get(error.errno, 'the disk is full')}{where}; free space on that disk (or point "
            "ICURT_DATA / --set paths.data=... at a larger one)")


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
