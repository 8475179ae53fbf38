"""The registry of backends: which class opens a store, by its URL's scheme.

Entries name a module and class, imported only when a store of that kind is opened, so
`jobctl --help` imports no database library.
"""

from __future__ import annotations

import importlib

from jobctl.backends.base import Backend, Page, Record, Row, Stats, Target
from jobctl.errors import UsageError

# URL scheme (the part before "://", less any "+driver") -> "module:Class"
BACKENDS = {
    "sqlite": "jobctl.backends.sql_aps3:SqlJobTable",
    "postgresql": "jobctl.backends.sql_aps3:SqlJobTable",
    "mysql": "jobctl.backends.sql_aps3:SqlJobTable",
    "mariadb": "jobctl.backends.sql_aps3:SqlJobTable",
    "redis": "jobctl.backends.redis_aps3:RedisJobKeys",
    "rediss": "jobctl.backends.redis_aps3:RedisJobKeys",
    "unix": "jobctl.backends.redis_aps3:RedisJobKeys",
}
# any other scheme is handed to SQLAlchemy, which knows more databases than these
FALLBACK = "jobctl.backends.sql_aps3:SqlJobTable"
# a SQL database may hold another kind of store than APScheduler 3's job table
KINDS = {"aps4": "jobctl.backends.sql_aps4:SqlScheduleTables"}


def scheme_of(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].strip().lower()


def backend_class(url: str, kind: str | None = None) -> type[Backend]:
    """The class that opens stores at this URL (its module imported, nothing connected)."""
    entry = BACKENDS.get(scheme_of(url), FALLBACK)
    if kind in KINDS and not is_redis(url):
        entry = KINDS[kind]
    module_name, _, class_name = entry.partition(":")
    backend_class: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return backend_class


def is_redis(url: str) -> bool:
    return BACKENDS.get(scheme_of(url), FALLBACK).startswith("jobctl.backends.redis_aps3:")


def open_backend(target: Target, write: bool, create: bool, lock_seconds: int, answer_seconds: int = 10) -> Backend:
    """Open the store `target` names. Without `create` a missing store is MissingStore and
    nothing is made; `create` is for `import --create-table` alone."""
    if not target.url:
        raise UsageError("no job store given: pass --url URL or set JOBCTL_URL")
    from jobctl.backends.sql_aps3 import OtherKind

    try:
        backend: Backend = backend_class(target.url, target.kind)(target, write=write, create=create, lock_seconds=lock_seconds, answer_seconds=answer_seconds)
    except OtherKind as found:  # the database holds APScheduler 4's tables, and no job table
        backend = backend_class(target.url, found.kind)(target, write=write, create=create, lock_seconds=lock_seconds, answer_seconds=answer_seconds)
    return backend


__all__ = ["BACKENDS", "Backend", "Page", "Record", "Row", "Stats", "Target", "backend_class", "is_redis", "open_backend"]
