#!/usr/bin/env bash
# Makes one virtual environment per APScheduler release the tests check stores against:
#   bash .ci/aps-venvs.sh DIR   ->  DIR/3.6.3/bin/python, DIR/3.9.1/..., DIR/3.10.4/..., DIR/3.11.3/...
# Each has what an application on that release had (pytz before 3.10; SQLAlchemy it supports).
set -euo pipefail
dir="${1:?usage: aps-venvs.sh DIR}"
mkdir -p "$dir"
make_venv() {
  local version=$1; shift
  if [ -x "$dir/$version/bin/python" ] && "$dir/$version/bin/python" -c "import apscheduler, sqlalchemy" 2>/dev/null; then
    return
  fi
  python3 -m venv "$dir/$version"
  "$dir/$version/bin/pip" install -q --disable-pip-version-check "apscheduler==$version" "$@"
}
make_venv 3.6.3 "sqlalchemy<1.4" "tzlocal<3" "setuptools<70" pytz
make_venv 3.9.1 "sqlalchemy<2" "tzlocal<5" "setuptools<70" pytz
make_venv 3.10.4 "sqlalchemy<2.1" tzlocal "setuptools<70" pytz
make_venv 3.11.3 sqlalchemy tzlocal pytz
