#!/usr/bin/env bash
# Makes the virtual environment the APScheduler 4 tests write, load and run stores with:
#   bash .ci/aps4-venv.sh DIR  ->  DIR/bin/python with APScheduler 4.0.0a6
# APScheduler 4 has the import name `apscheduler`, as 3 has, so it cannot share jobctl's venv.
# It has what SQLAlchemyDataStore and the event brokers need on SQLite (the stdlib driver, or
# aiosqlite), PostgreSQL (psycopg 3 and asyncpg: stores and both NOTIFY brokers), MariaDB/MySQL
# (asyncmy, the driver 4.0.0a6 is tested with, and PyMySQL, which it runs through a sync
# engine), Redis (the RedisEventBroker) and the CBOR serializer. Pinned, so a store written
# today is written the same way next year:
#   - cbor2 < 6: 4.0.0a6's CBORSerializer tag hook fails under cbor2 6 ("'bool' object has no
#     attribute 'tag'" on reading any stored object);
#   - sniffio: 4.0.0a6's SQLAlchemy store imports it, and anyio >= 4.12 no longer brings it.
# Nothing to do when DIR already imports all of that with 4.0.0a6 (make it anew: rm -rf DIR).
set -euo pipefail
dir="${1:?usage: aps4-venv.sh DIR}"
check='
import importlib.metadata as metadata
import aiosqlite, asyncmy, asyncpg, psycopg, pymysql, redis
import apscheduler.datastores.sqlalchemy, apscheduler.serializers.cbor
import apscheduler.eventbrokers.asyncpg, apscheduler.eventbrokers.psycopg, apscheduler.eventbrokers.redis
assert metadata.version("apscheduler") == "4.0.0a6", metadata.version("apscheduler")
'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
  exit 0
fi
[ -x "$dir/bin/python" ] || python3 -m venv "$dir"
echo '*' >"$dir/.gitignore"   # a venv inside the work tree is never committed
"$dir/bin/pip" install -q --disable-pip-version-check \
  "apscheduler[sqlalchemy,asyncpg,cbor,redis]==4.0.0a6" \
  "sqlalchemy[asyncio]==2.1.9" "anyio==4.16.0" "sniffio==1.3.1" "attrs==26.1.0" "tenacity==9.2.1" \
  "tzlocal==5.4.5" "cbor2==5.9.0" \
  "psycopg[binary]==3.3.9" "asyncpg==0.32.0" "pymysql==1.2.4" "asyncmy==0.2.18" "aiosqlite==0.22.1" \
  "redis==8.1.0"
"$dir/bin/python" -c "$check"
