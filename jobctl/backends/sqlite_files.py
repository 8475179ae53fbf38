"""SQLite files as the application keeps them: opened so that jobctl never creates a file,
never leaves -wal or -shm files of its own behind, and never locks the application out.

- Where this user may write, reads use a read-write connection that refuses writes
  (`PRAGMA query_only`), which SQLite tidies up on close as the application would.
- Where not, the file is opened `mode=ro`, sharing the running application's -shm; with the
  application stopped, a WAL-mode file is read `immutable` (mode=ro cannot create the -shm it
  needs), and the read is checked afterwards: if the file was written meanwhile, it is refused.
- Errors SQLite words as "readonly database" or "unable to open" are said by their real cause.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable

from jobctl.errors import MissingStore, StoreError


class SqliteFile:
    """One SQLite store file: how to connect to it, and what went wrong when it fails."""

    def __init__(self, path: str | None, write: bool, create: bool) -> None:
        if not path or path == ":memory:":
            raise StoreError("an in-memory SQLite database holds no jobs: give the store's file path")
        if os.path.isdir(path):
            raise StoreError(f"{path} is a folder, not a SQLite file")
        if not os.path.isfile(path) and not create:
            raise MissingStore(f"no such SQLite file: {path}")
        self.path = os.path.realpath(path)  # its folder holds the -wal, -shm and journal
        self.write = write or create
        self.created_file = create and not os.path.exists(self.path)
        self.immutable_fingerprint: tuple | None = None
        # mode=ro/rw never create the file; rwc (create) only for import --create-table
        if create:
            self.mode, self.query_only = "rwc", False
        elif write:
            self.mode, self.query_only = "rw", False
            if not os.access(self.path, os.W_OK):
                raise StoreError(f"cannot change {self.path}: this user may not write the file")
        else:
            self.mode, self.query_only = read_mode(self.path)
            if "immutable" in self.mode:  # read without locks: notice if the application writes meanwhile
                self.immutable_fingerprint = fingerprint(self.path)

    def connector(self, lock_seconds: int) -> Callable[[], sqlite3.Connection]:
        """A function making one connection, waiting at most `lock_seconds` for a lock."""
        uri = f"file:{urllib.parse.quote(self.path)}?mode={self.mode}"
        query_only = self.query_only

        def connect() -> sqlite3.Connection:
            connection = sqlite3.connect(uri, uri=True, timeout=lock_seconds, check_same_thread=False)
            if query_only:
                connection.execute("PRAGMA query_only = ON")
            return connection

        return connect

    def check_stable(self) -> None:
        """An immutable read is only right if nothing wrote the file meanwhile."""
        if self.immutable_fingerprint and fingerprint(self.path) != self.immutable_fingerprint:
            raise StoreError(
                f"{self.path} was written by another process while jobctl read it without locks "
                "(this user may not create its -shm file); run the command again"
            )

    def explain(self, message: str) -> StoreError | None:
        """SQLite's 'readonly database' and 'unable to open', said by their real cause."""
        self.check_stable()
        if message in ("attempt to write a readonly database", "unable to open database file"):
            reason = access_problem(self.path, self.write)
            if reason:
                return StoreError(f"cannot {'change' if self.write else 'read'} {self.path}: {reason}")
        return None

    def remove_created(self) -> None:
        if self.created_file and os.path.exists(self.path):
            os.remove(self.path)
            self.created_file = False


def read_mode(path: str) -> tuple[str, bool]:
    """How to open a SQLite file for reading: (URI mode, whether to set query_only).

    A read-only connection to a WAL-mode database leaves behind the -wal and -shm files it
    needed (it may not checkpoint them away on close); made by the operator's user, they can
    lock the application out. So where we may write, read through a read-write connection
    that refuses writes, which SQLite tidies up as the application would. Where we may not
    and no other process has the database open (no -wal, no -shm), mode=ro cannot create the
    -shm it needs, so read the file as immutable: nothing else is writing it.
    """
    folder = os.path.dirname(path)  # the path is already the real, absolute one
    if os.access(path, os.W_OK) and os.access(folder, os.W_OK):
        return "rw", True
    sidecars = any(os.path.exists(path + suffix) for suffix in ("-wal", "-shm"))
    if not sidecars and is_wal(path):
        return "ro&immutable=1", False
    return "ro", False


def fingerprint(path: str) -> tuple | None:
    """What changes when the database file itself is written (or replaced). A reader opening
    it, or writes still in its -wal, leave it alone: a lockless read of it stays consistent."""
    try:
        st = os.stat(path)
    except OSError:  # moved or removed meanwhile: changed
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def access_problem(path: str, write: bool) -> str | None:
    """Why SQLite said 'readonly database' or 'unable to open', in words, where we can tell."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return f"there is no folder {folder}"
    if os.path.exists(path) and not os.access(path, os.R_OK | (os.W_OK if write else 0)):
        return f"this user may not {'write' if write else 'read'} the file"
    sidecars = [path + s for s in ("-wal", "-shm", "-journal") if os.path.exists(path + s)]
    locked_out = [os.path.basename(p) for p in sidecars if not os.access(p, os.R_OK | os.W_OK)]
    if locked_out:
        return f"this user may not write {' and '.join(locked_out)} beside it (run jobctl as the store's owner)"
    if not os.access(folder, os.W_OK):
        return "this user may not write its folder, where SQLite must create its journal or -shm file"
    return None


def is_wal(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    # bytes 18 and 19 of the header (file format write/read versions) are 2 in WAL mode
    return header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"
