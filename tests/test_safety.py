"""Rule 2: a row's pickle never runs. Hostile rows are unreadable (or inert), proven by marker files."""

from __future__ import annotations

import json
import pickle
import sqlite3

import pytest

from conftest import jobctl, rows
from jobctl import codec
from jobctl.errors import UnreadableState


def op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def hostile_pickles(marker) -> dict[str, bytes]:
    """Pickles that would create `marker` if anything in them ran."""
    command = f"touch {marker}"
    tup1 = lambda body: b"(" + body + b"t"  # noqa: E731
    return {
        "os.system": op_global("os", "system") + tup1(op_str(command)) + b"R.",
        "posix.system": op_global("posix", "system") + tup1(op_str(command)) + b"R.",
        "subprocess": op_global("subprocess", "check_call") + b"((" + op_str("touch") + op_str(str(marker)) + b"ltR.",
        "eval": op_global("builtins", "eval") + tup1(op_str(f"__import__('os').system({command!r})")) + b"R.",
        "getattr-import": (
            op_global("builtins", "getattr") + b"(" + op_global("builtins", "__import__")
            + tup1(op_str("os")) + b"R" + op_str("system") + b"tR" + tup1(op_str(command)) + b"R."
        ),
        "getattr-zoneinfo-dunder": (
            op_global("builtins", "getattr") + b"(" + op_global("zoneinfo", "ZoneInfo")
            + op_str("__init_subclass__") + b"tR)R."
        ),
        "getattr-datetime-module": (
            op_global("builtins", "getattr") + b"(" + op_global("datetime", "datetime")
            + op_str("__class__") + b"tR."
        ),
        "reconstructor-on-real-class": op_global("copyreg", "_reconstructor") + b"(" + op_global("datetime", "timedelta") + op_global("builtins", "object") + b"NtR.",
        "codecs-other-encoding": op_global("_codecs", "encode") + b"(" + op_str("x") + op_str("rot13") + b"tR.",
        "huge-bytes": op_global("builtins", "bytes") + b"(J" + (10**9).to_bytes(4, "little") + b"tR.",
        "pytz-path": op_global("pytz", "_p") + tup1(op_str("../../../../etc/passwd")) + b"R.",
        "zoneinfo-path": op_global("builtins", "getattr") + b"(" + op_global("zoneinfo", "ZoneInfo") + op_str("_unpickle") + b"tR(" + op_str("/etc/passwd") + b"K\x01tR.",
        "persistent-id": b"P1\n.",
    }


@pytest.mark.parametrize("name", sorted(hostile_pickles("x")))
def test_hostile_pickle_never_runs(name, tmp_path):
    marker = tmp_path / "ran"
    data = hostile_pickles(marker)[name]
    try:
        decoded = codec.decode(data)
    except UnreadableState:
        decoded = None
    assert not marker.exists(), f"{name} ran code"
    if decoded is not None:  # a call of an unknown global is only recorded: an inert stand-in
        assert codec.is_stand_in(decoded), (name, decoded)
    # and the real pickle would have run it: the test pickles are live
    if name in ("os.system", "getattr-import"):
        pickle.loads(data)
        assert marker.exists()


def test_combining_trigger_refs_are_never_imported(tmp_path):
    """AndTrigger's state names sub-trigger classes as text; APScheduler would import them."""
    from apscheduler.triggers.combining import AndTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from jobctl.schedule import fire

    record = fire.to_record(AndTrigger([IntervalTrigger(hours=1)]))
    vars(record)["triggers"] = [("os:system", {"version": 1})]
    with pytest.raises(ValueError, match="not an APScheduler trigger class"):
        fire.realize(record)


def add_row(path, job_id: str, data: bytes, next_run_time: float | None = 1.0) -> None:
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO apscheduler_jobs (id, next_run_time, job_state) VALUES (?, ?, ?)", (job_id, next_run_time, data))


def test_hostile_and_corrupt_rows_in_a_real_store(store_copy, tmp_path):
    path, url = store_copy("aps-3.11.3.sqlite")
    marker = tmp_path / "ran"
    for name, data in hostile_pickles(marker).items():
        add_row(path, f"evil_{name}", data)
    add_row(path, "corrupt", b"\x80\x05not a pickle at all")
    add_row(path, "not_a_job", pickle.dumps({"hello": "world"}))
    # a well-formed job whose argument would run a command when unpickled by APScheduler
    good = rows(path)["daily_reports"][1]
    job = codec.decode(good)
    job["args"] = (codec.decode(hostile_pickles(marker)["os.system"]),)
    job["id"] = "poisoned_args"
    add_row(path, "poisoned_args", codec.encode(job, 5), None)
    before = rows(path)

    listed = jobctl("--url", url, "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    states = {j["id"]: j["state"] for j in jobs}
    assert len(jobs) == len(before)
    assert states["corrupt"] == states["not_a_job"] == "unreadable"
    assert states["daily_reports"] in ("scheduled", "overdue")  # still read (the checked-in store ages)
    assert [j["state"] for j in jobs][-1] == "unreadable"  # unreadable rows come last
    unreadable = [j for j in jobs if j["state"] == "unreadable"]
    assert all(j["error"] for j in unreadable)
    for job_id in before:
        shown = jobctl("--url", url, "show", job_id, "-o", "json")
        assert shown.returncode == 0, shown.stderr
    poisoned = json.loads(jobctl("--url", url, "show", "poisoned_args", "-o", "json").stdout)
    assert poisoned["args"] == [f"os.system('touch {marker}')"]
    health = jobctl("--url", url, "health", "--detailed")
    assert "unreadable" in health.stdout
    assert not marker.exists()
    assert rows(path) == before


def test_unreadable_rows_are_not_rewritten(store_copy):
    path, url = store_copy("aps-3.11.3.sqlite")
    add_row(path, "corrupt", b"garbage")
    before = rows(path)
    result = jobctl("--url", url, "pause", "corrupt")
    assert result.returncode == 1 and "unreadable" in result.stderr
    assert rows(path) == before


def build_on(target: bytes, key: str, value: bytes) -> bytes:
    """A pickle that BUILDs slot state {key: value} onto whatever `target` pushes."""
    return b"\x80\x02" + target + b"N}(" + op_str(key) + value + b"s\x86b."


@pytest.mark.parametrize(
    "target",
    [
        op_global("apscheduler.triggers.cron", "CronTrigger"),  # a stand-in class every row shares
        op_global("pytz", "_p"),  # an allow-listed function
        op_global("pytz", "_p") + b"(" + op_str("Europe/Paris") + b"tR",  # a zone pytz shares process-wide
        op_global("shopapp.models", "Customer"),
    ],
)
def test_one_row_cannot_change_how_other_rows_decode(target, store_copy):
    """BUILD onto a shared object would let one row rewrite every later row's write-back."""
    path, _ = store_copy("aps-3.9.1.sqlite")
    good = rows(path)["weekday_digest"][1]
    before = codec.decode(good)
    try:
        codec.decode(build_on(target, "__stand_in_ref__", b"(" + op_str("os") + op_str("system") + b"t"))
        codec.decode(build_on(target, "zone", op_str("Asia/Tokyo")))
    except UnreadableState:
        pass
    after = codec.decode(good)
    assert codec.encode(after, 5) == codec.encode(before, 5)
    assert triggers_words(after) == "Monday to Friday at 09:00 Europe/Paris"


def triggers_words(decoded) -> str:
    from jobctl.schedule import words

    return words.describe(decoded["trigger"])


def test_allow_listed_functions_kept_as_values_write_back_as_themselves():
    for protocol, data in ((4, b"\x80\x04\x8c\x08builtins\x8c\x07getattr\x93."), (2, b"\x80\x02c__builtin__\ngetattr\n.")):
        decoded = codec.decode(data)
        out = codec.encode(decoded, protocol)
        assert b"getattr" in out and b"jobctl" not in out
        assert codec.decode(out) is decoded  # the same allow-listed entry
        if protocol == 2:
            assert b"c__builtin__\ngetattr\n" in out  # as Python 3 writes it for protocol 2


def test_an_overdue_every_second_job_shows_its_next_runs_at_once(store_copy):
    import datetime as dt
    import time

    from apscheduler.triggers.cron import CronTrigger

    from jobctl.schedule import fire

    record = fire.to_record(CronTrigger(second="*", timezone="UTC"))
    started = time.monotonic()
    now = dt.datetime.now(dt.timezone.utc)
    times = fire.fire_times(record, now, 3, first=now - dt.timedelta(days=365))
    assert time.monotonic() - started < 2
    assert times[0] < now <= times[1] < times[2]


def test_a_custom_trigger_class_is_shown_not_an_error(store_copy):
    path, url = store_copy()
    decoded = codec.decode(rows(path)["daily_reports"][1])
    custom = codec.decode(b"\x80\x04\x8c\x05myapp\x8c\tMyTrigger\x93)\x81}\x8c\x04hour\x8c\x019sb.")
    decoded["trigger"] = custom
    add_row(path, "custom", codec.encode(decoded, 5), 2e9)
    shown = jobctl("--url", url, "show", "custom", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["trigger"] == "custom trigger MyTrigger" and detail["upcoming_error"]


BOUND_METHODS_APP = '''
class Mailer:
    def __init__(self, address):
        self.address = address

    def notify(self, text=""):
        return self.address, text
'''


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_bound_methods_in_job_arguments_are_inert_and_write_back_exactly(protocol, tmp_path, monkeypatch):
    """APScheduler runs jobs whose arguments hold bound methods (pickled as
    getattr(obj, 'notify')); jobctl records the look-up, never makes it, shows it, and writes
    the same bytes back. Attribute look-ups on classes and functions jobctl resolved stay refused."""
    import importlib
    import sys

    (tmp_path / "mailapp.py").write_text(BOUND_METHODS_APP)
    monkeypatch.syspath_prepend(str(tmp_path))  # only to make the pickle, as the application does
    mailapp = importlib.import_module("mailapp")
    try:
        state = {"id": "notify", "func": "mailapp:run", "args": (mailapp.Mailer("ops@example.com").notify, "abc".upper),
                 "kwargs": {"then": mailapp.Mailer("b@example.com").notify}, "next_run_time": None, "trigger": None}
        data = pickle.dumps(state, protocol=protocol)
    finally:
        sys.modules.pop("mailapp", None)
    decoded = codec.decode(data)
    from jobctl.codec.display import safe_repr

    shown = safe_repr(decoded["args"])
    assert "mailapp.Mailer(" in shown and ".notify" in shown and "'abc'.upper" in shown, shown
    assert codec.encode(decoded, protocol) == data
    for hostile in ("getattr-datetime-module", "getattr-zoneinfo-dunder", "getattr-import"):
        with pytest.raises(UnreadableState):
            codec.decode(hostile_pickles(tmp_path / "ran")[hostile])


ADD_BOUND_METHOD_JOB = """
import sys
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from shopapp import jobs
from shopapp.models import Mailer

store = SQLAlchemyJobStore(url=sys.argv[1], pickle_protocol=int(sys.argv[2]))
scheduler = BackgroundScheduler(jobstores={"default": store}, timezone="UTC")
scheduler.add_job(jobs.cleanup, "interval", hours=1, id="callbacks",
                  args=[Mailer("ops@example.com").send_digest, "abc".upper],
                  kwargs={"then": Mailer("b@example.com").send_digest})
scheduler.start(paused=True)
scheduler.shutdown(wait=False)
"""


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_job_apscheduler_wrote_with_bound_methods_in_its_arguments(protocol, tmp_path):
    """A row as the application's own APScheduler writes it (args=[mailer.send_digest,
    'abc'.upper]): readable, shown, changed, and loaded back by APScheduler with the same
    arguments. Before: 'unreadable: refused attribute look-up'."""
    import subprocess

    from conftest import _app_env, aps_load, aps_python

    url = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    subprocess.run([aps_python("current"), "-c", ADD_BOUND_METHOD_JOB, url, str(protocol)],
                   check=True, env=_app_env(), capture_output=True, timeout=120)
    [(_, data)] = rows(tmp_path / "jobs.sqlite").values()
    assert codec.protocol_of(data) == protocol and b"getattr" in data

    decoded = codec.decode(data)
    mailer_method, upper = decoded["args"]
    assert isinstance(mailer_method, codec.BoundAttribute) and mailer_method.name == "send_digest"
    assert codec.is_stand_in(mailer_method.obj) and upper.obj == "abc"
    shown = json.loads(jobctl("--url", url, "show", "callbacks", "-o", "json").stdout)
    assert shown["state"] == "scheduled", shown
    assert shown["args"] == ["shopapp.models.Mailer(sender='ops@example.com').send_digest", "'abc'.upper"], shown
    assert shown["kwargs"] == {"then": "shopapp.models.Mailer(sender='b@example.com').send_digest"}, shown

    before = aps_load(url)["by_id"]["callbacks"]
    assert jobctl("--url", url, "pause", "callbacks").returncode == 0
    after = aps_load(url)["by_id"]["callbacks"]
    assert after["next_run_time"] is None
    assert after["args_pickle"] == before["args_pickle"] and after["kwargs_pickle"] == before["kwargs_pickle"]
    assert "send_digest" in after["args_repr"] and "upper" in after["args_repr"]
