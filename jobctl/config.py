"""Named stores from a TOML config file, and where each setting comes from.

    # ~/.config/jobctl/config.toml   (or $JOBCTL_CONFIG)
    default = "prod"

    [stores.prod]
    url = "postgresql://scheduler@db.internal/app"
    password_env = "APP_DB_PASSWORD"      # the password comes from this variable, not the file
    table = "apscheduler_jobs"

    [stores.local]
    url = "sqlite:////srv/app/jobs.sqlite"

    [stores.cache]
    url = "redis://cache.internal:6379/0"
    password_env = "REDIS_PASSWORD"
    jobs_key = "myapp.jobs"                # RedisJobStore's jobs_key and run_times_key
    run_times_key = "myapp.run_times"

    [stores.v4]
    url = "postgresql://scheduler@db.internal/app"
    kind = "aps4"                          # APScheduler 4's tables (found by itself unless the
    channel = "apscheduler"                # database holds both); its event broker's channel
    broker_url = "redis://cache.internal:6379/0"   # its Redis event broker, if not PostgreSQL's

Precedence: command-line option > environment variable > config file > default, except that
a store named with --store or JOBCTL_STORE beats JOBCTL_URL/TABLE/SCHEMA in the environment.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobctl.errors import UsageError

FIELDS = ("url", "table", "schema", "jobs_key", "run_times_key", "kind", "channel", "broker_url")


def config_path() -> Path:
    if os.environ.get("JOBCTL_CONFIG"):
        return Path(os.environ["JOBCTL_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "jobctl" / "config.toml"


def status(path: Path) -> str:
    """How the config file stands: "found", "not found", or "not readable by this user"."""
    try:
        with path.open("rb"):
            return "found"
    except (FileNotFoundError, NotADirectoryError):
        return "not found"
    except OSError:
        return "not readable by this user"


def load(path: Path) -> dict[str, Any]:
    """The parsed config file; {} when the default file is absent or not this user's.

    `sudo -u app jobctl` keeps a HOME the user may not enter or read: a config file there is
    not theirs, so it is ignored (`jobctl config` says so); one named by JOBCTL_CONFIG is not.
    """
    explicit = bool(os.environ.get("JOBCTL_CONFIG"))
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        if explicit:
            raise UsageError(f"JOBCTL_CONFIG names {path}, which does not exist") from None
        return {}
    except OSError as exc:
        if explicit or not isinstance(exc, PermissionError):
            raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python < 3.11
        import tomli as tomllib
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    stores = data.get("stores", {})
    if not isinstance(stores, dict) or not all(isinstance(v, dict) for v in stores.values()):
        raise UsageError(f"config file {path}: [stores.NAME] tables expected")
    return data


@dataclass
class Resolved:
    """The settings a command runs with, and where each came from."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    store: str | None = None
    path: Path | None = None


def resolve(given: dict[str, Any], sources: dict[str, str]) -> Resolved:
    """Merge the named store (from --store / JOBCTL_STORE / the file's default) under what
    was given as options or environment variables."""
    path = config_path()
    data = load(path)
    resolved = Resolved(dict(given), dict(sources), path=path)
    name = given.get("store") if sources.get("store") in ("option", "environment") else data.get("default")
    if not name:
        return resolved
    stores = data.get("stores", {})
    if name not in stores:
        known = ", ".join(sorted(stores)) or "none"
        raise UsageError(f"no store named {name!r} in {path} (stores: {known})")
    resolved.store = name
    entry = stores[name]
    # a store named on purpose (--store, JOBCTL_STORE) beats stray JOBCTL_URL-style variables;
    # the file's default does not. Command-line options beat both.
    named = sources.get("store") in ("option", "environment")
    outranks = ("option",) if named else ("option", "environment")
    for key in FIELDS:
        if key in entry and sources.get(key) not in outranks:
            resolved.values[key] = entry[key]
            resolved.sources[key] = f"config [stores.{name}]"
    if entry.get("password_env") and resolved.sources.get("url", "").startswith("config"):
        resolved.values["url"] = _with_password(entry["url"], entry["password_env"])
    return resolved


def _with_password(url: str, variable: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from jobctl.backends import is_redis

    if variable not in os.environ:
        raise UsageError(f"the store's password comes from ${variable}, which is not set")
    if is_redis(url):
        from jobctl.backends.redis_aps3 import with_password

        try:
            return with_password(url, os.environ[variable])
        except ValueError:
            raise UsageError(f"malformed store URL {masked(url)!r} in the config file") from None
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UsageError(f"malformed store URL {masked(url)!r} in the config file") from None
    return parsed.set(password=os.environ[variable]).render_as_string(hide_password=False)


def masked(url: str | None) -> str | None:
    if not url:
        return url
    from jobctl.backends import is_redis

    if is_redis(url):
        from jobctl.backends.redis_aps3 import redacted

        return redacted(url)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # ValueError: a port SQLAlchemy cannot read
        import re

        return re.sub(r"^([^:/]+://[^:/@]*:)[^@]*@", r"\1***@", url)
