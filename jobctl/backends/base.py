"""The store boundary: what a backend is, and the records it moves.

A backend moves bytes and never decides. It reads stored records (every stored field verbatim)
and performs three kinds of write, each conditional on the records being exactly as they were
read, each one atomic step: `swap` one record, `delete` some records, `insert` new records
(replacing some). It does not decode, resolve globs exactly, retry, wait or choose: those are
the rules, and `jobctl.session` keeps them, as the only caller of these writes. A new kind of
store is a subclass of `Backend` registered in `jobctl.backends`, and passes the contract suite
in `tests/contract/`.

Where each rule lives:

- never lose a row, never create: `jobctl.session` (a backend opened without `create` raises
  MissingStore for a missing store and makes nothing);
- never run code from a row: `jobctl.codec` (nothing else unpickles);
- write back exactly: `jobctl.kinds` builds the new record, `jobctl.codec` encodes it;
- atomic beside running schedulers: the conditional writes here, the retry loop and the lock
  deadline in `jobctl.session`;
- never in the way: a backend waits at most `lock_seconds` for another transaction's lock, and
  at most `answer_seconds` more for a server to answer any one step (connecting included).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from jobctl.backends.runs import RunLog


class Record(NamedTuple):
    """One stored job, its fields exactly as the store holds them.

    `due` is the store's own next-run value (APScheduler 3: the `next_run_time` column, or the
    `run_times` score), UTC epoch seconds, None when paused; listings are ordered by it. `data`
    is the serialized job (APScheduler 3: the `job_state` pickle), None where the store holds
    none for this id, or whatever other value a damaged store holds there (TEXT, a number), as
    it is: never converted, so a huge INTEGER never becomes that many bytes.
    """

    id: str
    due: float | None
    data: bytes | str | int | float | Row | None


# in a Row's fields: the columns whose stored value could not be put in the common form (text
# in a time column, say): kept as stored, and the record is unreadable to what reads it
BAD = "_unreadable_columns"


@dataclass(frozen=True, eq=False)
class Row:
    """A record stored as a row of many columns (APScheduler 4's `schedules`): `raw`, every
    column as the driver gave it, which writes compare; `fields`, the same values in one form
    on every database (times as aware datetimes, intervals as timedeltas, flags as bools)."""

    fields: dict
    raw: dict


class Page(NamedTuple):
    """One read step's records, and the key to read the next page after (None: no more)."""

    records: list[Record]
    after: tuple | None


@dataclass(frozen=True)
class Target:
    """Which store: a URL and the names inside it (a SQL table, or Redis keys)."""

    url: str
    table: str = "apscheduler_jobs"
    schema: str | None = None
    jobs_key: str = "apscheduler.jobs"
    run_times_key: str = "apscheduler.run_times"
    # which kind of store a database holds: "aps3" (a job table), "aps4" (APScheduler 4's
    # tables), None to find out (and refuse to guess when it holds both)
    kind: str | None = None
    notify: bool = True  # APScheduler 4: tell running schedulers of a change (NOTIFY)
    channel: str = "apscheduler"  # ... on the event broker's channel
    broker_url: str | None = None  # APScheduler 4 with a Redis event broker: publish there


@dataclass
class Stats:
    """Counts and lateness for `health`, from aggregates where the store can give them."""

    total: int
    active: int
    late: int  # due before the warning threshold
    overdue: int  # due before the critical threshold
    soonest: float | None  # the lowest due value

    @property
    def paused(self) -> int:
        return self.total - self.active


class Backend(ABC):
    """One store of one kind. Opened by `jobctl.backends.open_backend`.

    Every method raises jobctl's own errors (StoreError, MissingStore, LockTimeout when another
    transaction held a lock past `lock_seconds`, Conflict when the database broke a deadlock and
    the step changed nothing), never a driver's.
    """

    kind = "aps3"  # what its records mean: a jobctl.kinds module
    name = ""  # "sqlite", "postgresql", "mysql", "redis": what an export records as its source
    location = ""  # where, for messages (no password)
    whole_store_lock = False  # one lock covers every record (SQLite): no point trying the next
    created = False  # opened with create=True, and it made the store
    # a store that exists once something is written to it (Redis keys): nothing to create
    # first, so `import` writes into it without --create-table
    made_by_writing = False
    # the "id" order may give a record twice (a Redis hash scanned while it shrinks)
    may_repeat = False
    # a page after a key sorts every record tied on its due time again (SQL's keyset), so the
    # session reads bigger pages through a long tie; a store that pages by rank does not
    resorts_ties = True

    @abstractmethod
    def __init__(self, target: Target, write: bool = False, create: bool = False, lock_seconds: int = 10, answer_seconds: int = 10) -> None:
        """Open the store `target` names, for writing if `write`. Without `create`, a store
        that does not exist is MissingStore and nothing is made."""

    @property
    def names(self) -> dict[str, str | None]:
        """The names inside the store, as an export records them."""
        return {}

    @abstractmethod
    def page(self, order: str, after: tuple | None, size: int, hint: Sequence[str] = (), fields: Sequence[str] = ()) -> Page:
        """About `size` records following the key `after` (None: from the start), read in
        one short step, and the key of the next page (None after the last). `order` is "due"
        (records with a due value, by (due, id)), "paused" (records without one) or "id"
        (every record); the last two by id where the store orders ids (SQL), else in the
        store's own order (a Redis hash's scan order). `fields`, where a record holds many
        (APScheduler 4's rows): only these are wanted, for showing; such records are never
        written back. `hint` holds id globs the caller
        filters by exactly; a backend may use it to read less, and may return records that
        do not match, never leave out one that does. Ids are ordered and compared by the
        store's own rules (a collation): ids unique under those rules never tie, so a key
        never skips a record."""

    @abstractmethod
    def ids(self, hint: Sequence[str] = ()) -> Iterator[str]:
        """Every id (or those the `hint` globs may match, as in `scan`), in order."""

    @abstractmethod
    def get(self, ids: Sequence[str], lock: bool = False) -> list[Record]:
        """The records with these ids, as stored. A store that compares ids loosely (a
        case-insensitive collation) may return others too; the caller compares exactly.
        `lock`, inside `transaction()`: hold these records' locks until it ends, where the
        store has row locks (SELECT ... FOR UPDATE)."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Backend]:
        """A read-modify-write as one unit: what this yields is the backend, its steps taken
        in one transaction where the store has them, so a locked `get` makes a concurrent
        writer wait rather than race. By default each step stands alone (and the conditional
        writes still compare)."""
        yield self

    @abstractmethod
    def swap(self, old: Record, new: Record) -> bool:
        """Replace `old` by `new` (same id) if the stored record is still exactly `old`.
        False, with nothing written, when it is not (changed or gone)."""

    @abstractmethod
    def delete(self, old: Sequence[Record]) -> bool:
        """Delete every record in `old` if each is still exactly as given, in one atomic step.
        False, with nothing deleted, when any is not."""

    @abstractmethod
    def insert(self, new: Sequence[Record], replacing: Sequence[Record] = ()) -> bool:
        """In one atomic step, delete `replacing` (each still exactly as given) and insert `new`.
        False, with nothing written, when a replaced record changed or a new id already exists."""

    def stats(self, now: float, warning: float, critical: float) -> Stats | None:
        """Counts from the store's own aggregates, or None to have the caller count a scan.
        `warning` and `critical` are due values: records due before them are late, overdue."""
        return None

    def run_log(self) -> RunLog | None:
        """What jobctl's companion records beside this store (runs, heartbeats), or None
        where it records nothing."""
        return None

    def undo_create(self) -> None:  # noqa: B027 - optional: a backend that cannot create has nothing to undo
        """Take back what opening with create=True made, but only while it is still empty."""

    def close(self) -> None:  # noqa: B027 - optional: a backend may hold nothing to release
        """Release connections."""
