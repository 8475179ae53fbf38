"""Schedules in words say what the stored trigger really does, for every trigger kind.

Triggers are built with APScheduler itself, turned into the records jobctl decodes rows into
(and checked to round-trip through a real pickle), then described.
"""

from __future__ import annotations

import datetime as dt
import pickle
import zoneinfo

import pytest
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from jobctl import codec
from jobctl.schedule import fire, parse
from jobctl.schedule import words as schedule_words

UTC = zoneinfo.ZoneInfo("UTC")
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def words(trigger) -> str:
    decoded = codec.decode(pickle.dumps(trigger))  # exactly what a row holds
    return schedule_words.describe(decoded)


@pytest.mark.parametrize(
    "trigger, expected",
    [
        (CronTrigger(hour=9, minute=0, timezone=UTC), "daily at 09:00 UTC"),
        (CronTrigger(day_of_week="mon-fri", hour=9, minute=0, timezone=PARIS), "Monday to Friday at 09:00 Europe/Paris"),
        (CronTrigger.from_crontab("0 9 * * 1-5", timezone=UTC), "Tuesday to Saturday at 09:00 UTC"),
        (CronTrigger.from_crontab("30 7 * * 0", timezone=UTC), "Monday at 07:30 UTC"),
        (CronTrigger(day_of_week="sat,sun", hour=10, minute=30, timezone=UTC), "Saturday and Sunday at 10:30 UTC"),
        (CronTrigger(day_of_week="mon,wed,fri", hour=8, timezone=UTC), "Monday, Wednesday and Friday at 08:00 UTC"),
        (CronTrigger(hour="3,15", minute=0, timezone=UTC), "daily at 03:00 and 15:00 UTC"),
        (CronTrigger(day="last", hour=23, minute=30, timezone=UTC), "on the last day of the month at 23:30 UTC"),
        (CronTrigger(day=1, hour=0, minute=0, timezone=UTC), "on day 1 of the month at 00:00 UTC"),
        (CronTrigger(day="1st mon", month="jan,jul", hour=8, timezone=UTC), "on the first Monday of the month in January and July at 08:00 UTC"),
        (CronTrigger(month="1-3", day=15, hour=12, timezone=UTC), "on day 15 of the month in January to March at 12:00 UTC"),
        (CronTrigger(day_of_week="tue,thu,sat,sun", hour=9, minute=0, timezone=UTC), "Tuesday, Thursday, Saturday and Sunday at 09:00 UTC"),
        (CronTrigger(day="*/2", hour=9, minute=0, timezone=UTC), "on every 2nd day of the month at 09:00 UTC"),
        (CronTrigger(day="*/3", day_of_week="mon", hour=9, minute=0, timezone=UTC), "Monday on every 3rd day of the month at 09:00 UTC"),
        (CronTrigger(minute="*/15", timezone=UTC), "every 15 minutes"),
        (CronTrigger(minute="*/15", hour="9-17", day_of_week="mon-fri", timezone=UTC), "every 15 minutes during hour 9 to 17 UTC, Monday to Friday"),
        (CronTrigger(minute=5, timezone=UTC), "hourly at :05"),
        (CronTrigger(hour="*/4", minute=0, timezone=UTC), "every 4 hours at :00 UTC"),
        (CronTrigger(second="*/10", timezone=UTC), "every 10 seconds"),
        (CronTrigger(hour=9, minute=0, second=30, timezone=UTC), "daily at 09:00:30 UTC"),
        (CronTrigger(year=2027, month=3, day=1, hour=6, timezone=UTC), "on day 1 of the month in March in 2027 at 06:00 UTC"),
        (CronTrigger(hour=9, timezone=UTC, end_date=dt.datetime(2027, 1, 1, tzinfo=UTC)), "daily at 09:00 UTC until 2027-01-01 00:00"),
        (IntervalTrigger(hours=4, timezone=UTC), "every 4 hours"),
        (IntervalTrigger(hours=1, timezone=UTC), "every hour"),
        (IntervalTrigger(minutes=90, timezone=UTC), "every 1 hour 30 minutes"),
        (IntervalTrigger(seconds=45, jitter=5, timezone=UTC), "every 45 seconds (jitter 5s)"),
        (IntervalTrigger(weeks=2, timezone=UTC), "every 2 weeks"),
        (DateTrigger(dt.datetime(2026, 11, 25, 14, 58, tzinfo=UTC)), "once at 2026-11-25 14:58 UTC"),
        (DateTrigger(dt.datetime(2026, 11, 25, 14, 58, 7, tzinfo=PARIS)), "once at 2026-11-25 14:58:07 Europe/Paris"),
        (CalendarIntervalTrigger(months=1, hour=4, minute=15, start_date=dt.date(2026, 12, 25), timezone=PARIS), "every month on day 25 at 04:15 Europe/Paris"),
        (CalendarIntervalTrigger(weeks=2, timezone=UTC), "every 2 weeks at 00:00 UTC"),
        (OrTrigger([CronTrigger(hour=3, timezone=UTC), CronTrigger(hour=15, timezone=UTC)]), "any of: daily at 03:00 UTC; daily at 15:00 UTC"),
        (AndTrigger([IntervalTrigger(hours=2, timezone=UTC), CronTrigger(day_of_week="sat,sun", timezone=UTC)]), "all of: every 2 hours; Saturday and Sunday at 00:00 UTC"),
    ],
)
def test_words(trigger, expected):
    assert words(trigger) == expected


def test_trigger_types():
    assert schedule_words.trigger_type(codec.decode(pickle.dumps(CronTrigger(hour=1)))) == "cron"
    assert schedule_words.trigger_type(codec.decode(pickle.dumps(OrTrigger([CronTrigger(hour=1)])))) == "or"
    assert schedule_words.trigger_type(codec.decode(b"\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8c\x05myapp\x94\x8c\tMyTrigger\x94\x93\x94)\x81\x94.")) == "MyTrigger"


@pytest.mark.parametrize(
    "line, weekdays",
    [
        ("0 9 * * 1-5", {0, 1, 2, 3, 4}),  # crontab: Monday to Friday
        ("0 9 * * 0", {6}),
        ("0 9 * * 7", {6}),
        ("0 9 * * 5-7", {4, 5, 6}),
        ("0 9 * * 0-2", {6, 0, 1}),
        ("0 9 * * */2", {6, 1, 3, 5}),  # 0,2,4,6 = Sun, Tue, Thu, Sat
        ("0 9 * * sat,sun", {5, 6}),
        ("@weekly", {6}),
    ],
)
def test_cron_option_uses_crontab_day_numbers(line, weekdays):
    trigger = parse.cron_trigger(line, UTC)
    start = dt.datetime(2026, 11, 23, tzinfo=UTC)
    times = fire.fire_times(trigger, start, 14)
    assert {t.weekday() for t in times} == weekdays
    assert all((t.hour, t.minute) in ((9, 0), (0, 0)) for t in times)


def test_cron_with_day_of_month_and_weekday_runs_on_either_like_crontab():
    trigger = parse.cron_trigger("0 9 13 * 5", UTC)  # the 13th, and every Friday
    times = fire.fire_times(trigger, dt.datetime(2026, 11, 1, tzinfo=UTC), 8)
    assert all(t.day == 13 or t.weekday() == 4 for t in times)
    assert any(t.day == 13 and t.weekday() != 4 for t in times) and any(t.weekday() == 4 and t.day != 13 for t in times)
    assert words(trigger) == "any of: on day 13 of the month at 09:00 UTC; Friday at 09:00 UTC"


def test_words_of_a_from_crontab_job_match_its_fire_times():
    trigger = CronTrigger.from_crontab("0 9 * * 1-5", timezone=UTC)
    times = [trigger.get_next_fire_time(None, dt.datetime(2026, 11, 23 + n, 10, tzinfo=UTC)) for n in range(7)]
    assert {t.strftime("%A") for t in times} == {"Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
    assert words(trigger).startswith("Tuesday to Saturday")


def test_a_crafted_row_cannot_lend_its_words_to_a_real_one():
    """Words are cached by what they depend on. A crafted expression holding the same values
    under other names (first and last swapped, in the other order) must not share a real
    row's cache entry, whichever is described first."""
    real = pickle.dumps(CronTrigger(hour="9-17", minute=0, timezone=UTC))
    crafted = codec.decode(real)
    hour = next(f for f in vars(crafted)["fields"] if vars(f)["name"] == "hour")
    [expression] = vars(hour)["expressions"]
    values = vars(expression)
    # the same values in the same order as the real row's, under the other names
    names = list(values)
    i, j = names.index("first"), names.index("last")
    names[i], names[j] = names[j], names[i]
    swapped = dict(zip(names, values.values()))
    assert tuple(swapped.values()) == tuple(values.values()) and swapped != values
    values.clear()
    values.update(swapped)
    crafted_words = schedule_words.describe(crafted)
    assert "17 to 9" in crafted_words, crafted_words
    real_words = schedule_words.describe(codec.decode(real))
    assert "9 to 17" in real_words, real_words


@pytest.mark.parametrize(
    "crafted_end",
    [
        dt.datetime(2027, 1, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),  # the same instant, another wall clock
        dt.datetime(2027, 1, 1, 1, 0, tzinfo=PARIS),
    ],
)
def test_an_end_date_equal_as_an_instant_does_not_lend_its_words(crafted_end):
    """Datetimes in other zones are equal (and hash alike) when they are the same instant, but
    the words show the wall clock: a crafted row described first must not give a real row its
    'until'."""
    real_end = dt.datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    assert crafted_end == real_end
    crafted = codec.decode(pickle.dumps(CronTrigger(hour=9, minute=7, timezone=UTC, end_date=crafted_end)))
    assert schedule_words.describe(crafted).endswith("until 2027-01-01 01:00")
    assert words(CronTrigger(hour=9, minute=7, timezone=UTC, end_date=real_end)) == "daily at 09:07 UTC until 2027-01-01 00:00"


CRAFTED_CRON = """
from apscheduler.triggers.cron import CronTrigger
from jobctl.schedule import fire, words
shared = ()
for _ in range(64):
    shared = (shared, shared)
crafted = fire.to_record(CronTrigger(minute="*/5", timezone="UTC"))
minute = next(f for f in vars(crafted)["fields"] if vars(f)["name"] == "minute")
where = {where!r}
if where == "step":
    vars(vars(minute)["expressions"][0])["step"] = shared
elif where == "field name":
    vars(minute)["name"] = shared
else:
    vars(crafted)[where] = shared

def both():
    described = words.describe(crafted)
    try:
        words.trigger_fields(crafted)
    except Exception:  # refusing is fine; hanging is not
        pass
    return described
"""


@pytest.mark.parametrize("where", ["jitter", "step", "timezone", "end_date", "field name"])
def test_a_shared_value_in_a_cron_trigger_is_neither_hashed_nor_printed(where):
    """A tuple that shares each of 64 levels twice takes for ever to hash, compare or print.
    Before: the words cache hashed a crafted jitter or end date (for ever), and the words
    printed a crafted step or zone (out of memory)."""
    from test_bounds import assert_bounded, measure

    measured = measure("both()", CRAFTED_CRON.format(where=where), timeout=30)
    assert_bounded(measured)
    assert "cannot describe" in measured["outcome"] or where == "timezone", measured


def test_a_crafted_weekday_range_is_not_counted_day_by_day():
    """Before: a weekday range of 10**12 days was counted one by one (for ever)."""
    from test_bounds import assert_bounded, measure

    setup = """
from apscheduler.triggers.cron import CronTrigger
from jobctl.schedule import fire, words
crafted = fire.to_record(CronTrigger(day_of_week="mon-fri", hour=9, timezone="UTC"))
field = next(f for f in vars(crafted)["fields"] if vars(f)["name"] == "day_of_week")
vars(vars(field)["expressions"][0])["last"] = 10**12
"""
    measured = measure("words.describe(crafted)", setup, timeout=30)
    assert_bounded(measured)
    assert measured["outcome"].startswith("'Monday to Sunday"), measured
