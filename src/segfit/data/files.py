"""Reading a dataset's own files: paths that stay inside the dataset folder, text and JSON that fail as ``DataError``.

Names in annotation files and entries of dataset folders come from whoever made the dataset (a downloaded JSON, a
tar with symlinks): ``../../etc/passwd``, an absolute path or a symlink out of the folder would otherwise let a
reader open any file the process can read, and decoding errors would surface as bare ``UnicodeDecodeError``s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from segfit.data.records import DataError


def within(root: str | Path, name: Any, source: str | Path) -> Path:
    """``root / name`` for a ``name`` read from the file ``source``: ``relative`` (else a ``DataError`` naming
    ``source``) and ``contained`` (no symlink takes it out of ``root``). Only a name with a link in it is resolved:
    a COCO JSON names 100 000 images."""
    path = relative(root, name, source)
    probe = str(path)
    for _ in range(name.count("/") + 1):
        if os.path.islink(probe):
            return contained(path, root)
        probe = os.path.dirname(probe)
    return path


def relative(root: str | Path, name: Any, source: str | Path) -> Path:
    """``root / name`` if ``name`` is a relative path of plain names (no ``..``, not absolute), else a
    ``DataError`` naming ``source``, the file it was read from. No file system call, for long lists of names."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise DataError(str(source), f"file name {name!r} is not a path (a non-empty string)")
    parts = PurePosixPath(name).parts
    if not parts or name.endswith("/.") or name == ".":
        raise DataError(str(source), f"file name {name!r} names a folder, not a file")
    if PurePosixPath(name).is_absolute() or ".." in parts:
        raise DataError(str(source), f"file name {name!r} leaves the dataset folder {root}: names are relative to "
                                     f"it, without '..'")
    return Path(root) / name


def contained(path: Path, root: str | Path) -> Path:
    """``path``, if its real location (symlinks followed) is inside ``root``'s; else a ``DataError`` naming it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise DataError(str(path), f"leads to {real}, outside the dataset folder {root}: readers do not follow "
                                   f"links out of it (copy the file in, or point the split at where it is)")
    return path


def links_contained(paths: Iterable[Path], root: str | Path) -> None:
    """``contained`` for each of ``paths`` that is a symlink (one ``lstat`` for the others, for long listings)."""
    for path in paths:
        if os.path.islink(path):
            contained(path, root)


def subfolders(folder: str | Path, root: str | Path | None = None) -> list[Path]:
    """The folders in ``folder`` (unsorted), none of them a link out of ``root`` (default: ``folder``)."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                if entry.is_symlink():
                    contained(Path(entry.path), root or folder)
                found.append(Path(entry.path))
    return found


def read_text(path: Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``; missing or not text is a ``DataError`` naming it."""
    if not path.is_file():
        raise DataError(str(path), f"{what} not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(str(path), f"not UTF-8 text ({err})") from err


def read_json(path: Path, what: str = "JSON file") -> Any:
    """The parsed JSON of ``path``; missing, not text or not JSON is a ``DataError`` naming it."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as err:
        raise DataError(str(path), f"invalid JSON: {err}") from err
    except RecursionError as err:
        raise DataError(str(path), "invalid JSON: nested too deeply") from err
