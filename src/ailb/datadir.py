"""AILB_DATA_DIR is its owner's alone: directories 0700, files 0600.

What is kept there: the SQLite store (key hashes, and signing secrets in plain text, which a
signature check needs), the usage spool and the memory journal (who asked what), the memory
store and the embedded Chroma (conversations, documents). Three layers keep it private:

- `ailb serve` and `ailb keys` run with the umask 077 (PostgreSQL's server does the same), so
  whatever they create -- SQLite's -wal, -shm and -journal files, Chroma's files -- is
  owner-only whoever wrote the code that created it;
- AILB's own stores make their directories (`private_dir`) and database files (`private_file`)
  owner-only explicitly, umask or not (SQLite gives its -wal, -shm and -journal files the
  database file's mode);
- at start the gateway takes group and other permissions off whatever it finds there
  (`secure_data_dir`: a directory left looser by an older version or by hand), and logs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("ailb.datadir")

UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
_OTHERS = 0o077  # group and other permission bits


def private_dir(path: str | os.PathLike[str]) -> None:
    """`path` as a directory only its owner may use, and so any parents it had to make."""
    target = Path(path)
    missing: list[Path] = []
    p = target
    while not p.is_dir() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process or thread
            continue
        d.chmod(DIR_MODE)  # mkdir's mode went through the umask
    if not missing:
        _tighten(target)


def private_file(path: str | os.PathLike[str]) -> None:
    """`path` made empty and owner-only when missing (before SQLite creates it with the
    umask's mode); an existing one only loses group and other permissions."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_mode & _OTHERS and st.st_uid == os.geteuid():
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~_OTHERS)
    finally:
        os.close(fd)


def secure_data_dir(data_dir: str) -> int:
    """Group and other permissions taken off `data_dir` and everything in it (symbolic links
    are not followed, entries of other owners are left alone); returns how many entries
    changed, and logs them."""
    root = Path(data_dir)
    if not root.is_dir():
        return 0
    changed = _tighten(root)
    for parent, dirs, files in os.walk(root):
        changed += sum(_tighten(Path(parent, name)) for name in (*dirs, *files))
    if changed:
        log.warning(
            "data_dir_permissions_tightened",
            extra={
                "data_dir": str(root),
                "entries": changed,
                "detail": "group and other permissions removed: directories 0700, files 0600",
            },
        )
    return changed


def _tighten(path: Path) -> int:
    with contextlib.suppress(FileNotFoundError):  # removed meanwhile
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & _OTHERS or st.st_uid != os.geteuid():
            return 0
        path.chmod(stat.S_IMODE(st.st_mode) & ~_OTHERS)
        return 1
    return 0
