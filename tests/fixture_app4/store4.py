"""What the APScheduler 4 fixture scripts share: the data store, serializer and event broker for
a URL, and the tables' row counts and digests (read with plain SQLAlchemy, not APScheduler).

Runs with APScheduler 4.0.0a6 (.ci/aps4-venv.sh) and PYTHONPATH=tests/fixture_app4.
"""

import hashlib

import sqlalchemy
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from apscheduler.serializers.cbor import CBORSerializer
from apscheduler.serializers.json import JSONSerializer
from apscheduler.serializers.pickle import PickleSerializer

TABLES = ("metadata", "tasks", "schedules", "jobs", "job_results")
# each table's key, for a stable order (metadata has one row and no key)
ORDER = {"metadata": "schema_version", "tasks": "id", "schedules": "id", "jobs": "id", "job_results": "job_id"}
# the async drivers' sync counterparts, for reading the tables around APScheduler
SYNC_DRIVERS = {"asyncpg": "psycopg", "asyncmy": "pymysql", "aiomysql": "pymysql", "aiosqlite": "pysqlite"}


def add_store_options(parser):
    parser.add_argument("url", help="SQLAlchemy URL (sqlite:///F, postgresql+psycopg://..., mysql+pymysql://...)")
    parser.add_argument("--schema", default=None, help="PostgreSQL schema, or MySQL/MariaDB database")
    parser.add_argument("--serializer", choices=("pickle", "json", "cbor"), default="pickle")
    parser.add_argument("--protocol", type=int, default=None, help="pickle protocol (APScheduler's default: 4)")


def serializer(name, protocol=None):
    if name == "pickle":
        return PickleSerializer() if protocol is None else PickleSerializer(protocol=protocol)
    return {"json": JSONSerializer, "cbor": CBORSerializer}[name]()


def data_store(options):
    """SQLAlchemyDataStore(URL, schema=..., serializer=...): given a URL it makes (and disposes
    of) its own engine, asynchronous where the driver is (psycopg, asyncpg, asyncmy, aiosqlite),
    else synchronous (pysqlite, pymysql) run in worker threads."""
    return SQLAlchemyDataStore(options.url, schema=options.schema,
                               serializer=serializer(options.serializer, options.protocol))


def sync_engine(url):
    url = sqlalchemy.make_url(url)
    backend, _, driver = url.drivername.partition("+")
    if driver in SYNC_DRIVERS:
        url = url.set(drivername=f"{backend}+{SYNC_DRIVERS[driver]}")
    return sqlalchemy.create_engine(url)


def _table(schema, name):
    return f"{schema}.{name}" if schema else name


def _value(value):
    if isinstance(value, memoryview):
        value = bytes(value)
    return value.hex() if isinstance(value, bytes) else repr(value)


def snapshot(url, schema=None):
    """{table: {"rows": N, "sha256": digest of every row in key order}}; a table that does not
    exist is {"rows": None, "sha256": None}."""
    engine = sync_engine(url)
    out = {}
    try:
        with engine.connect() as connection:
            existing = set(sqlalchemy.inspect(connection).get_table_names(schema=schema))
            for name in TABLES:
                if name not in existing:
                    out[name] = {"rows": None, "sha256": None}
                    continue
                digest = hashlib.sha256()
                count = 0
                query = f"SELECT * FROM {_table(schema, name)} ORDER BY {ORDER[name]}"
                for row in connection.execute(sqlalchemy.text(query)):
                    count += 1
                    digest.update(repr([_value(v) for v in row]).encode())
                out[name] = {"rows": count, "sha256": digest.hexdigest()}
    finally:
        engine.dispose()
    return out


def event_broker(kind, url):
    """An event broker: 'psycopg' or 'asyncpg' (PostgreSQL LISTEN/NOTIFY; URL a SQLAlchemy or
    libpq one), 'redis' (URL redis://...), or None for APScheduler's local (in-process) one."""
    if kind is None:
        return None
    if kind == "redis":
        from apscheduler.eventbrokers.redis import RedisEventBroker

        return RedisEventBroker(url)
    parsed = sqlalchemy.make_url(url)
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    if kind == "psycopg":
        from apscheduler.eventbrokers.psycopg import PsycopgEventBroker

        return PsycopgEventBroker(conninfo)
    if kind == "asyncpg":
        from apscheduler.eventbrokers.asyncpg import AsyncpgEventBroker

        return AsyncpgEventBroker(conninfo)
    raise SystemExit(f"unknown broker {kind!r}")
