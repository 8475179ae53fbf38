"""The job stores a companion attaches to, and the companion's own small connections to them.

Runs inside the application, under its SQLAlchemy (1.3 to 2.x) and redis-py (3.5 to 8.x):
nothing is imported at module level, and the application's own engine and Redis pool are never
used to write (their connections are the scheduler's; a slow write of ours must not hold one).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

SQL, REDIS = "sql", "redis"

# Every wait on the network is bounded (SPEC rule 6). Seconds.
CONNECT_TIMEOUT = 5.0
STATEMENT_TIMEOUT = 5.0
LOCK_TIMEOUT = 2.0
# SQLite: how long a write of ours waits for the file's one write lock before it is retried later.
SQLITE_BUSY_TIMEOUT = 1.0
SOCKET_TIMEOUT = 5.0


@dataclass
class StoreRef:
    """One attached job store, as the companion's parts (records, heartbeat, wake, guard) see it.

    `store` is the application's APScheduler job store (read its attributes, never its
    connections). `engine` (SQL) and `redis` (Redis) are the companion's own: a SQLAlchemy engine
    of pool_size 1 (+1 overflow, so a listening thread may hold one connection) with bounded
    connect, statement and lock waits; a redis-py client on its own small pool with socket
    timeouts. Both are None where the kind has none."""

    alias: str
    store: Any
    kind: str  # SQL or REDIS
    table: str | None = None  # SQL: the job table's name
    schema: str | None = None  # SQL: its schema, if any
    jobs_key: str | None = None  # Redis: the jobs hash
    run_times_key: str | None = None  # Redis: the run-times sorted set
    engine: Any = None
    redis: Any = None
    extra: dict[str, Any] = field(default_factory=dict)  # room for the other parts' own state

    def describe(self) -> str:
        if self.kind == SQL:
            return f"job store {self.alias!r} (table {self.schema + '.' if self.schema else ''}{self.table})"
        return f"job store {self.alias!r} (Redis {self.jobs_key})"

    def close(self) -> None:
        """Let go of the companion's own connections (never the application's)."""
        try:
            if self.engine is not None:
                self.engine.dispose()
            if self.redis is not None:
                self.redis.connection_pool.disconnect()
        except Exception:  # noqa: BLE001 - closing is best effort; the process may be exiting
            logging.getLogger("jobctl.companion").debug("closing %s", self.describe(), exc_info=True)


def kind_of(store: Any) -> str | None:
    """SQL for an APScheduler 3 SQLAlchemyJobStore, REDIS for a RedisJobStore (or a subclass of
    either), None for any other store (memory, MongoDB, ...), which the companion leaves alone.
    By class name along the MRO, so that no store module (and so no driver) is imported here."""
    names = {cls.__name__ for cls in type(store).__mro__}
    if "SQLAlchemyJobStore" in names and hasattr(store, "jobs_t") and hasattr(store, "engine"):
        return SQL
    if "RedisJobStore" in names and hasattr(store, "redis") and hasattr(store, "jobs_key"):
        return REDIS
    return None


def job_stores(scheduler: Any, aliases: list[str] | None = None) -> dict[str, Any]:
    """The scheduler's SQL and Redis job stores ({alias: store}), ALIASES only if given.

    Read under the scheduler's `_jobstores_lock`, as the scheduler reads them; the scheduler holds
    that lock while it processes jobs, which a slow store can make long, so the wait is bounded
    and past it the dict is copied without the lock (a dict copy is atomic under the GIL)."""
    lock = getattr(scheduler, "_jobstores_lock", None)
    acquired = False
    try:
        if lock is not None:
            acquired = lock.acquire(timeout=2.0)
        stores = dict(getattr(scheduler, "_jobstores", {}))
    finally:
        if acquired and lock is not None:
            lock.release()
    return {alias: store for alias, store in stores.items()
            if (aliases is None or alias in aliases) and kind_of(store) is not None}


def make_ref(alias: str, store: Any) -> StoreRef | None:
    """A StoreRef with the companion's own connection for STORE, or None for a store it cannot
    write beside (an in-memory SQLite database: a second engine would see another database)."""
    kind = kind_of(store)
    if kind == SQL:
        engine = sql_engine(store.engine.url)
        if engine is None:
            return None
        table = store.jobs_t
        return StoreRef(alias=alias, store=store, kind=SQL, table=table.name, schema=table.schema, engine=engine)
    if kind == REDIS:
        return StoreRef(alias=alias, store=store, kind=REDIS, jobs_key=_text(store.jobs_key),
                        run_times_key=_text(getattr(store, "run_times_key", None)), redis=redis_client(store.redis))
    return None


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def sql_engine(url: Any) -> Any:
    """A small engine on the store's URL (the URL object itself: its string form hides the
    password in SQLAlchemy 1.4+), with every wait bounded for the dialect at hand. The store's
    own engine_options (connect_args, creator) cannot be read back from its engine and are not
    copied: what the URL says is what the companion connects with."""
    from sqlalchemy import create_engine, event

    backend, driver = url.get_backend_name(), url.get_driver_name()
    connect_args: dict[str, Any] = {}
    on_connect: list[str] = []
    options: dict[str, Any] = {}
    query = dict(url.query or {})
    if backend == "sqlite":
        if url.database in (None, "", ":memory:") or "mode=memory" in str(url.database):
            return None
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT
    else:
        # pool_size 1: the companion writes from one thread, in short transactions; the overflow
        # of 1 lets a wake-up listener hold a connection without starving the writer.
        options.update(pool_size=1, max_overflow=1, pool_timeout=CONNECT_TIMEOUT, pool_pre_ping=True, pool_recycle=1800)
        if backend == "postgresql":
            statement = f"-c statement_timeout={int(STATEMENT_TIMEOUT * 1000)} -c lock_timeout={int(LOCK_TIMEOUT * 1000)}"
            if driver in ("psycopg2", "psycopg", "psycopg2cffi"):  # libpq: the options travel with the connection
                if "connect_timeout" not in query:
                    connect_args["connect_timeout"] = int(CONNECT_TIMEOUT)
                existing = query.get("options")
                connect_args["options"] = f"{existing} {statement}" if isinstance(existing, str) else statement
            else:  # pg8000 and others: a timeout argument, then SET on each new connection
                if driver == "pg8000":
                    connect_args["timeout"] = CONNECT_TIMEOUT
                on_connect += [f"SET statement_timeout = {int(STATEMENT_TIMEOUT * 1000)}",
                               f"SET lock_timeout = {int(LOCK_TIMEOUT * 1000)}"]
        elif backend in ("mysql", "mariadb"):
            if driver == "mysqlconnector":
                connect_args["connection_timeout"] = int(CONNECT_TIMEOUT)
            else:  # pymysql, mysqldb (mysqlclient), mariadbconnector
                connect_args.update(connect_timeout=int(CONNECT_TIMEOUT), read_timeout=int(STATEMENT_TIMEOUT),
                                    write_timeout=int(STATEMENT_TIMEOUT))
            on_connect.append(f"SET SESSION innodb_lock_wait_timeout = {max(1, int(LOCK_TIMEOUT))}")
    engine = create_engine(url, connect_args=connect_args, **options)
    if on_connect:
        def set_timeouts(dbapi_connection: Any, _record: Any) -> None:
            for statement in on_connect:
                cursor = dbapi_connection.cursor()
                try:
                    cursor.execute(statement)
                except Exception:  # noqa: BLE001 - a server without the setting keeps its default
                    logging.getLogger("jobctl.companion").debug("%s failed", statement, exc_info=True)
                finally:
                    cursor.close()
            if backend == "postgresql":
                dbapi_connection.commit()  # drivers that open a transaction for SET

        event.listen(engine, "connect", set_timeouts)
    return engine


def redis_client(app_client: Any) -> Any:
    """A client like the store's (same server, database, credentials, TLS; same connection
    class, so a Unix socket stays one) on its own pool of at most 4 connections, with socket
    timeouts and without redis-py's own retries (the companion retries on its own schedule)."""
    import redis

    pool = app_client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    connection_class = pool.connection_class
    kwargs["socket_timeout"] = SOCKET_TIMEOUT
    if _accepts(connection_class, "socket_connect_timeout"):
        kwargs["socket_connect_timeout"] = CONNECT_TIMEOUT
    kwargs.pop("retry_on_timeout", None)
    # redis-py 7+ keeps per-pool state among the kwargs (a maintenance-notification handler
    # bound to the application's pool, the timeouts it restores): the new pool makes its own.
    for key in [k for k in kwargs if k.startswith(("maint_notifications", "orig_"))]:
        del kwargs[key]
    if "retry" in kwargs:
        try:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            kwargs["retry"] = Retry(NoBackoff(), 0)
        except Exception:  # noqa: BLE001 - an older redis-py has no Retry and does not retry
            kwargs.pop("retry", None)
    own_pool = redis.ConnectionPool(connection_class=connection_class, max_connections=4, **kwargs)
    return redis.Redis(connection_pool=own_pool)


def _accepts(cls: Any, name: str) -> bool:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return False
        if name in parameters:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return False
    return False
