"""APScheduler 4.0.0a6's own triggers, for differential tests of jobctl.schedule.aps4.

    .ci/aps4-venv/bin/python tests/fixture_app4/triggers4.py cases [--seed N] [--count N]
    .ci/aps4-venv/bin/python tests/fixture_app4/triggers4.py load < lines

`cases` builds several hundred triggers of every kind (random cron fields, crontab expressions,
intervals and calendar intervals, and/or combinations; zones with DST changes and odd offsets;
start times near the 2025-2027 DST changes), calls next() once as add_schedule does, pickles the
trigger (protocol 4, as the store's PickleSerializer), then calls next() FOLLOWING more times.
One JSON line per case:

    {"id", "kind", "pickle_b64", "next_fire_time", "following": [...], "final_b64",
     "resumes": [{"when", "new_next", "new_pickle_b64"}], "build": {...} (built cases only)}

Times are [isoformat, fold, zone] or null. "final_b64" is the pickle after all the following
next() calls; each resume is unpause_schedule(resume_from=when) on the stored pickle: unchanged
when next_fire_time >= when, else next() until a time >= when (or None), then pickled again.

`load` reads {"id", "pickle_b64", "count"} lines (bytes jobctl wrote), loads each with pickle
(APScheduler 4's own __setstate__) and prints {"id", "times": [next() x count], "repickled_b64"}.
"""

import argparse
import base64
import datetime as dt
import json
import pickle
import random
import sys
from zoneinfo import ZoneInfo

from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.combining import AndTrigger, OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

FOLLOWING = 12
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
UTC = dt.timezone.utc


def show(when):
    """[isoformat, fold, zone key] (zone None: a fixed offset, which the isoformat shows)."""
    if when is None:
        return None
    return [when.isoformat(), when.fold, getattr(when.tzinfo, "key", None)]


def b64(trigger):
    return base64.b64encode(pickle.dumps(trigger, protocol=4)).decode()


def transitions():
    """Each zone's UTC offset changes in 2025-2027 (to the hour)."""
    found = {}
    for key in ZONES:
        zone = ZoneInfo(key)
        times = []
        t = dt.datetime(2025, 1, 1, tzinfo=UTC)
        previous = t.astimezone(zone).utcoffset()
        while t.year < 2028:
            t += dt.timedelta(hours=1)
            offset = t.astimezone(zone).utcoffset()
            if offset != previous:
                times.append(t)
                previous = offset
        found[key] = times
    return found


TRANSITIONS = transitions()


def start_time(rng, zone_key, exact_zone=True):
    """A start time, often within two days of a DST change, sometimes with odd seconds."""
    zone = ZoneInfo(zone_key)
    if TRANSITIONS[zone_key] and rng.random() < 0.6:
        base = rng.choice(TRANSITIONS[zone_key]) + dt.timedelta(minutes=rng.randint(-2880, 2880))
    else:
        base = dt.datetime(2025, 1, 1, tzinfo=UTC) + dt.timedelta(minutes=rng.randint(0, 3 * 525600))
    if rng.random() < 0.5:
        base = base.replace(minute=rng.choice([0, 0, 30, 59, rng.randint(0, 59)]), second=0)
    if rng.random() < 0.2:
        base = base.replace(second=rng.randint(0, 59), microsecond=rng.choice([0, 1, 123456, 999999]))
    local = base.astimezone(zone)
    choice = rng.random()
    if not exact_zone and choice < 0.15:
        return base  # timezone.utc
    if not exact_zone and choice < 0.25:
        return base.astimezone(dt.timezone(dt.timedelta(hours=rng.choice([-5, 2, 5.5]))))
    if rng.random() < 0.1:  # the ambiguous hour's second pass, or a wall time in a gap
        local = local.replace(fold=1)
    return local


def cron_value(rng, name):
    low, high = {"year": (2025, 2030), "month": (1, 12), "day": (1, 31), "week": (1, 53),
                 "day_of_week": (0, 6), "hour": (0, 23), "minute": (0, 59), "second": (0, 59)}[name]
    r = rng.random()
    if name == "day" and r < 0.15:
        return rng.choice(["last", "1st mon", "last fri", "2nd wed", "5th sun", "3rd sat", "4th thu", "last,15"])
    if name == "day_of_week" and r < 0.35:
        return rng.choice(["mon-fri", "sat,sun", "*/2", "*/3", "sun", "fri-mon", "wed", "0", "7", "1-5", "0-6",
                           "5-1", "0-7", "mon,wed,fri", "tue-thu", "1-5/2", "6,0"])
    if name == "month" and r < 0.2:
        return rng.choice(["jan", "feb", "mar-may", "jul,dec", "nov-dec", "feb,apr,jun,sep,nov"])
    if r < 0.3:
        return str(rng.randint(low, high))
    if r < 0.45:
        a = rng.randint(low, high)
        return f"{a}-{rng.randint(a, high)}"
    if r < 0.6:
        return f"*/{rng.randint(2, max(2, min(high - low, 20)))}"
    if r < 0.7:
        a = rng.randint(low, high - 1)
        b = rng.randint(a + 1, high)
        return f"{a}-{b}/{rng.randint(1, max(1, b - a))}"
    if r < 0.8:
        return ",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), rng.randint(2, 4))))
    return "*"


def random_cron(rng):
    zone = rng.choice(ZONES)
    kwargs = {}
    names = ["month", "day", "week", "day_of_week", "hour", "minute", "second", "year"]
    weights = [0.25, 0.3, 0.05, 0.35, 0.7, 0.7, 0.3, 0.05]
    for name, weight in zip(names, weights):
        if rng.random() < weight:
            kwargs[name] = cron_value(rng, name)
    if not kwargs or (rng.random() < 0.5 and "hour" not in kwargs and "minute" not in kwargs):
        kwargs["hour"] = cron_value(rng, "hour")
    end = None
    start = start_time(rng, zone, exact_zone=False)
    if rng.random() < 0.1:
        end = start + dt.timedelta(days=rng.randint(1, 60))
    return CronTrigger(**kwargs, start_time=start, end_time=end, timezone=zone), {"kwargs": kwargs}


CRONTABS = [
    "0 9 * * 1-5", "0 9 * * 0", "0 9 * * 7", "30 2 * * *", "*/15 * * * *", "0 */4 * * *", "0 0 1 * *",
    "0 12 * * 6,0", "5 4 * * sun", "0 22 * * 1-5", "0 0 29 2 *", "15 14 1 * *", "0 0 * * 0-7",
    "0 8 1-7 * 1", "0 3 * * 5-1", "0 9 * * 1-5/2", "59 23 31 12 *", "0 0,12 * * *", "0 2 * 3 0",
    "30 1 * 11 *", "0 0 13 * 5", "*/7 9-17 * * mon-fri", "0 2-3 * * *", "0 0 L * *",
]


def random_crontab(rng):
    fields = []
    for low, high in ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7)):
        r = rng.random()
        if r < 0.35:
            fields.append("*")
        elif r < 0.6:
            fields.append(str(rng.randint(low, high)))
        elif r < 0.75:
            a = rng.randint(low, high - 1)
            fields.append(f"{a}-{rng.randint(a + 1, high)}")
        elif r < 0.9:
            fields.append(f"*/{rng.randint(2, min(12, high - low))}")
        else:
            fields.append(",".join(str(v) for v in sorted(rng.sample(range(low, high + 1), 2))))
    return " ".join(fields)


def random_interval(rng):
    zone = rng.choice(ZONES)
    unit = rng.choice(["hours", "days", "weeks", "minutes", "mixed", "seconds"])
    if unit == "mixed":
        parts = {"days": rng.randint(0, 2), "hours": rng.randint(0, 30), "minutes": rng.randint(1, 59)}
    elif unit == "seconds":
        parts = {"seconds": rng.choice([1, 30, 90, 0.5, 3600.25])}
    else:
        parts = {unit: rng.choice([1, 1, 2, 3, 4, 6, 12, 24, 25])}
    start = start_time(rng, zone, exact_zone=False)
    end = start + dt.timedelta(days=rng.randint(0, 20)) if rng.random() < 0.15 else None
    return IntervalTrigger(**parts, start_time=start, end_time=end), {"parts": parts}


def random_calendar(rng):
    zone = rng.choice(ZONES)
    kind = rng.random()
    if kind < 0.25:
        parts = {"months": 1}
        start = dt.date(rng.choice([2025, 2026]), rng.choice([1, 3, 5, 8, 10]), 31)
    elif kind < 0.4:
        parts = {"years": 1}
        start = dt.date(2024, 2, 29)
    elif kind < 0.7:
        parts = {"days": rng.choice([1, 1, 2, 3])}
        start = start_time(rng, zone).date()
    else:
        parts = rng.choice([{"weeks": 1}, {"months": 2, "days": 1}, {"months": 1, "weeks": 1}, {"years": 1, "months": 1}])
        start = start_time(rng, zone).date()
    hour = rng.choice([2, 2, 3, 1, 0, 9, 23, rng.randint(0, 23)])
    minute = rng.choice([0, 30, 15, rng.randint(0, 59)])
    end = start + dt.timedelta(days=rng.randint(30, 400)) if rng.random() < 0.2 else None
    trigger = CalendarIntervalTrigger(**parts, hour=hour, minute=minute, second=rng.choice([0, 0, 45]),
                                      start_date=start, end_date=end, timezone=zone)
    return trigger, {"parts": parts}


def random_simple(rng):
    r = rng.random()
    if r < 0.45:
        return random_cron(rng)[0]
    if r < 0.75:
        return random_interval(rng)[0]
    if r < 0.85:
        zone = rng.choice(ZONES)
        return DateTrigger(start_time(rng, zone, exact_zone=False))
    return random_calendar(rng)[0]


def random_combining(rng, depth=0):
    children = []
    for _ in range(rng.randint(2, 3)):
        if depth < 1 and rng.random() < 0.15:
            children.append(random_combining(rng, depth + 1)[0])
        else:
            children.append(random_simple(rng))
    if rng.random() < 0.5:
        return OrTrigger(children), {}
    # And: a cron and an interval that meet now and then
    zone = rng.choice(ZONES)
    start = start_time(rng, zone).replace(minute=0, second=0, microsecond=0)
    children = [CronTrigger(hour=rng.choice(["*/2", "*/3", "9-17", "*"]), start_time=start, timezone=zone),
                IntervalTrigger(hours=rng.choice([1, 3, 4, 5]), start_time=start)]
    if rng.random() < 0.3:
        children.append(CronTrigger(day_of_week="mon-fri", hour="*", start_time=start, timezone=zone))
    threshold = rng.choice([1, 0, 60, dt.timedelta(minutes=30)])
    return AndTrigger(children, threshold=threshold), {"threshold": str(threshold)}


def resumes(rng, data, first, following, spacing):
    """unpause_schedule(resume_from=when) cases on the stored pickle."""
    whens = []
    if first is not None:
        whens.append(first - dt.timedelta(hours=1))
        whens.append(first)
    times = [t for t in following if t is not None]
    for t in rng.sample(times, min(3, len(times))):
        whens.append(t)
        whens.append(t + dt.timedelta(microseconds=1))
    if times:
        whens.append(times[-1] + dt.timedelta(seconds=1))
    if first is not None and spacing >= dt.timedelta(minutes=1):  # APScheduler 4 steps through every run
        whens.append(first + dt.timedelta(days=rng.choice([3, 40, 400] if spacing >= dt.timedelta(hours=1) else [3])))
    out = []
    for when in whens:
        trigger = pickle.loads(data)
        if first is not None and first >= when:
            new_next = first
        else:
            while new_next := trigger.next():
                if new_next is None or new_next >= when:
                    break
        out.append({"when": show(when), "new_next": show(new_next),
                    "new_pickle_b64": base64.b64encode(pickle.dumps(trigger, protocol=4)).decode()})
    return out


def case(case_id, kind, trigger, rng, build=None, extra=None):
    initial = b64(trigger)
    try:
        first = trigger.next()
    except Exception as exc:  # noqa: BLE001 - MaxIterationsReached, or a time past the year 9999
        return {"id": case_id, "kind": kind, "initial_b64": initial, "error": type(exc).__name__}
    data = pickle.dumps(trigger, protocol=4)
    following = []
    for _ in range(FOLLOWING):
        try:
            following.append(trigger.next())
        except Exception as exc:  # noqa: BLE001 - the test expects a ValueError from jobctl here
            return {"id": case_id, "kind": kind, "pickle_b64": base64.b64encode(data).decode(),
                    "following_error": type(exc).__name__, "following": [show(t) for t in following]}
    spaced = [t for t in following if t is not None]
    spacing = min((b - a for a, b in zip(spaced, spaced[1:])), default=dt.timedelta(days=1))
    if kind in ("and", "or"):
        spacing = dt.timedelta(0)
    record = {
        "id": case_id, "kind": kind, "initial_b64": initial, "pickle_b64": base64.b64encode(data).decode(), "next_fire_time": show(first),
        "following": [show(t) for t in following], "final_b64": b64(trigger),
        "resumes": resumes(rng, data, first, following, spacing),
    }
    if build:
        record["build"] = build
    if extra:
        record["extra"] = extra
    return record


def built_cases(rng):
    """Triggers jobctl builds for `reschedule`, built here the APScheduler 4 way."""
    expressions = CRONTABS + [random_crontab(rng) for _ in range(60)]
    for n, expression in enumerate(expressions):
        zone = rng.choice(ZONES)
        start = start_time(rng, zone, exact_zone=False)
        try:
            trigger = CronTrigger.from_crontab(expression, start_time=start, timezone=zone)
        except ValueError:
            continue
        yield case(f"crontab-{n}", "cron", trigger, rng,
                   build={"kind": "cron", "expression": expression, "tz": zone, "start": show(start)})
    for n in range(40):
        zone = rng.choice(ZONES)
        start = start_time(rng, zone, exact_zone=False)
        every = rng.choice([dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(weeks=1),
                            dt.timedelta(minutes=90), dt.timedelta(days=8, seconds=1, microseconds=5),
                            dt.timedelta(hours=25)])
        weeks, days = divmod(every.days, 7)
        hours, rest = divmod(every.seconds, 3600)
        minutes, seconds = divmod(rest, 60)
        local = start.astimezone(ZoneInfo(zone))
        trigger = IntervalTrigger(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds,
                                  microseconds=every.microseconds, start_time=local)
        yield case(f"interval-built-{n}", "interval", trigger, rng,
                   build={"kind": "interval", "every": every.total_seconds(), "tz": zone, "start": show(start)})
    for n in range(10):
        zone = rng.choice(ZONES)
        at = start_time(rng, zone, exact_zone=False)
        yield case(f"date-built-{n}", "date", DateTrigger(at), rng, build={"kind": "date", "at": show(at)})


def all_cases(seed, count):
    rng = random.Random(seed)
    makers = [("cron", random_cron, 0.45), ("interval", random_interval, 0.2), ("calendarinterval", random_calendar, 0.15),
              ("combining", random_combining, 0.12), ("date", None, 0.08)]
    yield from built_cases(rng)
    # fixed cases: an impossible cron walks to the year 9999 and finishes; a past end
    yield case("impossible", "cron", CronTrigger(month="feb", day=30, start_time=dt.datetime(2026, 1, 1, tzinfo=UTC), timezone="UTC"), rng)
    yield case("lord-howe", "cron", CronTrigger(hour="1-2", minute="*/15", start_time=dt.datetime(2026, 4, 4, 12, tzinfo=UTC),
                                                timezone="Australia/Lord_Howe"), rng)
    n = 0
    while n < count:
        r = rng.random()
        kind, maker = makers[-1][:2]
        for option, make, weight in makers:
            if r < weight:
                kind, maker = option, make
                break
            r -= weight
        try:
            if maker is None:
                zone = rng.choice(ZONES)
                trigger, extra = DateTrigger(start_time(rng, zone, exact_zone=False)), {}
            else:
                trigger, extra = maker(rng)
        except ValueError:
            continue  # fields APScheduler 4 refuses (a step larger than its range, ...)
        kind = {"AndTrigger": "and", "OrTrigger": "or"}.get(type(trigger).__name__, kind)
        yield case(f"{kind}-{n}", kind, trigger, rng, extra=extra)
        n += 1


def load(lines):
    for line in lines:
        item = json.loads(line)
        trigger = pickle.loads(base64.b64decode(item["pickle_b64"]))
        times = [show(trigger.next()) for _ in range(item["count"])]
        print(json.dumps({"id": item["id"], "times": times, "repickled_b64": b64(trigger)}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["cases", "load"])
    parser.add_argument("--seed", type=int, default=4004)
    parser.add_argument("--count", type=int, default=400)
    options = parser.parse_args()
    if options.mode == "load":
        load(sys.stdin)
        return
    for record in all_cases(options.seed, options.count):
        print(json.dumps(record))


if __name__ == "__main__":
    main()
