"""jobctl's own exceptions. cli.py turns each into one line on stderr and its exit code."""

from __future__ import annotations

NOTICES: list[str] = []  # warnings for the operator met while working; the CLI prints them


def notice(text: str) -> None:
    """A one-line warning the command line prints on stderr once the command is done (a store
    jobctl only reads, say): the layers below the CLI print nothing themselves."""
    if text not in NOTICES:
        NOTICES.append(text)


class JobctlError(Exception):
    """An operation failed: exit code 1 (no such job, unreachable store, refused change)."""

    exit_code = 1


class Stopped(JobctlError):
    """SIGTERM (cron's timeout, systemd's stop) ended a command that turns it into this: exit
    143, as a process that SIGTERM ends, with one line rather than a traceback."""

    exit_code = 143


class UsageError(JobctlError):
    """The command line asked for something malformed: exit code 2."""

    exit_code = 2


class StoreError(JobctlError):
    """The store cannot be reached, does not exist, or is not an APScheduler job table."""


class Unanswered(StoreError):
    """The store did not answer in time or could not be reached: nothing more can be read from
    it in this command (where a side read fails so, the command fails, not only that read)."""


class MissingStore(StoreError):
    """The SQLite file or the job table does not exist (jobctl never creates them unasked).

    `dialect` names the database it is missing from ("sqlite", "postgresql", ...).
    """

    def __init__(self, message: str, dialect: str = "sqlite") -> None:
        super().__init__(message)
        self.dialect = dialect


class NoSuchJob(JobctlError):
    """A job id or pattern matched nothing."""


class ChangeRefused(JobctlError):
    """A change cannot be made safely (unreadable row, no future fire time, concurrent change)."""


class LockTimeout(ChangeRefused):
    """Another transaction held a lock longer than jobctl waits (JOBCTL_LOCK_TIMEOUT).

    `whole_store` when the lock covers every job (SQLite locks the database), so there is no
    point trying the next job.
    """

    def __init__(self, message: str, whole_store: bool = False) -> None:
        super().__init__(message)
        self.whole_store = whole_store


class Conflict(StoreError):
    """The database aborted a step to break a deadlock (or a serialization conflict): the step
    changed nothing and may be run again."""


class Busy(Conflict):
    """A record is held by another process (an APScheduler 4 scheduler's lease): the step
    changed nothing, may be tried again, and the message says who holds it until when."""


class UnreadableState(Exception):
    """A job_state pickle could not be decoded safely; the row is shown as unreadable."""
