"""The rules, kept in one place over any backend: the only caller of a backend's writes.

- Ids and globs are resolved exactly here (a backend's filters are only hints): an exact id
  wins over the glob it also spells, a glob must match something, and an id the store
  compares loosely (a case-insensitive collation) is never taken for another.
- Every change is a compare-and-swap: read the record, compute the new one, write it only if
  the stored record is still the one read. A record changed in between is read again and the
  change re-applied, until JOBCTL_LOCK_TIMEOUT runs out; then it is refused. A deadlock the
  database broke changed nothing and is run again within the same deadline.
- remove and import are all or nothing: one atomic backend step, compared with what was read.
- Nothing is created: a store is opened with `create` only by `import --create-table`, and what
  that made is taken back (while still empty) if the import fails.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from jobctl.backends import Backend, Record, Stats, Target, open_backend
from jobctl.errors import Busy, ChangeRefused, Conflict, LockTimeout, NoSuchJob, UsageError

LOCK_TIMEOUT = 10  # seconds to wait for another transaction's lock (JOBCTL_LOCK_TIMEOUT)
ANSWER_TIMEOUT = 10  # seconds a server may stay silent in one step, beyond its lock wait (JOBCTL_TIMEOUT)
MAX_LOCK_TIMEOUT = 86400
MAX_ATTEMPTS = 50  # compare-and-swap attempts within the deadline
PAGE = 1000  # records a read step takes: milliseconds of a lock on SQLite
MAX_PAGE = 64000
_GLOB_CHARS = set("*?[")
T = TypeVar("T")


def is_pattern(text: str) -> bool:
    return bool(_GLOB_CHARS & set(text))


def matches(job_id: str, pattern: str) -> bool:
    return job_id == pattern or fnmatch.fnmatchcase(job_id, pattern)


def lock_timeout() -> int:
    """Seconds to wait for another transaction's lock: $JOBCTL_LOCK_TIMEOUT or 10."""
    return _seconds("JOBCTL_LOCK_TIMEOUT", LOCK_TIMEOUT)


def _seconds(variable: str, default: int) -> int:
    value = os.environ.get(variable, "")
    if not value:
        return default
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_LOCK_TIMEOUT):
        raise UsageError(f"{variable} must be a whole number of seconds from 1 to {MAX_LOCK_TIMEOUT}, not {value!r}")
    return int(value)


def answer_timeout() -> int:
    """Seconds a server may stay silent in one step beyond its lock wait: $JOBCTL_TIMEOUT or 10."""
    return _seconds("JOBCTL_TIMEOUT", ANSWER_TIMEOUT)


def open_session(target: Target, write: bool = False, create: bool = False) -> Session:
    """A session on the store `target` names; `create` only for `import --create-table`."""
    seconds = lock_timeout()  # read (and checked) once: every wait uses it
    backend = open_backend(target, write=write, create=create, lock_seconds=seconds, answer_seconds=answer_timeout())
    return Session(backend, seconds)


@dataclass
class Removal:
    removed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # named, but removed by another process meanwhile


@dataclass
class Import:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


class Session:
    """One store and the rules over it."""

    def __init__(self, backend: Backend, lock_seconds: int = LOCK_TIMEOUT) -> None:
        self.backend = backend
        self.lock_seconds = lock_seconds

    # --- reading ---------------------------------------------------------------------

    def scan(self, patterns: Sequence[str] = (), paused: bool | None = None, limit: int | None = None, by_id: bool = False, fields: Sequence[str] = ()) -> Iterator[Record]:
        """Records whose id matches a pattern (every record without one), at most `limit`:
        due ones soonest first, then paused ones (or all by id, `by_id`). `paused` True gives
        only paused ones, False only due ones.

        Read in pages, each one short read (never a transaction held while the caller works:
        a long read would lock a SQLite store's writers out). So a long listing is not one
        snapshot: each page is consistent in itself, and a job a scheduler moves while jobctl
        reads may show in two places or none. By id (export), a job present throughout shows
        exactly once.
        """
        patterns = list(patterns)
        if by_id:
            orders = ["id"]
        else:
            orders = [o for o, wanted in (("due", paused is not True), ("paused", paused is not False)) if wanted]
        # a few records (health's next five) need no page of a thousand; a filter may skip some
        first = PAGE if limit is None or patterns or (by_id and paused is not None) else max(1, min(PAGE, limit))
        records: Iterator[Record] = itertools.chain.from_iterable(self._pages(order, patterns, first, fields) for order in orders)
        if patterns:
            records = (r for r in records if any(matches(r.id, p) for p in patterns))
        if by_id and paused is not None:
            records = (r for r in records if (r.due is None) == paused)
        if by_id and self.backend.may_repeat:
            records = _once(records)
        return itertools.islice(records, limit)

    def _pages(self, order: str, hint: Sequence[str], first: int = PAGE, fields: Sequence[str] = ()) -> Iterator[Record]:
        after: tuple | None = None
        size = first
        while True:
            page = self.backend.page(order, after, size, hint, fields) if fields else self.backend.page(order, after, size, hint)
            yield from page.records
            if page.after is None:
                return
            after = page.after
            records = page.records
            if order == "due" and self.backend.resorts_ties and len(records) >= size and records[0].due == records[-1].due:
                # a page all of one due time: the next read sorts that whole tie by id again,
                # so read more at a time while it lasts
                size = min(size * 2, MAX_PAGE)
            else:
                size = PAGE

    def get(self, job_id: str) -> Record:
        """The record with exactly this id."""
        return _exactly(self.backend.get([job_id]), job_id)

    def get_many(self, ids: Sequence[str]) -> dict[str, Record]:
        wanted = set(ids)
        return {r.id: r for r in self.backend.get(list(ids)) if r.id in wanted}

    def resolve(self, patterns: Iterable[str]) -> list[str]:
        """The ids the operator named: exact ids must exist, each glob must match something."""
        ids: list[str] = []
        seen: set[str] = set()
        for pattern in patterns:
            if is_pattern(pattern):
                candidates = list(self.backend.ids([pattern]))
                # an exact id wins over the glob it also spells ('report[1]' the job, not 'report1')
                found = [pattern] if pattern in candidates else [i for i in candidates if fnmatch.fnmatchcase(i, pattern)]
            else:
                found = [pattern] if self.get_many([pattern]) else []
            if not found:
                what = "matches" if is_pattern(pattern) else "has the id"
                raise NoSuchJob(f"no job {what} {pattern!r}")
            for job_id in found:
                if job_id not in seen:
                    seen.add(job_id)
                    ids.append(job_id)
        return ids

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Job ids for shell completion."""
        glob = "".join(f"[{c}]" if c in _GLOB_CHARS else c for c in prefix) + "*"
        return list(itertools.islice((i for i in self.backend.ids([glob]) if i.startswith(prefix)), limit))

    def stats(self, now: float, warning: float, critical: float) -> Stats:
        """Counts and lateness: the backend's aggregates, or a count over a scan (nothing is
        decoded either way)."""
        stats = self.backend.stats(now, warning, critical)
        if stats is not None:
            return stats
        stats = Stats(0, 0, 0, 0, None)
        for record in self.scan(by_id=True):
            stats.total += 1
            if record.due is not None:
                stats.active += 1
                stats.late += record.due < warning
                stats.overdue += record.due < critical
                stats.soonest = record.due if stats.soonest is None else min(stats.soonest, record.due)
        return stats

    def due_before(self, before: float, limit: int) -> list[Record]:
        """The records due before `before`, oldest first (a scan is ordered by due)."""
        return list(itertools.takewhile(lambda r: r.due is not None and r.due < before, self.scan(paused=False, limit=limit)))

    def soonest_other(self, job_id: str) -> float | None:
        """The earliest due time of the other jobs: when a sleeping scheduler wakes."""
        for record in self.scan(paused=False, limit=2):
            if record.id != job_id:
                return record.due
        return None

    def guarded(self) -> bool:
        """Whether a live companion guards this store's jobs against its scheduler's write-back."""
        return any(s.get("guarded") for s in self.attached() or [])

    def woken(self) -> list[dict]:
        """The live schedulers whose companion wakes them when jobctl changes the store."""
        return [s for s in self.attached() or [] if s.get("wakes")]

    def attached(self) -> list[dict] | None:
        """The schedulers whose jobctl companion is alive on this store (a fresh heartbeat):
        they wake at a change and guard it. None where no companion ever recorded anything.
        Asked once per session."""
        if not hasattr(self, "_attached"):
            import time

            from jobctl.errors import JobctlError
            from jobctl.history import is_alive, readable_run_log, records_unread

            log = readable_run_log(self)
            try:
                self._attached = None if log is None else [s for s in log.schedulers() if is_alive(s, time.time())]
            except JobctlError as exc:  # the change is made all the same
                records_unread(exc)
                self._attached = None
        return self._attached

    def sample(self, count: int) -> list[Record]:
        return list(self.scan(limit=count))

    # --- writing: the only caller of a backend's writes ---------------------------------

    def change(self, job_id: str, apply: Callable[[Record], Record | None], dry_run: bool = False) -> tuple[Record, Record | None]:
        """Read, change and write one record; returns (before, after), after None when `apply`
        left it alone. Compare-and-swap: a record changed between read and write is read again
        and the change re-applied, until the lock deadline; then the change is refused."""

        def attempt() -> tuple[Record, Record | None] | None:
            # one transaction: where the store has row locks, the record stays locked from
            # this read to the write, so concurrent writers wait their turn
            with self.backend.transaction() as steps:
                before = _exactly(steps.get([job_id], lock=not dry_run), job_id)
                after = apply(before)
                if after is None or dry_run:
                    return before, after
                if after.id != before.id:
                    raise ChangeRefused(f"a change may not rename job {job_id!r}")
                return (before, after) if steps.swap(before, after) else None

        try:
            return self._until_written(attempt, f"job {job_id!r} kept changing while jobctl tried to change it; nothing was changed")
        except LockTimeout as exc:
            raise LockTimeout(f"job {job_id!r}: {exc}", whole_store=exc.whole_store) from None

    def remove(self, ids: Sequence[str], dry_run: bool = False, check: Callable[[Record], None] | None = None) -> Removal:
        """Remove exactly these records in one atomic step, each as it is now; ids another
        process removed meanwhile are reported, not an error here. `check(record)` may refuse
        one as it is now (raising Busy to wait for it, as for a change)."""

        def attempt() -> Removal | None:
            found = self.get_many(ids)
            if check is not None:
                for record in found.values():
                    check(record)
            removal = Removal([i for i in ids if i in found], [i for i in ids if i not in found])
            if dry_run or not found or self.backend.delete([found[i] for i in removal.removed]):
                return removal
            return None

        return self._until_written(attempt, "the jobs kept changing while jobctl tried to remove them; nothing was removed")

    def import_(self, records: Sequence[Record], replace: bool, dry_run: bool = False, check: Callable[[Record], None] | None = None) -> Import:
        """Insert records exactly as given, all or nothing; existing ids are refused unless
        `replace`, and then replaced as they are now. `check(record)` may refuse a record to
        be replaced, as for remove."""
        if any(r.data is None for r in records):
            raise UsageError("an imported job has no stored state")
        ids = [r.id for r in records]

        def attempt() -> Import | None:
            existing = self.get_many(ids)
            if existing and not replace:
                shown = ", ".join(sorted(existing)[:5]) + (" …" if len(existing) > 5 else "")
                raise ChangeRefused(f"{len(existing)} job(s) already exist ({shown}): pass --replace to overwrite them")
            if check is not None:
                for record in existing.values():
                    check(record)
            result = Import([i for i in ids if i not in existing], [i for i in ids if i in existing])
            if dry_run or self.backend.insert(records, replacing=list(existing.values())):
                return result
            return None

        return self._until_written(attempt, "the store kept changing while jobctl tried to import; nothing was imported")

    def enqueue(self, record_id: str, make: Callable[[Record], dict], dry_run: bool = False) -> dict:
        """Add a job for the record (an APScheduler 4 schedule) while it is still as read:
        `make(record)` gives the job's fields; returns them."""

        def attempt() -> dict | None:
            record = self.get(record_id)
            job = make(record)
            if dry_run or self.backend.enqueue(record, job):  # type: ignore[attr-defined]
                return job
            return None

        return self._until_written(attempt, f"schedule {record_id!r} kept changing while jobctl tried to run it; nothing was queued")

    def _until_written(self, attempt: Callable[[], T | None], refusal: str) -> T:
        """The one retry loop: run `attempt` (read, then one conditional write) until it
        returns a result. None means a record changed between its read and its write, and a
        Conflict that the database undid the step to break a deadlock: either way nothing was
        written, so read again and retry, within the lock deadline; then refuse."""
        deadline = time.monotonic() + self.lock_seconds
        busy: Busy | None = None
        for number in range(MAX_ATTEMPTS):
            try:
                result = attempt()
            except Busy as exc:  # held by another process: wait for it, and say so if it lasts
                result, busy = None, exc
            except Conflict:
                result = None
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                break
            _back_off(number)
        raise ChangeRefused(str(busy) if busy is not None else refusal)

    def undo_create(self) -> None:
        self.backend.undo_create()

    def close(self) -> None:
        self.backend.close()


def _once(records: Iterable[Record]) -> Iterator[Record]:
    """Each record once, by id: a store scanned in its own order (a Redis hash while it
    shrinks) may give one twice, and an export must not hold an id twice. Keeps the ids
    seen, which costs about 100 bytes a job."""
    seen: set[str] = set()
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            yield record


def _exactly(records: Iterable[Record], job_id: str) -> Record:
    for record in records:
        if record.id == job_id:
            return record
    raise NoSuchJob(f"no job with id {job_id!r}")


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0.01, 0.05) * min(attempt + 1, 10))  # let the other writer finish
