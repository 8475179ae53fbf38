"""The registry of backends: which class opens a store, by its URL's scheme.

Entries name a module and class, imported only when a store of that kind is opened, so
`jobctl --help` imports no database library.
"""

from __future__ import annotations

import importlib

from jobctl.backends.base import Backend, Record, Stats, Target
from jobctl.errors import UsageError

# URL scheme (the part before "://", less any "+driver") -> "module:Class"
BACKENDS = {
    "sqlite": "jobctl.backends.sql_aps3:SqlJobTable",
    "postgresql": "jobctl.backends.sql_aps3:SqlJobTable",
    "mysql": "jobctl.backends.sql_aps3:SqlJobTable",
    "mariadb": "jobctl.backends.sql_aps3:SqlJobTable",
}
# any other scheme is handed to SQLAlchemy, which knows more databases than these
FALLBACK = "jobctl.backends.sql_aps3:SqlJobTable"


def scheme_of(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].strip().lower()


def open_backend(target: Target, write: bool, create: bool, lock_seconds: int, answer_seconds: int = 10) -> Backend:
    """Open the store `target` names. Without `create` a missing store is MissingStore and
    nothing is made; `create` is for `import --create-table` alone."""
    if not target.url:
        raise UsageError("no job store given: pass --url URL or set JOBCTL_URL")
    module_name, _, class_name = BACKENDS.get(scheme_of(target.url), FALLBACK).partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = backend_class(target, write=write, create=create, lock_seconds=lock_seconds, answer_seconds=answer_seconds)
    return backend


__all__ = ["BACKENDS", "Backend", "Record", "Stats", "Target", "open_backend"]
