"""jobctl.schedule.aps4 against APScheduler 4.0.0a6 itself: fire times, the state each next()
leaves, unpause_schedule(resume_from=...), triggers built for reschedule, and words.

tests/fixture_app4/triggers4.py (run in the APScheduler 4 venv) builds several hundred triggers
of every kind and prints what APScheduler 4 does with them; here jobctl, which never imports
APScheduler 4, must do exactly the same from the decoded pickles: the same times (with their
UTC offsets and folds) and, where it writes state back, the same bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import zoneinfo
from typing import Any

import pytest

from conftest import FIXTURE_APP4, _app4_env, aps4_python, aps4_script
from jobctl.codec import pickles, stand_in_class
from jobctl.schedule import aps4

FOLLOWING = 12


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    lines = aps4_script("triggers4.py", "cases", timeout=120).stdout.splitlines()
    return [json.loads(line) for line in lines]


def aps4_load(items: list[dict]) -> dict[str, dict]:
    """triggers4.py load: APScheduler 4 unpickles each, calls next() `count` times, pickles again."""
    result = subprocess.run([aps4_python(), str(FIXTURE_APP4 / "triggers4.py"), "load"],
                            input="".join(json.dumps(item) + "\n" for item in items),
                            env=_app4_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return {item["id"]: item for item in map(json.loads, result.stdout.splitlines())}


def show(when: dt.datetime | None) -> list | None:
    """As triggers4.py shows a time: [isoformat, fold, zone key (None: a fixed offset)]."""
    if when is None:
        return None
    return [when.isoformat(), when.fold, getattr(when.tzinfo, "key", None)]


def unshow(shown: list) -> dt.datetime:
    """The time triggers4.py showed, in the same kind of zone (APScheduler 4 compares times in
    one ZoneInfo by wall clock, others by instant: the zone object matters)."""
    iso, fold, key = shown
    when = dt.datetime.fromisoformat(iso)
    if key is not None:
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(key), fold=fold)
    return when


def decode(text: str) -> Any:
    return pickles.decode(base64.b64decode(text))


def encode(record: Any) -> str:
    return base64.b64encode(pickles.encode(record, 4)).decode()


def ok_cases(cases: list[dict]) -> list[dict]:
    return [case for case in cases if "pickle_b64" in case and "following_error" not in case]


# --- fire times and state, against APScheduler 4 ------------------------------------------


def test_the_cases_cover_every_kind(cases: list[dict]) -> None:
    kinds = {case["kind"] for case in ok_cases(cases)}
    assert kinds == {"cron", "interval", "date", "calendarinterval", "and", "or"}
    assert len(ok_cases(cases)) >= 400
    assert sum(len(case["resumes"]) for case in ok_cases(cases)) >= 2000


def test_first_fire_time_and_stored_state_are_aps4s(cases: list[dict]) -> None:
    """add_schedule: next() on the new trigger; the state it leaves is pickled byte for byte."""
    for case in ok_cases(cases):
        record, first = aps4.following(decode(case["initial_b64"]))
        assert show(first) == case["next_fire_time"], case["id"]
        assert encode(record) == case["pickle_b64"], case["id"]


def test_fire_times_are_aps4s(cases: list[dict]) -> None:
    for case in ok_cases(cases):
        first = case["next_fire_time"] and unshow(case["next_fire_time"])
        times = aps4.fire_times(decode(case["pickle_b64"]), first, 1 + FOLLOWING)
        expected = [case["next_fire_time"], *case["following"]]
        if None in expected:
            expected = expected[: expected.index(None)]
        assert [show(t) for t in times] == expected, case["id"]


def test_each_next_leaves_aps4s_state(cases: list[dict]) -> None:
    """following() step by step: the state after the last next() is APScheduler 4's, bytes and all."""
    for case in ok_cases(cases):
        record = decode(case["pickle_b64"])
        for expected in case["following"]:
            record, when = aps4.following(record)
            assert show(when) == expected, case["id"]
        assert encode(record) == case["final_b64"], case["id"]


def test_resume_from_is_unpause_schedule(cases: list[dict]) -> None:
    count = 0
    for case in ok_cases(cases):
        trigger = decode(case["pickle_b64"])
        first = case["next_fire_time"] and unshow(case["next_fire_time"])
        for resume in case["resumes"]:
            record, new_next = aps4.resume_from(trigger, first, unshow(resume["when"]))
            assert show(new_next) == resume["new_next"], (case["id"], resume["when"])
            assert encode(record) == resume["new_pickle_b64"], (case["id"], resume["when"])
            count += 1
    assert count >= 2000


def test_runs_between_is_a_window_of_aps4s_times(cases: list[dict]) -> None:
    for case in ok_cases(cases):
        shown = [case["next_fire_time"], *case["following"]]
        if None in shown:
            shown = shown[: shown.index(None)]
        if len(shown) < 6:
            continue
        times = [unshow(s) for s in shown]
        first, trigger = times[0], decode(case["pickle_b64"])
        for start, end, limit in ((times[0], times[-1], 100), (times[2], times[5], 100), (times[1], times[-1], 2),
                                  (times[3] + dt.timedelta(microseconds=1), times[-1], 100)):
            expected = [s for s, t in zip(shown, times) if start <= t < end][:limit]
            got = aps4.runs_between(trigger, first, start, end, limit)
            if any(b < a for a, b in zip(times, times[1:])):
                continue  # a DST-gap time out of order: a window is not a prefix there
            assert [show(t) for t in got] == expected, case["id"]


def test_errors_where_aps4_fails(cases: list[dict]) -> None:
    failing = [case for case in cases if "error" in case]
    assert failing, "the seed no longer makes an AndTrigger that reaches max_iterations"
    for case in failing:
        with pytest.raises(ValueError):
            aps4.following(decode(case["initial_b64"]))


def test_re_encoded_pickles_load_in_aps4_the_same(cases: list[dict]) -> None:
    """Bytes jobctl writes for any state it decoded (changed or not) load in APScheduler 4 and
    go on exactly as APScheduler 4's own."""
    items = [{"id": case["id"], "pickle_b64": encode(decode(case["pickle_b64"])), "count": FOLLOWING}
             for case in ok_cases(cases)]
    loaded = aps4_load(items)
    for case in ok_cases(cases):
        assert loaded[case["id"]]["times"] == case["following"], case["id"]
        assert loaded[case["id"]]["repickled_b64"] == case["final_b64"], case["id"]


# --- triggers jobctl builds ---------------------------------------------------------------


def build(spec: dict) -> tuple[Any, dt.datetime | None]:
    if spec["kind"] == "cron":
        return aps4.cron_trigger(spec["expression"], zoneinfo.ZoneInfo(spec["tz"]), unshow(spec["start"]))
    if spec["kind"] == "interval":
        return aps4.interval_trigger(dt.timedelta(seconds=spec["every"]), unshow(spec["start"]),
                                     zoneinfo.ZoneInfo(spec["tz"]))
    return aps4.date_trigger(unshow(spec["at"]))


def test_built_triggers_are_aps4s_byte_for_byte(cases: list[dict]) -> None:
    built = [case for case in ok_cases(cases) if "build" in case]
    assert {case["build"]["kind"] for case in built} == {"cron", "interval", "date"}
    assert len(built) >= 100
    for case in built:
        record, first = build(case["build"])
        assert show(first) == case["next_fire_time"], case["id"]
        assert encode(record) == case["pickle_b64"], case["id"]


def test_built_triggers_load_in_aps4(cases: list[dict]) -> None:
    built = [case for case in ok_cases(cases) if "build" in case]
    loaded = aps4_load([{"id": case["id"], "pickle_b64": encode(build(case["build"])[0]), "count": FOLLOWING}
                        for case in built])
    for case in built:
        assert loaded[case["id"]]["times"] == case["following"], case["id"]


def test_crontab_day_of_week_is_crons() -> None:
    """from_crontab's numbers are cron's (0 and 7 Sunday), stored as names, with APS4's quirks."""
    start = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)  # a Monday
    stored = {expr: vars(aps4.cron_trigger(f"0 9 * * {expr}", "UTC", start)[0])["fields"][4]
              for expr in ("1-5", "0", "7", "0-7", "1-5/2", "5-1", "0-6", "*/2", "mon-fri/2", "6,0")}
    assert stored == {"1-5": "mon-fri", "0": "sun", "7": "sun", "0-7": "sun", "1-5/2": "mon-fri",
                      "5-1": "mon,fri-sun", "0-6": "mon-sat,sun", "*/2": "*/2", "mon-fri/2": "mon-fri",
                      "6,0": "sat,sun"}
    record, first = aps4.cron_trigger("0 9 * * 0", "UTC", start)
    assert first == dt.datetime(2026, 6, 7, 9, tzinfo=zoneinfo.ZoneInfo("UTC"))  # Sunday
    assert vars(record)["fields"] == ["*", "*", "*", "*", "sun", "9", "0", "0"]
    with pytest.raises(ValueError):
        aps4.cron_trigger("0 9 * *", "UTC", start)
    with pytest.raises(ValueError):
        aps4.cron_trigger("0 9 * * 8", "UTC", start)
    with pytest.raises(ValueError):
        aps4.cron_trigger("61 9 * * *", "UTC", start)


# --- words --------------------------------------------------------------------------------

START = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


def cron(fields: list[str], zone: str = "UTC", end: dt.datetime | None = None) -> Any:
    record = object.__new__(stand_in_class("apscheduler.triggers.cron", "CronTrigger"))
    record.__dict__.update({"version": 1, "timezone": zoneinfo.ZoneInfo(zone), "fields": fields,
                            "start_time": START, "end_time": end, "last_fire_time": None})
    return record


def record(kind: str, **state: Any) -> Any:
    module, name = {"interval": ("apscheduler.triggers.interval", "IntervalTrigger"),
                    "date": ("apscheduler.triggers.date", "DateTrigger"),
                    "calendarinterval": ("apscheduler.triggers.calendarinterval", "CalendarIntervalTrigger"),
                    "or": ("apscheduler.triggers.combining", "OrTrigger"),
                    "and": ("apscheduler.triggers.combining", "AndTrigger")}[kind]
    made = object.__new__(stand_in_class(module, name))
    made.__dict__.update({"version": 1, **state})
    return made


def crontab(expression: str, zone: str = "Europe/Paris") -> Any:
    return aps4.cron_trigger(expression, zone, START)[0]


# Each checked by hand against APScheduler 4's fire times (the differential tests above prove
# cron_trigger is from_crontab): e.g. '0 9 * * 0' fires on Sundays, '*/2' on Mon, Wed, Fri, Sun.
WORDS = [
    (crontab("0 9 * * 1-5"), "Monday to Friday at 09:00 Europe/Paris"),
    (crontab("0 9 * * 0"), "Sunday at 09:00 Europe/Paris"),
    (crontab("0 9 * * 7"), "Sunday at 09:00 Europe/Paris"),
    (crontab("0 9 * * 0-7"), "Sunday at 09:00 Europe/Paris"),  # APScheduler 4 keeps only 'sun'
    (crontab("0 9 * * 5-1"), "Monday and Friday to Sunday at 09:00 Europe/Paris"),
    (crontab("0 9 * * 1-5/2"), "Monday to Friday at 09:00 Europe/Paris"),  # the step is dropped
    (crontab("30 2 * * *", "America/New_York"), "daily at 02:30 America/New_York"),
    (crontab("*/15 * * * *"), "every 15 minutes"),
    (crontab("*/7 * * * *"), "cron minute=*/7 second=0 Europe/Paris"),  # 0, 7, ... 56, then 0: not every 7
    (crontab("0 0 1 * *", "Asia/Kolkata"), "on day 1 of the month at 00:00 Asia/Kolkata"),
    (crontab("0 8 1-7 * 1", "UTC"), "Monday on day 1 to 7 of the month at 08:00 UTC"),  # both restrict
    (crontab("0 12 * * 6,0"), "Saturday and Sunday at 12:00 Europe/Paris"),
    (crontab("*/10 9-17 * * 1-5"), "every 10 minutes during hours 9 to 17 Europe/Paris, Monday to Friday"),
    (crontab("0 0 29 2 *"), "on day 29 of the month in February at 00:00 Europe/Paris"),
    (cron(["*", "*", "*", "*", "*/2", "9", "0", "0"]), "Monday, Wednesday, Friday and Sunday at 09:00 UTC"),
    (cron(["*", "*", "last", "*", "*", "18", "30", "0"]), "on the last day of the month at 18:30 UTC"),
    (cron(["*", "*", "1st mon", "*", "*", "9", "0", "0"], "Europe/Paris"), "on the first Monday of the month at 09:00 Europe/Paris"),
    (cron(["*", "*", "last fri", "*", "*", "17", "0", "0"]), "on the last Friday of the month at 17:00 UTC"),
    (cron(["*", "*", "*", "*", "*", "*/4", "0", "0"]), "daily at 00:00, 04:00, 08:00, 12:00, 16:00 and 20:00 UTC"),
    (cron(["*", "*", "*", "*", "*", "*/2", "30", "0"]), "every 2 hours at :30 UTC"),
    (cron(["*", "*", "*", "*", "*", "*", "5", "0"]), "hourly at :05"),
    (cron(["*", "*", "*", "*", "*", "*", "*", "*/30"]), "every 30 seconds"),
    (cron(["*", "*", "*", "*", "*", "*", "5", "*/30"]), "cron minute=5 second=*/30 UTC"),  # not every 30 s
    (cron(["*", "jan,jul", "1", "*", "*", "0", "0", "0"]), "on day 1 of the month in January and July at 00:00 UTC"),
    (cron(["2027", "*", "*", "*", "*", "12", "0", "0"]), "in 2027 at 12:00 UTC"),
    (cron(["*", "*", "*", "*", "*", "9", "0", "0"], end=dt.datetime(2026, 12, 31, tzinfo=dt.timezone.utc)),
     "daily at 09:00 UTC until 2026-12-31 00:00 UTC"),
    (record("interval", interval=[0, 0, 4, 0, 0, 0], start_time=START, end_time=None, last_fire_time=START), "every 4 hours"),
    (record("interval", interval=[1, 0, 0, 0, 0, 0], start_time=START, end_time=None, last_fire_time=None), "every week"),
    (record("interval", interval=[0, 0, 0, 0, 1.5, 0], start_time=START, end_time=None, last_fire_time=None),
     "every second 500000 microseconds"),
    (record("date", run_time=dt.datetime(2026, 11, 26, 14, 58, tzinfo=dt.timezone.utc), completed=True),
     "once at 2026-11-26 14:58 UTC"),
    (record("calendarinterval", interval=[0, 1, 0, 0], time=[4, 15, 0], start_date=dt.date(2026, 1, 31), end_date=None,
            timezone=zoneinfo.ZoneInfo("Europe/Paris"), last_fire_date=None), "every month on day 31 at 04:15 Europe/Paris"),
    (record("calendarinterval", interval=[0, 1, 0, 2], time=[4, 15, 0], start_date=dt.date(2026, 1, 31), end_date=None,
            timezone=zoneinfo.ZoneInfo("UTC"), last_fire_date=None), "every 1 month 2 days at 04:15 UTC"),
    (record("or", triggers=[("apscheduler.triggers.cron:CronTrigger", vars(cron(["*", "*", "*", "*", "*", "3", "0", "0"]))),
                            ("apscheduler.triggers.date:DateTrigger", {"version": 1, "run_time": START, "completed": False})],
            next_fire_times=[]), "any of: daily at 03:00 UTC; once at 2026-06-01 00:00 UTC"),
]


@pytest.mark.parametrize(("trigger", "words"), WORDS, ids=[w for _, w in WORDS])
def test_words(trigger: Any, words: str) -> None:
    assert aps4.describe(trigger) == words


def test_words_never_raise() -> None:
    assert aps4.describe(object()) == "unknown trigger (cannot describe)"
    assert aps4.describe(record("date", run_time="nonsense", completed=True)).startswith("date trigger (cannot describe: ")


# --- crafted state ------------------------------------------------------------------------


def _cron_state(**changes: Any) -> dict:
    return {**vars(cron(["*", "*", "*", "*", "*", "9", "0", "0"])), **changes}


def _or(children: list) -> Any:
    return record("or", triggers=children, next_fire_times=[])


def _made(kind: str, state: dict) -> Any:
    made = cron(["*"] * 8) if kind == "cron" else record(kind)
    made.__dict__.clear()
    made.__dict__.update(state)
    return made


def crafted() -> dict[str, Any]:
    cron_ref = "apscheduler.triggers.cron:CronTrigger"
    deep: Any = ("apscheduler.triggers.date:DateTrigger", {"version": 1, "run_time": START, "completed": False})
    for _ in range(40):
        deep = ("apscheduler.triggers.combining:OrTrigger", {"version": 1, "triggers": [deep, deep], "next_fire_times": []})
    wide: Any = ("apscheduler.triggers.date:DateTrigger", {"version": 1, "run_time": START, "completed": False})
    for _ in range(14):  # 2**14 parts, each level shared twice
        wide = ("apscheduler.triggers.combining:OrTrigger", {"version": 1, "triggers": [wide, wide], "next_fire_times": []})
    return {
        "version 2": _made("date", {"version": 2, "run_time": START, "completed": False}),
        "no version": _made("date", {"run_time": START, "completed": False}),
        "run time not a time": _made("date", {"version": 1, "run_time": 5, "completed": False}),
        "naive time": _made("date", {"version": 1, "run_time": dt.datetime(2026, 1, 1), "completed": False}),
        "fields not 8": cron(["*", "9"]),
        "field not text": cron(["*", "*", "*", "*", "*", 9.5, "0", "0"]),
        "unknown field expression": cron(["*", "*", "*", "*", "*", "nine", "0", "0"]),
        "hour 24": cron(["*", "*", "*", "*", "*", "24", "0", "0"]),
        "day of week 8": cron(["*", "*", "*", "*", "8", "9", "0", "0"]),
        "huge number": cron(["*", "*", "*", "*", "*", "9" * 5000, "0", "0"]),
        "step 0": cron(["*", "*", "*", "*", "*", "*/0", "0", "0"]),
        "many expressions": cron(["*", "*", "*", "*", "*", ",".join(["1"] * 1000), "0", "0"]),
        "not a zone": _made("interval", {**vars(record("interval", interval=[0, 0, 1, 0, 0, 0], start_time=START,
                                                          end_time=None, last_fire_time=None)), "start_time": "x" * 100}),
        "zero interval": record("interval", interval=[0, 0, 0, 0, 0, 0], start_time=START, end_time=None, last_fire_time=None),
        "interval of text": record("interval", interval=["1"] * 6, start_time=START, end_time=None, last_fire_time=None),
        "huge interval": record("interval", interval=[10**30, 0, 0, 0, 0, 0], start_time=START, end_time=None, last_fire_time=None),
        "calendar zero": record("calendarinterval", interval=[0, 0, 0, 0], time=[1, 0, 0], start_date=START.date(),
                                end_date=None, timezone="UTC", last_fire_date=None),
        "calendar hour 25": record("calendarinterval", interval=[0, 1, 0, 0], time=[25, 0, 0], start_date=START.date(),
                                   end_date=None, timezone="UTC", last_fire_date=None),
        "unknown class": _or([("os:system", {"version": 1})]),
        "not a pair": _or([cron_ref]),
        "no triggers": _or([]),
        "deep": _or([deep]),
        "wide": _or([wide]),
        "local zone": _made("cron", _cron_state(timezone="local")),
        "unknown zone": _made("cron", _cron_state(timezone="Mars/Olympus")),
    }


@pytest.mark.parametrize("name", list(crafted()))
def test_crafted_state_is_a_value_error(name: str) -> None:
    trigger = crafted()[name]
    with pytest.raises(ValueError):
        aps4.following(trigger)
    with pytest.raises(ValueError):
        aps4.fire_times(trigger, START, 3)
    assert "cannot describe" in aps4.describe(trigger)


def test_searches_are_bounded() -> None:
    """A trigger that fires every second, resumed a century later, or an AndTrigger whose
    triggers never meet, stop with ValueError instead of running for ever."""
    every_second = cron(["*", "*", "*", "*", "*", "*", "*", "*"])
    with pytest.raises(ValueError, match="steps"):
        aps4.resume_from(every_second, START, START.replace(year=2126))
    never = record("and", triggers=[
        ("apscheduler.triggers.interval:IntervalTrigger",
         {"version": 1, "interval": [0, 0, 2, 0, 0, 0], "start_time": START, "end_time": None, "last_fire_time": None}),
        ("apscheduler.triggers.interval:IntervalTrigger",
         {"version": 1, "interval": [0, 0, 2, 0, 0, 0], "start_time": START + dt.timedelta(hours=1), "end_time": None,
          "last_fire_time": None})],
        next_fire_times=[], threshold=dt.timedelta(0), max_iterations=10**9)
    with pytest.raises(ValueError, match="steps"):
        aps4.following(never)


def test_interval_resume_skips_ahead_exactly() -> None:
    """Resuming a one-second interval a year later: the same result as stepping through every
    second (which would take millions of next() calls), in wall-clock arithmetic."""
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    start = dt.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=paris)
    trigger = record("interval", interval=[0, 0, 0, 0, 1, 0], start_time=start, end_time=None, last_fire_time=start)
    when = dt.datetime(2027, 3, 28, 1, 30, tzinfo=dt.timezone.utc)  # just after Paris springs forward
    state, new_next = aps4.resume_from(trigger, start, when)
    # APScheduler 4 (checked with a one-minute interval, 525,000 next() calls): a wall time in
    # the gap, 02:30 at the old offset, which is 01:30 UTC
    assert new_next is not None and repr(new_next) == repr(dt.datetime(2027, 3, 28, 2, 30, 0, 250000, tzinfo=paris))
    assert new_next.utcoffset() == dt.timedelta(hours=1)
    assert vars(state)["last_fire_time"] is new_next


def test_a_combined_trigger_with_a_crafted_ref_imports_nothing() -> None:
    trigger = _or([("os:system", {"version": 1}), ("subprocess:Popen", {})])
    with pytest.raises(ValueError, match="not an APScheduler 4 trigger"):
        aps4.following(trigger)
