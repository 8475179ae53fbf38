"""Add interval jobs that touch marker files (live-scheduler and health tests).

    PYTHONPATH=tests/fixture_app python tests/fixture_app/add_jobs.py URL TABLE [--grace S|none] JOB_ID:SECONDS:MARKER[:OPTION...] ...
    PYTHONPATH=tests/fixture_app python tests/fixture_app/add_jobs.py redis://HOST:PORT/DB TABLE \
        [--jobs-key K] [--run-times-key R] [--grace S|none] JOB_ID:SECONDS:MARKER[:OPTION...] ...

Each job runs shopapp.jobs.touch(MARKER) every SECONDS seconds. A spec ends with any of these
OPTIONs, in any order:
- LATE (digits): its next run is set LATE seconds in the past, as a scheduler that stopped that
  long ago leaves it;
- fail: the job is shopapp.jobs.fail(MARKER), which adds its line and raises InventoryFeedError;
- sleep=S: the job takes S seconds more (touch or fail's `seconds`);
- grace=S: this job's misfire_grace_time (else --grace's).
--grace sets the jobs' misfire_grace_time (default 60; none for no limit). For a Redis URL TABLE keeps its
place but is ignored (conftest.add_jobs passes 'apscheduler_jobs'), and the keys are the
options, which may come anywhere after TABLE (store_url.py).
"""

import datetime as dt
import sys

from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from store_url import DEFAULT_JOBS_KEY, DEFAULT_RUN_TIMES_KEY, job_store

from shopapp import jobs

OPTIONS = {"--grace": "60", "--jobs-key": DEFAULT_JOBS_KEY, "--run-times-key": DEFAULT_RUN_TIMES_KEY}


def parse(argv):
    """URL, TABLE, the options and the specs. Only these exact option words (each followed by
    its value) are options, wherever they stand: any other word is a spec, even one whose job
    id starts with '-', which is why this is not argparse."""
    if len(argv) < 2:
        raise SystemExit(__doc__)
    url, table, words = argv[0], argv[1], argv[2:]
    options, specs = dict(OPTIONS), []
    while words:
        word = words.pop(0)
        if word in OPTIONS and words:
            options[word] = words.pop(0)
        else:
            specs.append(word)
    return url, table, options, specs


def is_option(word):
    return word.isdigit() or word == "fail" or word.startswith(("sleep=", "grace="))


def main():
    url, table, options, specs = parse(sys.argv[1:])
    grace = None if options["--grace"] == "none" else int(options["--grace"])
    store = job_store(url, table=table, jobs_key=options["--jobs-key"], run_times_key=options["--run-times-key"])
    # The store is written directly, as a running scheduler's add_job would: a started
    # scheduler could run (and move) a job that is due before it is shut down again.
    scheduler = BackgroundScheduler(timezone="UTC")
    store.start(scheduler, "default")
    now = dt.datetime.now(dt.timezone.utc)
    for spec in specs:
        job_id, seconds, rest = spec.split(":", 2)
        marker, late, func, kwargs, job_grace = rest, "", jobs.touch, {}, grace
        while ":" in marker and is_option(marker.rsplit(":", 1)[1]):
            marker, option = marker.rsplit(":", 1)
            if option.isdigit():
                late = option
            elif option == "fail":
                func = jobs.fail
            elif option.startswith("sleep="):
                kwargs["seconds"] = float(option[6:])
            else:
                job_grace = None if option[6:] == "none" else int(option[6:])
        trigger = IntervalTrigger(seconds=float(seconds), timezone="UTC")
        next_run = now - dt.timedelta(seconds=int(late)) if late else trigger.get_next_fire_time(None, now)
        store.add_job(Job(scheduler, id=job_id, func=func, trigger=trigger, executor="default",
                          args=[marker], kwargs=kwargs, name=job_id, misfire_grace_time=job_grace, coalesce=True,
                          max_instances=1, next_run_time=next_run))
    store.shutdown()


if __name__ == "__main__":
    main()
