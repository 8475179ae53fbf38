"""The one place the fixture scripts turn a store URL into an APScheduler 3 job store.

Runs under any APScheduler 3.6-3.11 (write_store.py, load_store.py, run_scheduler.py and
add_jobs.py import it; they sit beside it, so it is importable wherever they run, and only there).

- A SQLAlchemy URL (sqlite:///jobs.sqlite, postgresql+psycopg://..., mysql+pymysql://...) gives
  SQLAlchemyJobStore(url=, tablename=TABLE[, tableschema=SCHEMA][, engine_options=...]).
- A Redis URL, redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS; the user name,
  password and any %-escapes in them are decoded; the port defaults to 6379, the database to 0),
  gives RedisJobStore(jobs_key=, run_times_key=, host=, port=, db=[, password=][, username=]) of
  that release: jobs in the hash JOBS_KEY, next run times in the sorted set RUN_TIMES_KEY.
  TABLE, SCHEMA and engine options mean nothing there and are ignored; the keys come from
  --jobs-key and --run-times-key (APScheduler's defaults 'apscheduler.jobs' and
  'apscheduler.run_times'), which the scripts take for any URL and ignore for SQL.

In both, pickle_protocol is passed only when the script was given one (--protocol): otherwise
the store uses its release's own default (pickle.HIGHEST_PROTOCOL of the running Python).

add_jobs.py keeps its positional shape for both, URL TABLE [options] SPEC...: for a Redis URL
TABLE is a placeholder (conftest.add_jobs passes 'apscheduler_jobs') and the keys are options.
"""

from urllib.parse import unquote, urlsplit

DEFAULT_JOBS_KEY = "apscheduler.jobs"
DEFAULT_RUN_TIMES_KEY = "apscheduler.run_times"


def is_redis(url):
    return url.split("://", 1)[0].lower() in ("redis", "rediss")


def add_redis_options(parser):
    """--jobs-key and --run-times-key, for a script's argparse parser."""
    parser.add_argument("--jobs-key", default=DEFAULT_JOBS_KEY, help="Redis: the hash holding the jobs")
    parser.add_argument("--run-times-key", default=DEFAULT_RUN_TIMES_KEY,
                        help="Redis: the sorted set holding their next run times")


def redis_connection(url):
    """The keyword arguments redis.Redis (and so RedisJobStore) takes for a redis:// URL."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise SystemExit(f"store_url: the database of {url!r} must be a number (redis://host:port/11)")
    connection = {"host": parts.hostname or "localhost", "port": parts.port or 6379, "db": int(path or 0)}
    if parts.password is not None:
        connection["password"] = unquote(parts.password)
    if parts.username:
        connection["username"] = unquote(parts.username)
    if parts.scheme.lower() == "rediss":
        connection["ssl"] = True
    return connection


def job_store(url, table="apscheduler_jobs", schema=None, protocol=None, engine_options=None,
              jobs_key=DEFAULT_JOBS_KEY, run_times_key=DEFAULT_RUN_TIMES_KEY):
    """The job store the application would configure for URL (see the module's docstring)."""
    options = {} if protocol is None else {"pickle_protocol": protocol}
    if is_redis(url):
        from apscheduler.jobstores.redis import RedisJobStore

        return RedisJobStore(jobs_key=jobs_key, run_times_key=run_times_key, **options, **redis_connection(url))
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    options.update(url=url, tablename=table)
    if schema:
        options["tableschema"] = schema
    if engine_options:
        options["engine_options"] = engine_options
    return SQLAlchemyJobStore(**options)


def counts(store, table):
    """What a load can change: {"rows": N} for a table (TABLE, schema-qualified or not), and for
    Redis {"rows": HLEN of the jobs hash, "run_times": ZCARD of the run-times set}."""
    if hasattr(store, "redis"):
        return {"rows": store.redis.hlen(store.jobs_key), "run_times": store.redis.zcard(store.run_times_key)}
    from sqlalchemy import text

    with store.engine.connect() as connection:
        return {"rows": connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()}
