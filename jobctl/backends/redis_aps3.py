"""APScheduler 3's RedisJobStore (a hash and a sorted set) as a backend.

RedisJobStore keeps a job in two keys: the hash `apscheduler.jobs` (field: the job id, value:
the job_state pickle, the same bytes as the SQL table's column) and the sorted set
`apscheduler.run_times` (member: the job id, score: the next run time in UTC epoch seconds; a
paused job is in the hash only). Its loading deletes every job it cannot restore, and every
run_times member without a job: it is never called.

Every write is one Lua script, so Redis runs it atomically: it first compares every record it
touches, in both keys, with what was read, and writes both keys or nothing. A page of the
sorted set is read under WATCH (ids and scores, then their pickles in MULTI/EXEC, which Redis
runs only if neither key changed), or, when that keeps failing or is refused, by a script:
either way one state of the store. A Redis server orders the members of a sorted
set by (score, id bytes), which is the "due" order; a hash has no order, so the "paused" and
"id" orders are the hash's scan order (HSCAN), followed by the run_times members that have no
job (orphans) for "id".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from jobctl.backends.base import Backend, Page, Record, Stats, Target
from jobctl.backends.deadline import Cut
from jobctl.errors import JobctlError, MissingStore, StoreError, Unanswered, UsageError, notice

if TYPE_CHECKING:
    from jobctl.backends.runs import RunLog

CONNECT_TIMEOUT = 5  # seconds (or JOBCTL_TIMEOUT, if less): an unreachable server fails fast
ID_CHUNK = 1000  # ids per read script: a few milliseconds of Redis's time

# Is the record at ARGV[o..o+3] (id, "1" if it has a pickle else "0", the pickle, due score or
# "") still exactly so in both keys? Scores compare as numbers: Lua reads both as doubles.
# Strings only ever compare for equality (Lua's "<" would follow the server's locale).
_UNCHANGED = """
local function unchanged(o)
  local id = ARGV[o]
  local data = redis.call('HGET', KEYS[1], id)
  if ARGV[o + 1] == '1' then
    if data ~= ARGV[o + 2] then return false end
  elseif data then
    return false
  end
  local score = redis.call('ZSCORE', KEYS[2], id)
  if ARGV[o + 3] == '' then
    if score then return false end
  elseif (not score) or tonumber(score) ~= tonumber(ARGV[o + 3]) then
    return false
  end
  return true
end
"""

SCRIPTS = {
    # KEYS: jobs, run_times. ARGV: ids. -> flat (id, score or nil, pickle or nil) for each id
    # held by either key.
    "get": """
local out = {}
for i = 1, #ARGV do
  local data = redis.call('HGET', KEYS[1], ARGV[i])
  local score = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if data or score then
    out[#out + 1] = ARGV[i]; out[#out + 1] = score; out[#out + 1] = data
  end
end
return out
""",
    # ARGV: start rank, or "" and then the anchor (id, score) of the previous page; size.
    # -> nil when the anchor moved meanwhile; else flat (id, score, pickle or nil) in
    # (score, id) order.
    "due_page": """
local start
if ARGV[1] ~= '' then
  start = tonumber(ARGV[1])
else
  local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if (not score) or tonumber(score) ~= tonumber(ARGV[3]) then return false end
  start = redis.call('ZRANK', KEYS[2], ARGV[2]) + 1
end
local members = redis.call('ZRANGE', KEYS[2], start, start + tonumber(ARGV[4]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #members, 2 do
  out[#out + 1] = members[i]; out[#out + 1] = members[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[1], members[i])
end
return out
""",
    # ARGV: cursor, count, "paused" or "all", MATCH pattern or "".
    # -> cursor, then flat (id, score or nil, pickle) for the hash's fields
    "hash_page": """
local scan = {'HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2]}
if ARGV[4] ~= '' then scan[#scan + 1] = 'MATCH'; scan[#scan + 1] = ARGV[4] end
local reply = redis.call(unpack(scan))
local out = {reply[1]}
local items = reply[2]
-- the fields' scores: ZMSCORE (Redis 6.2) a thousand at a time, else ZSCORE each
local scores = {}
for start = 1, #items, 2000 do
  local chunk = {}
  for i = start, math.min(start + 1999, #items), 2 do chunk[#chunk + 1] = items[i] end
  local got = redis.pcall('ZMSCORE', KEYS[2], unpack(chunk))
  for i = 1, #chunk do
    if type(got) == 'table' and got.err then
      scores[#scores + 1] = redis.call('ZSCORE', KEYS[2], chunk[i])
    else
      scores[#scores + 1] = got[i]
    end
  end
end
for i = 1, #items, 2 do
  local score = scores[(i + 1) / 2]
  if ARGV[3] ~= 'paused' or not score then
    out[#out + 1] = items[i]; out[#out + 1] = score; out[#out + 1] = items[i + 1]
  end
end
return out
""",
    # ARGV: cursor, count, "ids" or "records", MATCH pattern or "".
    # -> cursor, then the run_times members with no job: flat ids, or (id, score, nil)
    "orphan_page": """
local scan = {'ZSCAN', KEYS[2], ARGV[1], 'COUNT', ARGV[2]}
if ARGV[4] ~= '' then scan[#scan + 1] = 'MATCH'; scan[#scan + 1] = ARGV[4] end
local reply = redis.call(unpack(scan))
local out = {reply[1]}
local items = reply[2]
for i = 1, #items, 2 do
  if redis.call('HEXISTS', KEYS[1], items[i]) == 0 then
    out[#out + 1] = items[i]
    if ARGV[3] == 'records' then out[#out + 1] = items[i + 1]; out[#out + 1] = false end
  end
end
return out
""",
    # ARGV: cursor, count, MATCH pattern or "". -> cursor, then the hash's fields (no values)
    "hash_ids": """
local scan = {'HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2]}
if ARGV[3] ~= '' then scan[#scan + 1] = 'MATCH'; scan[#scan + 1] = ARGV[3] end
local reply = redis.call(unpack(scan))
local out = {reply[1]}
local items = reply[2]
for i = 1, #items, 2 do out[#out + 1] = items[i] end
return out
""",
    # ARGV: the warning and critical due values. -> HLEN, ZCARD, late, overdue, lowest score
    "stats": """
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {redis.call('HLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]),
        redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. ARGV[1]),
        redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. ARGV[2]), first[2] or false}
""",
    # ARGV: the old record (4), then the new pickle and due score ("" for paused).
    "swap": _UNCHANGED
    + """
if not unchanged(1) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[5])
if ARGV[6] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
end
return 1
""",
    # ARGV: records (4 each), all removed from both keys, or none.
    "delete": _UNCHANGED
    + """
for o = 1, #ARGV, 4 do
  if not unchanged(o) then return 0 end
end
for o = 1, #ARGV, 4 do
  redis.call('HDEL', KEYS[1], ARGV[o]); redis.call('ZREM', KEYS[2], ARGV[o])
end
return 1
""",
    # ARGV: the number of replaced records, those records (4 each), then the new ones (id,
    # pickle, due score or "": 3 each). All written, or none.
    "insert": _UNCHANGED
    + """
local first_new = 2 + 4 * tonumber(ARGV[1])
local replaced = {}
for o = 2, first_new - 1, 4 do
  if not unchanged(o) then return 0 end
  replaced[ARGV[o]] = true
end
for o = first_new, #ARGV, 3 do
  local id = ARGV[o]
  if not replaced[id] and (redis.call('HEXISTS', KEYS[1], id) == 1 or redis.call('ZSCORE', KEYS[2], id)) then
    return 0
  end
end
for o = 2, first_new - 1, 4 do
  redis.call('HDEL', KEYS[1], ARGV[o]); redis.call('ZREM', KEYS[2], ARGV[o])
end
for o = first_new, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[o], ARGV[o + 1])
  if ARGV[o + 2] ~= '' then redis.call('ZADD', KEYS[2], ARGV[o + 2], ARGV[o]) end
end
return 1
""",
}


class RedisJobKeys(Backend):
    """An APScheduler 3 RedisJobStore: its two keys in one Redis database."""

    name = "redis"
    made_by_writing = True  # Redis makes a key when something is written to it
    may_repeat = True  # HSCAN gives a field twice when the hash shrinks during the scan
    resorts_ties = False  # a page starts at the previous one's last rank (ZRANK)

    def __init__(self, target: Target, write: bool = False, create: bool = False, lock_seconds: int = 10, answer_seconds: int = 10) -> None:
        self.target = target
        self.write = write or create
        # Redis has no locks to wait for, but a script another client runs holds every
        # command back until it ends: a step may take a lock wait, then the server's answer
        self.step_seconds = lock_seconds + answer_seconds
        self.connect_seconds = min(CONNECT_TIMEOUT, answer_seconds)
        self.keys = [target.jobs_key.encode("utf-8", "surrogateescape"), target.run_times_key.encode("utf-8", "surrogateescape")]
        self.client = self._client(target.url)
        self.cut = Cut(self._connections)
        self.scripts: dict[str, Any] = {}
        self.cluster = False
        self.connecting = False
        self._open(create)

    @property
    def names(self) -> dict[str, str | None]:
        return {"jobs_key": self.target.jobs_key, "run_times_key": self.target.run_times_key, "database": str(self.db)}

    # --- connecting ------------------------------------------------------------------

    def _client(self, url: str) -> Any:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise StoreError("the Redis client is not installed: pip install 'jobctl[redis]'") from None
        options = {
            "socket_timeout": self.step_seconds,
            "socket_connect_timeout": self.connect_seconds,
            # one try: redis-py 6 retries a timed-out command three times by default, which
            # would make a silent server cost four deadlines
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
            "health_check_interval": 0,
        }
        self.location = redacted(url)
        _check_url(url, self.location)
        if urlsplit(url).scheme.lower() == "unix" and not _takes_connect_timeout(redis.connection.UnixDomainSocketConnection):
            del options["socket_connect_timeout"]  # redis-py before 4.6 has none for sockets; the cut bounds it
        try:
            client = redis.Redis.from_url(url, **options)
        except (ValueError, TypeError) as exc:  # a scheme or option redis-py cannot read
            raise UsageError(
                f"malformed Redis URL {self.location!r} ({exc}): expected redis://[user:password@]host:port/DB, "
                "rediss://… (TLS) or unix:///path/redis.sock?db=DB"
            ) from None
        connection = client.connection_pool.connection_kwargs
        connection["decode_responses"] = False  # ?decode_responses=true in a URL: pickles are bytes
        self.db = int(connection.get("db") or 0)
        if connection.get("path"):
            self.location = f"unix://{connection['path']}?db={self.db}"
        else:
            scheme = "rediss" if urlsplit(url).scheme.lower() == "rediss" else "redis"
            self.location = f"{scheme}://{connection.get('host', 'localhost')}:{connection.get('port', 6379)}/{self.db}"
        self.options = options
        return client

    def _open(self, create: bool) -> None:
        """Check the keys before anything else: their kinds, and whether there are any."""

        def kinds(client: Any) -> list[bytes]:
            with client.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.type(key)
                return pipe.execute()

        self._connect()
        self._use_cluster_if_any()
        try:
            found = self._call(lambda: kinds(self.client), "Redis error on")
        except StoreError as exc:
            if not _redirected(exc.__cause__):
                raise
            # a cluster node that owns neither key, where INFO was not allowed: go through
            # the cluster, if the keys allow it
            self._use_cluster()
            found = self._call(lambda: kinds(self.client), "Redis error on")
        jobs_type, run_times_type = (_text(t) for t in found)
        for key, found, wanted in ((self.target.jobs_key, jobs_type, "hash"), (self.target.run_times_key, run_times_type, "zset")):
            if found not in ("none", wanted):
                raise StoreError(
                    f"key {key!r} in database {self.db} of {self.location} is a {found}, not a {wanted}: "
                    "not an APScheduler RedisJobStore (--jobs-key and --run-times-key name its keys)"
                )
        if jobs_type == run_times_type == "none" and not create:
            raise MissingStore(
                f"no keys {self.target.jobs_key!r} or {self.target.run_times_key!r} in database {self.db} of "
                f"{self.location}: the store is empty, or its keys have other names or are in another database "
                f"(--jobs-key, --run-times-key, the database number in the URL){self._other_databases()}",
                "redis",
            )

    def _use_cluster_if_any(self) -> None:
        """On Redis Cluster, both keys must hash to one slot (a hash tag): a script touches
        both, and Redis runs a script on the one node holding its keys."""
        from redis.exceptions import ResponseError

        try:
            info = self._call(lambda: self.client.info("cluster"), "Redis error on")
        except StoreError as exc:
            if isinstance(exc.__cause__, ResponseError):
                return  # INFO is not allowed for this user, or renamed: taken as a plain server
            raise
        if info.get("cluster_enabled"):
            self._use_cluster()

    def _use_cluster(self) -> None:
        from redis.cluster import RedisCluster
        from redis.crc import key_slot
        from redis.exceptions import RedisError

        self.cluster = True

        slots = {key_slot(key) for key in self.keys}
        if len(slots) > 1:
            raise StoreError(
                f"{self.location} is a Redis Cluster, where the jobs and run_times keys must share a hash slot, and "
                f"{self.target.jobs_key!r} and {self.target.run_times_key!r} do not: jobctl changes both in one step. "
                "Give them a common hash tag in the application, e.g. '{apscheduler}.jobs' and '{apscheduler}.run_times'"
            )
        self.client.close()
        try:
            self.client = RedisCluster.from_url(self.target.url, **self.options)
        except RedisError as exc:
            raise self._error(exc, "cannot reach", False) from exc
        except Exception as exc:  # noqa: BLE001 - RedisClusterException is no RedisError in redis-py 4
            raise StoreError(f"{self.location} is a Redis Cluster that jobctl could not set up a client for: {_first_line(exc)}") from exc

    def _connect(self) -> None:
        """Connect (TCP, then TLS, then AUTH and SELECT) within the connect deadline: a TLS
        handshake with a server that does not speak TLS would wait for a reply for ever."""
        from redis.exceptions import ResponseError

        # the handshake reads under the socket timeout, before the connection's socket is
        # there for the cut to shut: connect with the connect deadline as that timeout
        pool = self.client.connection_pool
        pool.connection_kwargs["socket_timeout"] = self.connect_seconds
        try:
            self._call(self.client.ping, "cannot reach", seconds=self.connect_seconds)
        except TypeError as exc:  # redis-py hands a URL's ?options to the connection as they are
            raise UsageError(f"the Redis URL {self.location} has an option redis-py does not take ({exc})") from None
        except StoreError as exc:
            if not (isinstance(exc.__cause__, ResponseError) and not _is_auth(exc.__cause__) and not _not_in_cluster(exc.__cause__)):
                raise
            # PING itself not allowed for this user: connected all the same
        finally:
            pool.connection_kwargs["socket_timeout"] = self.step_seconds
            for connection in self._connections():
                connection.socket_timeout = self.step_seconds
                sock = getattr(connection, "_sock", None)
                if sock is not None:
                    sock.settimeout(self.step_seconds)

    def _other_databases(self) -> str:
        """Which databases of this server hold keys (INFO keyspace), as a hint; "" if none, if
        the server will not say, or on a cluster (where one node knows its own keys only)."""
        if self.cluster:
            return ""
        try:
            keyspace = self._call(lambda: self.client.info("keyspace"), "cannot reach")
        except JobctlError:
            return ""
        holding = sorted(int(name[2:]) for name, value in keyspace.items() if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict) and value.get("keys"))
        others = [str(n) for n in holding if n != self.db]
        if not others:
            return f"; database {self.db} holds {'some other' if self.db in holding else 'no'} keys"
        return f"; databases holding keys on this server: {', '.join(str(n) for n in holding)}"

    def _run(self, name: str, args: Sequence[Any], writes: bool = False) -> Any:
        """One script, run atomically by Redis (EVALSHA, loading it once if the server
        does not know it yet)."""
        script = self.scripts.get(name)
        if script is None:
            script = self.scripts[name] = self.client.register_script(SCRIPTS[name])
        return self._call(lambda: script(keys=self.keys, args=list(args)), "Redis error on", writes)

    def _call(self, work: Callable[[], Any], doing: str, writes: bool = False, seconds: float | None = None) -> Any:
        """One step, bounded in all (a socket timeout bounds each read alone, and a server
        that trickles a byte before each would hold it for ever), errors as jobctl's own.
        `seconds`: a deadline other than the step's (connecting)."""
        from redis.exceptions import RedisError

        self.connecting = seconds is not None
        try:
            with self.cut.bounded(seconds or self.step_seconds):
                return work()
        except (RedisError, OSError) as exc:  # OSError: the cut, seen by the client's socket code
            raise self._error(exc, doing, writes) from exc

    def _connections(self) -> list[Any]:
        """The connections of the client's pool (redis-py keeps each's socket as _sock)."""
        pool = getattr(self.client, "connection_pool", None)
        return [*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())]

    def _error(self, exc: Any, doing: str, writes: bool) -> JobctlError:
        """A Redis error as one line, saying what to do about it where that is known."""
        from redis import exceptions as errors

        message = _first_line(exc)
        unknown = "; the change may or may not have been made: check with 'jobctl show'" if writes else ""
        lowered = message.lower()
        if self.cut.fired or isinstance(exc, errors.TimeoutError) or "timed out" in lowered:
            if self.connecting:
                tls = " (is that port TLS? rediss:// speaks TLS, redis:// does not)" if self.location.startswith("rediss:") else ""
                return Unanswered(f"could not connect to {self.location} within {self.connect_seconds} s{tls}")
            return Unanswered(f"{self.location} did not answer within {self.step_seconds} s (JOBCTL_LOCK_TIMEOUT + JOBCTL_TIMEOUT){unknown}")
        if _is_auth(exc):
            if urlsplit(self.target.url).password is None and "password=" not in self.target.url.lower():
                return StoreError(f"{self.location} needs a password: give it in the URL (redis://:PASSWORD@host/0) or with password_env in the config file")
            return StoreError(f"{self.location} refused the credentials: {message}")
        if _not_in_cluster(exc):
            return StoreError(f"{self.location} is a Redis Cluster, which has database 0 only: name database 0 in the URL")
        if isinstance(exc, getattr(errors, "NoPermissionError", ())) or "no permissions" in lowered:
            return StoreError(
                f"the Redis user may not do this on {self.location} ({message}): jobctl runs Lua scripts "
                "(EVALSHA, SCRIPT LOAD) that read the keys, and for changes write them"
            )
        if "can't run this command" in lowered:  # a command inside one of jobctl's scripts
            return StoreError(f"the Redis user may not change these keys on {self.location}; nothing was changed")
        if _redirected(exc):
            return StoreError(f"{self.location} is a Redis Cluster that did not take the step ({type(exc).__name__}: {message}); nothing was changed")
        if isinstance(exc, errors.ResponseError) and message.startswith("BUSY"):
            return StoreError(f"{self.location} is busy running another client's script; nothing was changed: {message}")
        if isinstance(exc, (errors.ConnectionError, OSError)):
            return Unanswered(f"cannot reach {self.location}: {message}{unknown}")
        return StoreError(f"{doing} {self.location}: {message}{'' if isinstance(exc, errors.ResponseError) else unknown}")

    # --- reading ---------------------------------------------------------------------

    def page(self, order: str, after: tuple | None, size: int, hint: Sequence[str] = (), fields: Sequence[str] = ()) -> Page:
        if order == "due":
            return self._due_page(after, size)
        # ("hash", cursor), then for "id" ("orphans", cursor): the zset's members with no job
        part, cursor = after if after is not None else ("hash", 0)
        match = _match(hint)
        if part == "hash":
            reply = self._run("hash_page", [cursor, size, "paused" if order == "paused" else "all", match])
            records = _records(reply[1:])
            cursor = int(reply[0])
            if cursor:
                return Page(records, ("hash", cursor))
            if order == "paused":
                return Page(records, None)
            return Page(records, ("orphans", 0))
        reply = self._run("orphan_page", [cursor, size, "records", match])
        cursor = int(reply[0])
        return Page(_records(reply[1:]), ("orphans", cursor) if cursor else None)

    def _due_page(self, after: tuple | None, size: int) -> Page:
        if not self.cluster:
            records = self._call(lambda: self._watched_due_page(after, size), "Redis error on")
            if records is not None:
                return Page(records, None if len(records) < size else (records[-1].due, records[-1].id))
        if after is None:
            reply = self._run("due_page", [0, "", "", size])
        else:
            due, last = after
            reply = self._run("due_page", ["", _id_bytes(last), _score(due), size])
            if reply is None:  # that job moved (a scheduler ran it) or went: find where it was
                reply = self._run("due_page", [self._rank_after(due, last), "", "", size])
        records = _records(reply)
        if len(records) < size:
            return Page(records, None)
        return Page(records, (records[-1].due, records[-1].id))

    def _watched_due_page(self, after: tuple | None, size: int) -> list[Record] | None:
        """The page read with plain commands, under WATCH: the ids and scores, then (MULTI,
        EXEC) their pickles, which Redis gives only if neither key changed meanwhile, so the
        page is one state of the store. A fifth of the server's work of the script, which
        converts every value twice. None after a few changes got in between, or when the
        server refuses a transaction (a user without WATCH or MULTI, a server at maxmemory,
        which refuses every command in MULTI): the caller reads the page with the script,
        which nothing can get in between."""
        from redis.exceptions import ResponseError, WatchError

        jobs_key, run_times_key = self.keys
        for _ in range(3):
            try:
                with self.client.pipeline() as pipe:
                    pipe.watch(jobs_key, run_times_key)
                    start = 0
                    if after is not None:
                        due, last = after
                        score = pipe.zscore(run_times_key, _id_bytes(last))
                        rank = pipe.zrank(run_times_key, _id_bytes(last)) if score is not None and score == float(due) else None
                        start = rank + 1 if rank is not None else self._rank_after(due, last)
                    members = pipe.zrange(run_times_key, start, start + size - 1, withscores=True)
                    if not members:
                        pipe.unwatch()
                        return []
                    pipe.multi()
                    pipe.hmget(jobs_key, [member for member, _ in members])
                    [pickles] = pipe.execute()
            except WatchError as exc:
                if self.cut.fired or "occurred" in str(exc):  # the connection died while watching
                    raise _ConnectionLost(str(exc)) from exc
                continue
            except ResponseError:
                return None
            return [Record(_id_text(member), float(score), data) for (member, score), data in zip(members, pickles)]
        return None

    def _rank_after(self, due: float, last: str) -> int:
        """The rank the key (due, last) would follow: the members scored below `due`, and
        those scored `due` whose id sorts up to `last` (bytes, as Redis sorts them)."""
        score = _score(due)
        below = self._call(lambda: self.client.zcount(self.keys[1], "-inf", f"({score}"), "Redis error on")
        anchor, rank, offset = _id_bytes(last), int(below), 0

        def ties(start: int) -> list[bytes]:
            return self.client.zrangebyscore(self.keys[1], score, score, start=start, num=ID_CHUNK)

        while True:
            tied = self._call(lambda: ties(offset), "Redis error on")  # noqa: B023 - called at once
            up_to = sum(1 for member in tied if member <= anchor)
            rank += up_to
            if up_to < len(tied) or len(tied) < ID_CHUNK:
                return rank
            offset += ID_CHUNK

    def ids(self, hint: Sequence[str] = ()) -> Iterator[str]:
        match = _match(hint)
        found: set[str] = set()
        for name, part in (("hash_ids", [match]), ("orphan_page", ["ids", match])):
            cursor = 0
            while True:
                reply = self._run(name, [cursor, ID_CHUNK, *part])
                found.update(_id_text(member) for member in reply[1:])
                cursor = int(reply[0])
                if not cursor:
                    break
        return iter(sorted(found, key=_id_bytes))

    def get(self, ids: Sequence[str], lock: bool = False) -> list[Record]:
        found: list[Record] = []
        ids = list(ids)
        for start in range(0, len(ids), ID_CHUNK):
            found += _records(self._run("get", [_id_bytes(i) for i in ids[start : start + ID_CHUNK]]))
        return found

    def stats(self, now: float, warning: float, critical: float) -> Stats:
        """HLEN, ZCARD, ZCOUNT and the lowest score, in one step: nothing is decoded. A
        run_times member without a job (an orphan) counts as active here; listing shows it
        as unreadable."""
        total, active, late, overdue, soonest = self._run("stats", [_score(warning), _score(critical)])
        return Stats(int(total), int(active), int(late), int(overdue), None if soonest is None else float(soonest))

    # --- writing: each one script, comparing every record first ---------------------------

    def swap(self, old: Record, new: Record) -> bool:
        return self._wake(bool(self._run("swap", [*_compared(old), new.data, _score(new.due)], writes=True)))

    def delete(self, old: Sequence[Record]) -> bool:
        return self._wake(bool(self._run("delete", [part for record in old for part in _compared(record)], writes=True)))

    def insert(self, new: Sequence[Record], replacing: Sequence[Record] = ()) -> bool:
        args: list[Any] = [len(replacing)]
        args += [part for record in replacing for part in _compared(record)]
        for record in new:
            args += [_id_bytes(record.id), record.data, _score(record.due)]
        return self._wake(bool(self._run("insert", args, writes=True)))

    def _wake(self, written: bool) -> bool:
        """Once a change is written, wake the schedulers that run jobctl's companion (APScheduler
        3 reads its store only when it wakes): PUBLISH on its channel. The change is made by
        then: a server that refuses or drops the PUBLISH costs the wake-up only."""
        if written and self.target.notify:
            from jobctl.companion.layout import wake_channel

            channel = wake_channel(self.target.jobs_key)
            try:
                self._call(lambda: self.client.publish(channel, b""), "Redis error on")
            except JobctlError:
                pass
        return written

    def run_log(self) -> RunLog | None:
        """The companion's stream and hashes beside the jobs keys (jobctl.companion.layout),
        once it has written any."""
        from jobctl.backends.runs import RedisRunLog
        from jobctl.companion import layout

        jobs_key = self.target.jobs_key
        expected = {layout.runs_key(jobs_key): "stream", layout.last_runs_key(jobs_key): "hash", layout.schedulers_key(jobs_key): "hash"}
        def kind_of(key: str) -> str:
            return _text(self._call(lambda: self.client.type(key), "Redis error on"))

        kinds = {key: kind_of(key) for key in expected}
        wrong = [f"{key!r} is a {kinds[key]}" for key, kind in expected.items() if kinds[key] not in (kind, "none")]
        if wrong:  # someone else's keys: not read, and said once
            notice(f"{', '.join(wrong)}, not what jobctl's companion writes: runs are not read")
            return None
        return RedisRunLog(self) if any(kind != "none" for kind in kinds.values()) else None

    def close(self) -> None:
        self.client.close()


class _ConnectionLost(OSError):
    """redis-py says a connection lost while watching is a WatchError: it is no conflict."""


def redacted(url: str) -> str:
    """A Redis URL with its password (in the user part, or ?password=) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    if parts.password is None and not _query_password(parts.query):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user = quote(unquote(parts.username or ""), safe="")
        netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    query = "&".join(("password=***" if _query_password(item) else item) for item in parts.query.split("&")) if parts.query else ""
    return _unsplit(parts._replace(netloc=netloc, query=query))


def _query_password(query: str) -> bool:
    """Whether a query (or one item of it) names a password, as redis-py reads it (%-decoded)."""
    return any(unquote(item.partition("=")[0]).lower() == "password" for item in query.split("&"))


def with_password(url: str, password: str) -> str:
    """The URL with this password (from password_env): in the user part for redis:// and
    rediss://, as ?password= for a unix socket, which has no user part."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        query = [item for item in parts.query.split("&") if item and not item.lower().startswith("password=")]
        query.append(f"password={quote(password, safe='')}")
        return _unsplit(parts._replace(query="&".join(query)))
    host = parts.netloc.rpartition("@")[2]
    user = quote(unquote(parts.username or ""), safe="")
    return _unsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def _unsplit(parts: Any) -> str:
    """urlunsplit, keeping unix:///path's slashes (it writes unix:/path for an empty host)."""
    url = parts.geturl()
    if parts.scheme.lower() == "unix" and not parts.netloc:
        url = f"{parts.scheme}://{url[len(parts.scheme) + 1 :]}"
    return url


def _check_url(url: str, location: str) -> None:
    """What redis-py would take wrongly or fail on unclearly: a database it cannot read
    (redis://host/abc), which it takes as database 0 and so shows another store's jobs or none;
    a certificate file that is not there."""
    import os.path
    from urllib.parse import parse_qs

    parts = urlsplit(url)
    path = parts.path.strip("/") if parts.scheme.lower() != "unix" else ""
    query = parse_qs(parts.query)
    given = [path] if path else []
    given += query.get("db", [])
    for value in given:
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"malformed Redis URL {location!r}: the database must be a number (redis://host:6379/0), not {value!r}")
    for option in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        for file in query.get(option, []):
            if not os.path.isfile(file):
                raise UsageError(f"{option}={file} in the Redis URL: no such file")


def _takes_connect_timeout(connection_class: Any) -> bool:
    import inspect

    parameters = inspect.signature(connection_class.__init__).parameters
    return "socket_connect_timeout" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _is_auth(exc: Any) -> bool:
    """The server wants (other) credentials: AUTH failed, or none were given."""
    from redis.exceptions import AuthenticationError

    text = str(exc).lower()
    return isinstance(exc, AuthenticationError) or any(
        marker in text for marker in ("noauth", "wrongpass", "authentication required", "already authenticated", "invalid username-password")
    )


def _not_in_cluster(exc: Any) -> bool:
    return "not allowed in cluster mode" in str(exc).lower()


def _redirected(exc: Any) -> bool:
    """A cluster's answer that another node holds the keys, or the cluster cannot serve now."""
    from redis import exceptions as errors

    kinds = tuple(getattr(errors, name) for name in ("MovedError", "AskError", "ClusterCrossSlotError", "ClusterDownError", "TryAgainError") if hasattr(errors, name))
    # redis-py before 4.3 raises a plain ResponseError for a command in a pipeline
    return isinstance(exc, kinds) or bool(re.search(r"(^|: )(MOVED|ASK|CROSSSLOT|CLUSTERDOWN|TRYAGAIN) ", str(exc)))


def _match(hint: Sequence[str]) -> str:
    """A MATCH pattern for HSCAN/ZSCAN from one glob, or "" for none. Redis's patterns read
    '[!a]' and backslashes otherwise than fnmatch: such a glob gets no MATCH (a hint may
    give more, never fewer)."""
    if len(hint) != 1 or any(c in hint[0] for c in "[\\?"):  # Redis's ? is one byte, fnmatch's one character
        return ""
    return hint[0]


def _id_bytes(job_id: str) -> bytes:
    return job_id.encode("utf-8", "surrogateescape")


def _id_text(member: bytes) -> str:
    """An id as text; bytes that are no UTF-8 (no APScheduler writes them) as lone surrogates,
    which _id_bytes turns back into the same bytes (the display escapes them)."""
    return member.decode("utf-8", "surrogateescape")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _score(due: float | None) -> str:
    """A due value as a script argument: repr gives the shortest text that reads back as
    exactly this double, as Redis parses it."""
    return "" if due is None else repr(float(due))


def _compared(record: Record) -> list[Any]:
    has = isinstance(record.data, bytes)
    return [_id_bytes(record.id), "1" if has else "0", record.data if has else b"", _score(record.due)]


def _records(flat: Sequence[Any]) -> list[Record]:
    """(id, score or nil, pickle or nil) triples as Records."""
    return [
        Record(_id_text(flat[n]), None if flat[n + 1] is None else float(flat[n + 1]), flat[n + 2])
        for n in range(0, len(flat) - 2, 3)
    ]


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
