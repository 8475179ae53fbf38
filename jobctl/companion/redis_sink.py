"""Writing run records and heartbeats beside a RedisJobStore's keys (layout.runs_key & co).

Only the writer thread calls this, on the companion's own client (stores.redis_client), under any
redis-py from 3.5 and any server from 5.0 (streams); what a server lacks (XTRIM MINID before 6.2)
is skipped.
"""

from __future__ import annotations

import json
from typing import Any

from jobctl.companion import layout, records
from jobctl.companion.stores import StoreRef

# last_runs entries looked at per prune (HSCAN COUNT), and the stream's length when nothing
# better is known
SCAN_COUNT = 500
DEFAULT_MAXLEN = 100_000


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
        self.summaries: dict[str, dict[str, Any]] = {}
        self.minid_supported = True
        self.scan_cursor: Any = 0

    def prepare(self) -> None:
        if self.maxlen is None:
            self._size_stream()

    def reset(self) -> None:
        self.summaries.clear()  # another writer may have changed them while we could not see

    def _size_stream(self) -> None:
        """The stream holds every job's runs: keep_runs for each job in the store (XADD's
        approximate MAXLEN; refreshed at each prune)."""
        if self.keep_runs:
            self.maxlen = self.keep_runs * max(1, int(self.redis.hlen(self.jobs_key)))
        else:
            self.maxlen = DEFAULT_MAXLEN

    def write_runs(self, batch: list[dict[str, Any]]) -> None:
        """XADD each run, and HSET each job's summary, in one MULTI/EXEC."""
        self.prepare()
        unknown = sorted({r["job_id"] for r in batch} - set(self.summaries))
        if unknown:
            for job_id, raw in zip(unknown, self.redis.hmget(self.last_runs_key, unknown)):
                self.summaries[job_id] = records.parse_summary(raw) or {}
        changed: dict[str, dict[str, Any]] = {}
        pipe = self.redis.pipeline(transaction=True)
        for record in batch:
            fields = {k: v for k, v in record.items() if v is not None}
            pipe.xadd(self.runs_key, fields, maxlen=self.maxlen, approximate=True)
            job_id = record["job_id"]
            changed[job_id] = records.summarize(changed.get(job_id) or self.summaries.get(job_id), record)
        for job_id, summary in changed.items():
            pipe.hset(self.last_runs_key, job_id, json.dumps(summary))
        pipe.execute()
        self.summaries.update(changed)

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
        if isinstance(exc, (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.ReadOnlyError, OSError)):
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
        old = [job_id for job_id, raw in entries.items()
               if records.stored_time((records.parse_summary(raw) or {}).get("last_finished_at"), 0.0) < cutoff]
        if old:
            self.redis.hdel(self.last_runs_key, *old)
            for job_id in old:
                self.summaries.pop(job_id.decode() if isinstance(job_id, bytes) else job_id, None)
        # the scan goes on where it stopped at the next prune: the work of one prune stays bounded
        self.scan_cursor = cursor
        return True
