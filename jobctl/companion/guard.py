"""No lost changes: the scheduler's write-back of a job it ran is made conditional.

APScheduler 3's `_process_jobs` reads the due jobs (`get_due_jobs`), submits them, and then
writes each back (`update_job`, or `remove_job` through `scheduler.remove_job` when the trigger
has no next run) without looking at the row again: a jobctl change (pause, resume, reschedule,
run) made in between is silently undone. The guard wraps four methods of the one job store
object it is given (instance attributes; the class and every other store are left alone):

- `get_due_jobs` and `_reconstitute_job`: while the scheduler reads its due jobs, remember for
  each job the Job object made and the exact `job_state` bytes it was made from;
- `update_job(job)` for such a Job object, and `remove_job(job_id)` for such an id, on the
  thread that read them: written only if the stored `job_state` is still exactly those bytes
  (SQL: UPDATE/DELETE ... WHERE id = ? AND job_state = ?; Redis: WATCH, HGET, MULTI, EXEC).
  Otherwise the store's version is kept: logged, `on_kept(job_id)`, and nothing raised, since
  an exception there ends APScheduler's scheduling loop. A row that already holds what the
  write-back would write (another scheduler sharing the store ran the job too and wrote the
  same, or removed it) is no change kept: nothing is said.

Everything else (the application's add_job, modify_job, pause_job, remove_job, a lookup) goes
through unchanged. The conditional write runs on the store's own engine or client, under the
scheduler's own lock, and writes exactly the values APScheduler 3.6-3.11 would: the pickle of
`job.__getstate__()` at the store's `pickle_protocol`, and `next_run_time` as a UTC timestamp.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable
from typing import Any

WATCH_TRIES = 10  # Redis: a jobs hash that keeps changing under WATCH falls back to the plain write


def install(ref: Any, log: logging.Logger, on_kept: Callable[[str], None]) -> None:
    """Guard the scheduler's write-back on `ref.store` (ref.kind "sql" or "redis"). Never
    raises: a store it cannot guard is logged and left as it is."""
    try:
        _install(ref, log, on_kept)
    except Exception:  # noqa: BLE001 - the companion never raises into the application
        log.exception("jobctl companion: could not guard job store %r; it runs unguarded", getattr(ref, "alias", None))


def _install(ref: Any, log: logging.Logger, on_kept: Callable[[str], None]) -> None:
    store = ref.store
    if getattr(store, "_jobctl_guarded", False):
        return
    write: _Writer
    if ref.kind == "sql" and all(hasattr(store, name) for name in ("engine", "jobs_t", "pickle_protocol")):
        write = _SqlWriter(store)
    elif ref.kind == "redis" and all(hasattr(store, name) for name in ("redis", "jobs_key", "run_times_key", "pickle_protocol")):
        write = _RedisWriter(store)
    else:
        log.warning("jobctl companion: job store %r is no SQLAlchemyJobStore or RedisJobStore; its write-back is not guarded", ref.alias)
        return
    batch = _Batch()
    get_due_jobs, reconstitute = store.get_due_jobs, store._reconstitute_job
    update_job, remove_job = store.update_job, store.remove_job

    def guarded_get_due_jobs(now: Any) -> Any:
        batch.begin()
        try:
            return get_due_jobs(now)
        finally:
            batch.reading = None

    def guarded_reconstitute(job_state: Any) -> Any:
        job = reconstitute(job_state)  # what it raises, APScheduler handles as before
        batch.remember(job, job_state)
        return job

    def guarded_update_job(job: Any) -> None:
        read = batch.take(job.id, job)
        if read is None:
            return update_job(job)
        _conditional(lambda: write.update(job, read), lambda: update_job(job), job.id, "rescheduled", log, on_kept)
        return None

    def guarded_remove_job(job_id: Any) -> None:
        read = batch.take(job_id, None)
        if read is None:
            return remove_job(job_id)
        _conditional(lambda: write.remove(job_id, read), lambda: remove_job(job_id), job_id, "removed", log, on_kept)
        return None

    store.get_due_jobs = guarded_get_due_jobs
    store._reconstitute_job = guarded_reconstitute
    store.update_job = guarded_update_job
    store.remove_job = guarded_remove_job
    store._jobctl_guarded = True


class _Batch:
    """What the current `get_due_jobs` read: job id -> (the Job object, its job_state bytes).

    Only the thread running `get_due_jobs` records, and only its own later writes are guarded:
    APScheduler reads and writes back on one thread, holding its job stores lock throughout,
    so no other thread's write of these jobs comes in between through the scheduler."""

    def __init__(self) -> None:
        self.reading: int | None = None  # the thread inside get_due_jobs
        self.owner: int | None = None  # the thread that read `jobs`
        self.jobs: dict[Any, tuple[Any, bytes]] = {}

    def begin(self) -> None:
        self.owner = self.reading = threading.get_ident()
        self.jobs = {}  # the previous round's leftovers (jobs not written back) go

    def remember(self, job: Any, job_state: Any) -> None:
        if self.reading == threading.get_ident():
            try:
                self.jobs[job.id] = (job, bytes(job_state))
            except Exception:  # noqa: BLE001 - not bytes-like: that job's write-back stays unguarded
                pass

    def take(self, job_id: Any, job: Any) -> bytes | None:
        """The bytes read for this job if this write is the scheduler's write-back of it: the
        same thread, and (for update_job) the very Job object get_due_jobs returned."""
        if self.owner != threading.get_ident() or job_id not in self.jobs:
            return None
        read_job, data = self.jobs[job_id]
        if job is not None and job is not read_job:
            return None  # the application's own write (modify_job and the like reload the job)
        del self.jobs[job_id]
        return data


class _Writer:
    """The conditional write: True written, or the store holds what it would write already
    (another scheduler sharing the store wrote the same back, or removed the job); False the
    stored job is otherwise not as read (nothing written: the store's version kept); None the
    store would not let it be compared (the plain write wanted)."""

    def update(self, job: Any, read: bytes) -> bool | None:
        raise NotImplementedError

    def remove(self, job_id: Any, read: bytes) -> bool | None:
        raise NotImplementedError


def _conditional(
    write: Callable[[], bool | None], plain: Callable[[], None], job_id: Any, doing: str, log: logging.Logger, on_kept: Callable[[str], None]
) -> None:
    from apscheduler.jobstores.base import JobLookupError

    try:
        written = write()
        if written is None:
            log.warning("jobctl companion: job %r could not be compared (its store kept changing); %s unguarded", job_id, doing)
            try:
                plain()
                written = True
            except JobLookupError:
                written = False  # gone meanwhile: APScheduler itself would raise here
    except Exception:  # noqa: BLE001 - raising here would end the scheduler's loop
        log.exception("jobctl companion: job %r could not be %s after its run", job_id, doing)
        return
    if written:
        return
    log.info("jobctl companion: job %r changed in the store while it ran (jobctl?); the store's version is kept, not %s by the scheduler", job_id, doing)
    try:
        on_kept(str(job_id))
    except Exception:  # noqa: BLE001
        log.exception("jobctl companion: on_kept failed for job %r", job_id)


def _state(store: Any, job: Any) -> tuple[bytes, float | None]:
    """What APScheduler's update_job writes: the pickle and the next run as a UTC timestamp."""
    from apscheduler.util import datetime_to_utc_timestamp

    return pickle.dumps(job.__getstate__(), store.pickle_protocol), datetime_to_utc_timestamp(job.next_run_time)


class _SqlWriter(_Writer):
    """SQLAlchemyJobStore: one compared statement on the store's engine (SQLAlchemy 1.3-2.x)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _run(self, statement: Any, job_id: Any, expected: bytes | None) -> bool:
        """STATEMENT, compared; if it found no row as read, whether the job's row is `expected`
        (its job_state; None: no row) all the same."""
        table = self.store.jobs_t
        with self.store.engine.begin() as connection:
            if connection.execute(statement).rowcount == 1:
                return True
            row = connection.execute(table.select().where(table.c.id == job_id)).first()
        if row is None or expected is None:
            return row is None and expected is None
        return bytes(row.job_state) == expected

    def _unchanged(self, job_id: Any, read: bytes) -> Any:
        from sqlalchemy import and_

        c = self.store.jobs_t.c
        return and_(c.id == job_id, c.job_state == read)

    def update(self, job: Any, read: bytes) -> bool:
        data, due = _state(self.store, job)
        table = self.store.jobs_t
        return self._run(table.update().values(next_run_time=due, job_state=data).where(self._unchanged(job.id, read)), job.id, data)

    def remove(self, job_id: Any, read: bytes) -> bool:
        return self._run(self.store.jobs_t.delete().where(self._unchanged(job_id, read)), job_id, None)


class _RedisWriter(_Writer):
    """RedisJobStore: the same MULTI/EXEC it writes, under WATCH of the jobs hash and only if the
    job's field still holds the bytes read (no Lua: the application's user may not run scripts).
    jobctl writes a job's field and score together in one script, so the field decides."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _watched(self, job_id: Any, read: bytes, expected: bytes | None, queue: Callable[[Any], None]) -> bool | None:
        """True: written, or the field is `expected` already (None: no field); False: the
        field is otherwise not as read; None: the hash kept changing."""
        from redis.exceptions import WatchError

        store = self.store
        for _ in range(WATCH_TRIES):
            with store.redis.pipeline() as pipe:
                try:
                    pipe.watch(store.jobs_key)
                    current = pipe.hget(store.jobs_key, job_id)
                    if current != read:
                        return current == expected
                    pipe.multi()
                    queue(pipe)
                    pipe.execute()
                    return True
                except WatchError:
                    continue
        return None

    def update(self, job: Any, read: bytes) -> bool | None:
        store = self.store
        data, due = _state(store, job)

        def queue(pipe: Any) -> None:
            pipe.hset(store.jobs_key, job.id, data)
            if job.next_run_time:
                pipe.zadd(store.run_times_key, {job.id: due})
            else:
                pipe.zrem(store.run_times_key, job.id)

        return self._watched(job.id, read, data, queue)

    def remove(self, job_id: Any, read: bytes) -> bool | None:
        store = self.store

        def queue(pipe: Any) -> None:
            pipe.hdel(store.jobs_key, job_id)
            pipe.zrem(store.run_times_key, job_id)

        return self._watched(job_id, read, None, queue)
