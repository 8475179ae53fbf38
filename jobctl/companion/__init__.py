"""jobctl's in-app companion: records each run of the scheduler's jobs, and a heartbeat, beside
the job store, for `jobctl` to answer "did it run, and did it work?".

    from jobctl.companion import attach
    attach(scheduler)

It runs inside the application, under the application's APScheduler (3.6 to 3.11), SQLAlchemy
(1.3 to 2.x) and redis-py (3.5 to 8.x), and imports nothing else of jobctl's: importing this
package costs next to nothing (everything is imported when attach() is called). Where the
records go, and in what form, is jobctl/companion/layout.py.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing would triple this package's import time, and
# mypy takes any constant of that name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from jobctl.companion.runtime import Companion

__all__ = ["attach"]


def attach(
    scheduler: Any,
    *,
    heartbeat: float = 10.0,
    keep_days: float | None = 30.0,
    keep_runs: int | None = 1000,
    stores: list[str] | None = None,
    wake: bool = True,
    guard: bool = True,
    poll: float = 0.5,
    queue_size: int = 10_000,
    prune_every: float = 600.0,
) -> Companion:
    """Attach the companion to an APScheduler 3 scheduler (Background, Blocking or AsyncIO).

    Call it before or after `scheduler.start()`, before or after the job stores are added: the
    companion begins when the scheduler starts (at once if it runs already) and takes each
    SQLAlchemyJobStore and RedisJobStore as it is added; other stores (memory, ...) are left
    alone. Nothing it does raises into the application, blocks a job or delays the scheduler:
    events are queued without waiting, and written by one daemon thread per store on its own
    small connection; its errors go to the `jobctl.companion` logger.

    - heartbeat: seconds between two updates of the scheduler's row (the first at start; a
      clean shutdown writes `stopped_at`).
    - keep_days: run records older than this are deleted (None: kept by age).
    - keep_runs: the newest runs kept per job (None: no limit). A Redis stream holds every
      job's runs: it is bounded as a whole, to keep_runs times the number of jobs.
    - stores: the aliases of the job stores to record (None: every SQL and Redis store).
    - wake: wake the scheduler when jobctl changes its store (PostgreSQL LISTEN, Redis
      SUBSCRIBE, else polling the store every `poll` seconds).
    - guard: keep a change jobctl makes to a job while the scheduler runs it (the scheduler's
      write-back of that job is made conditional).
    - poll: seconds between two looks at the store where wake-up cannot listen.
    - queue_size: events waiting to be written, and records waiting for an unavailable database,
      each at most this many; past that they are counted (the row's `unrecorded`) and dropped.
    - prune_every: seconds between two prunes (age and keep_runs).

    Returns the Companion: `stop()` detaches it (the row gets stopped_at); `recorded`,
    `unrecorded` and `kept` (write-backs the guard turned down) count.
    """
    from jobctl.companion import runtime
    from jobctl.companion.writer import Options

    # floors, so that a zero cannot turn the writer into a busy loop
    options = Options(heartbeat=max(float(heartbeat), 0.1), keep_days=None if keep_days is None else float(keep_days),
                      keep_runs=None if not keep_runs else max(int(keep_runs), 1), queue_size=max(int(queue_size), 1),
                      prune_every=max(float(prune_every), 0.1))
    return runtime.attach(scheduler, stores=stores, wake=wake, guard=guard, poll=float(poll), options=options)
