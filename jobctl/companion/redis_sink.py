"""Writing run records and heartbeats beside a RedisJobStore's keys (layout.runs_key & co).

Only the writer thread calls this, on the companion's own client (stores.redis_client), under any
redis-py from 3.5 and any server from 5.0 (streams); what a server lacks (XTRIM MINID before 6.2)
is skipped.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from jobctl.companion import layout, records
from jobctl.companion.stores import StoreRef

# last_runs entries looked at per prune (HSCAN COUNT), and the stream's length when nothing
# better is known
SCAN_COUNT = 500
DEFAULT_MAXLEN = 100_000
# tries of one batch's WATCH/MULTI/EXEC while other schedulers change last_runs meanwhile (a
# few ms apart, at random: two writers that collided once do not collide again); then the
# batch waits for the writer's retry, as for a server away
WATCH_TRIES = 8
WATCH_PAUSE = 0.005


class RedisSink:
    def __init__(self, ref: StoreRef, keep_runs: int | None) -> None:
        jobs_key = ref.jobs_key or "apscheduler.jobs"
        self.redis = ref.redis
        self.jobs_key = jobs_key
        self.runs_key = layout.runs_key(jobs_key)
        self.last_runs_key = layout.last_runs_key(jobs_key)
        self.schedulers_key = layout.schedulers_key(jobs_key)
        self.keep_runs = keep_runs
        self.maxlen: int | None = None
        self.minid_supported = True
        self.scan_cursor: Any = 0

    def prepare(self) -> None:
        if self.maxlen is None:
            self._size_stream()

    def reset(self) -> None:
        pass

    def _size_stream(self) -> None:
        """The stream holds every job's runs: keep_runs for each job in the store (XADD's
        approximate MAXLEN; refreshed at each prune)."""
        if self.keep_runs:
            self.maxlen = self.keep_runs * max(1, int(self.redis.hlen(self.jobs_key)))
        else:
            self.maxlen = DEFAULT_MAXLEN

    def write_runs(self, batch: list[dict[str, Any]]) -> None:
        """XADD each run, and HSET each job's summary, in one MULTI/EXEC. The summaries (their
        run counts above all) are read under WATCH: another scheduler changing last_runs
        before our EXEC makes it fail, and the batch is merged again with what it wrote."""
        from redis.exceptions import WatchError

        self.prepare()
        job_ids = sorted({r["job_id"] for r in batch})
        for attempt in range(WATCH_TRIES):
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self.last_runs_key)
                    stored = dict(zip(job_ids, pipe.hmget(self.last_runs_key, job_ids)))
                    changed: dict[str, dict[str, Any]] = {}
                    pipe.multi()
                    for record in batch:
                        fields = {k: v for k, v in record.items() if v is not None}
                        pipe.xadd(self.runs_key, fields, maxlen=self.maxlen, approximate=True)
                        job_id = record["job_id"]
                        changed[job_id] = records.summarize(changed.get(job_id) or records.parse_summary(stored[job_id]), record)
                    for job_id, summary in changed.items():
                        pipe.hset(self.last_runs_key, job_id, json.dumps(summary))
                    pipe.execute()
                    return
                except WatchError:
                    if attempt == WATCH_TRIES - 1:
                        raise
            time.sleep(random.uniform(0, WATCH_PAUSE * (attempt + 1)))

    def heartbeat(self, row: dict[str, Any]) -> None:
        self.redis.hset(self.schedulers_key, row["instance"], json.dumps(row))

    @staticmethod
    def is_data_error(exc: BaseException) -> bool:
        """A failure retrying cannot help: the server refused the command (a key of another
        type, say) or the client could not send it. A server away, busy, loading or read-only
        is retried."""
        from redis import exceptions

        # LOADING is a BusyLoadingError (a ConnectionError); READONLY a ReadOnlyError (a replica
        # while a failover goes on); the codes below reach us as plain ResponseError text
        retried = (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.ReadOnlyError, exceptions.WatchError, OSError)
        if isinstance(exc, retried):
            return False
        if isinstance(exc, exceptions.ResponseError):
            return not str(exc).startswith(("BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"))
        return True

    def prune(self, cutoff: float, keep_runs: int | None, jobs: set[str], deadline: float) -> bool:
        """XTRIM by age (MINID, Redis 6.2+; skipped before) and by length (MAXLEN, approximate:
        whole stream nodes only, cheap; per job keep_runs cannot be kept in one stream); schedulers older than CUTOFF; last_runs entries that
        ended before CUTOFF (a few hundred per prune, by HSCAN: jobs long removed)."""
        from redis.exceptions import ResponseError

        if self.minid_supported:
            try:
                # exact, not "~": approximate trimming only drops whole stream nodes (100 entries),
                # so a small stream would keep its old entries for ever; a prune is rare
                self.redis.execute_command("XTRIM", self.runs_key, "MINID", f"{int(cutoff * 1000)}-0")
            except ResponseError:
                self.minid_supported = False
        self._size_stream()
        if self.maxlen:
            self.redis.execute_command("XTRIM", self.runs_key, "MAXLEN", "~", self.maxlen)
        stale = []
        for instance, raw in self.redis.hgetall(self.schedulers_key).items():
            row = records.parse_summary(raw) or {}
            if records.stored_time(row.get("heartbeat_at"), 0.0) < cutoff:  # damaged: stale
                stale.append(instance)
        if stale:
            self.redis.hdel(self.schedulers_key, *stale)
        cursor, entries = self.redis.hscan(self.last_runs_key, self.scan_cursor, count=SCAN_COUNT)
        if [job_id for job_id, raw in entries.items() if self._ended_before(raw, cutoff)]:
            self._delete_old_summaries(list(entries), cutoff)
        # the scan goes on where it stopped at the next prune: the work of one prune stays bounded
        self.scan_cursor = cursor
        return True

    @staticmethod
    def _ended_before(raw: Any, cutoff: float) -> bool:
        return records.stored_time((records.parse_summary(raw) or {}).get("last_finished_at"), 0.0) < cutoff

    def _delete_old_summaries(self, job_ids: list[Any], cutoff: float) -> None:
        """HDEL those of JOB_IDS whose last run ended before CUTOFF, read again under WATCH: a
        job another scheduler has just recorded keeps its summary and its totals. A change
        meanwhile leaves them to a later prune."""
        from redis.exceptions import WatchError

        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.last_runs_key)
                old = [job_id for job_id, raw in zip(job_ids, pipe.hmget(self.last_runs_key, job_ids)) if raw is not None and self._ended_before(raw, cutoff)]
                if old:
                    pipe.multi()
                    pipe.hdel(self.last_runs_key, *old)
                    pipe.execute()
            except WatchError:
                pass
