#!/usr/bin/env bash
# Makes one virtual environment per APScheduler release the tests check stores against:
#   bash .ci/aps-venvs.sh DIR   ->  DIR/3.6.3/bin/python, DIR/3.9.1/..., DIR/3.10.4/..., DIR/3.11.3/...
# Each has what an application on that release had (pytz before 3.10; SQLAlchemy it supports),
# and a redis-py client for its RedisJobStore: every release asks for redis>=3.0 (zadd with a
# mapping), and each gets the major that was current while it was the newest APScheduler 3:
# 3.x for 3.6.3 (2019-2020), 4.x for 3.9.1 (2022), 5.x for 3.10.4 (2023-2024), the newest for 3.11.
# A venv made before the redis client was added gets it installed into it.
set -euo pipefail
dir="${1:?usage: aps-venvs.sh DIR}"
mkdir -p "$dir"
make_venv() {
  local version=$1; shift
  if [ -x "$dir/$version/bin/python" ] && "$dir/$version/bin/python" -c "import apscheduler, sqlalchemy, redis" 2>/dev/null; then
    return
  fi
  [ -x "$dir/$version/bin/python" ] || python3 -m venv "$dir/$version"
  "$dir/$version/bin/pip" install -q --disable-pip-version-check "apscheduler==$version" "$@"
}
make_venv 3.6.3 "sqlalchemy<1.4" "tzlocal<3" "setuptools<70" pytz "redis>=3,<4"
make_venv 3.9.1 "sqlalchemy<2" "tzlocal<5" "setuptools<70" pytz "redis>=4,<5"
make_venv 3.10.4 "sqlalchemy<2.1" tzlocal "setuptools<70" pytz "redis>=5,<6"
make_venv 3.11.3 sqlalchemy tzlocal pytz redis
