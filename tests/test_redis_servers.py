"""jobctl's Redis connections end to end, on redis-server processes these tests start themselves:
a unix socket, passwords and ACL users (in the URL and from password_env), TLS, a Redis Cluster
of three nodes, and a user who may not run scripts.

Every store is one the fixture application wrote through APScheduler's own RedisJobStore: on a
server it can reach (redis://, with or without a password; the TLS server has a plain port too)
it writes there; elsewhere (a socket only, a cluster) its two keys are copied in byte for byte
(tests/redis_servers.RealStore).
Skipped when redis-server is not installed.
"""

from __future__ import annotations

import json
import shutil
import time
from urllib.parse import quote

import pytest
from redis_servers import (
    RealStore,
    free_port,
    make_certificates,
    needs_redis_server,
    redis_cluster,
    redis_server,
    tls_options,
)

from conftest import aps_load, jobctl, write_store

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed: these tests start their own Redis servers"
)

DEFAULT_KEYS = ("apscheduler.jobs", "apscheduler.run_times")
TAGGED_KEYS = ("{aps}.jobs", "{aps}.run_times")
SECRET = "s3cret-Pw"
ODD_PASSWORD = "p@ss:w/rd%41 #?&="  # every character a URL gives a meaning to


def keys_args(keys: tuple[str, str]) -> list[str]:
    return ["--jobs-key", keys[0], "--run-times-key", keys[1]]


def one_line(text: str) -> str:
    """The only line of TEXT, which holds no traceback."""
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def listed(*args: str, env: dict | None = None) -> dict[str, dict]:
    result = jobctl(*args, "list", "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    return {job["id"]: job for job in json.loads(result.stdout)}


def client_for(url: str):
    import redis

    return redis.Redis.from_url(url)


def assert_consistent(store: RealStore, paused: set[bytes]) -> None:
    """What a RedisJobStore holds when whole: every job scored in run_times unless paused, and
    no run time without a job."""
    scored = {member for member, _ in store.run_times}
    assert scored <= set(store.jobs), f"run times with no job: {scored - set(store.jobs)}"
    assert set(store.jobs) - scored == paused, f"unscored jobs {set(store.jobs) - scored}, paused {paused}"


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> RealStore:
    """The fixture application's jobs as this APScheduler's RedisJobStore writes them (on a
    plain server of its own, stopped afterwards)."""
    needs_redis_server()
    with redis_server(tmp_path_factory.mktemp("writer")) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        write_store(url, "current", *keys_args(TAGGED_KEYS))
        client = client_for(url)
        try:
            store = RealStore.read(client, *TAGGED_KEYS)
        finally:
            client.close()
    assert len(store.jobs) >= 14 and len(store.run_times) == len(store.jobs) - 1  # paused_sync
    return store


# --- 1. a unix socket --------------------------------------------------------------------------


def test_a_store_on_a_unix_socket_reads_byte_for_byte_and_pauses(real_store, tmp_path):
    """unix:///path/redis.sock?db=N, APScheduler's own key names (no --jobs-key), database 5 of
    a server with no TCP port at all."""
    with redis_server(tmp_path / "socket", port=0, unix_socket=True) as server:
        url = f"unix://{server.socket}?db=5"
        client = client_for(url)
        try:
            real_store.put(client, *DEFAULT_KEYS)
            before = RealStore.read(client, *DEFAULT_KEYS)
            jobs = listed("--url", url)
            assert set(jobs) == {job_id.decode() for job_id in real_store.jobs}
            assert jobs["paused_sync"]["state"] == "paused" and jobs["daily_reports"]["state"] == "scheduled"
            for job_id in ("daily_reports", "rapport_quotidien_été", "awkward_args"):
                shown = jobctl("--url", url, "show", job_id, "-o", "json")
                assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == job_id, shown.stderr
            health = jobctl("--url", url, "health")
            assert health.returncode == 0 and health.stdout.startswith("JOBCTL OK"), health.stdout
            assert jobctl("--url", url, "export").returncode == 0
            assert RealStore.read(client, *DEFAULT_KEYS) == before, "reading changed a byte"

            paused = jobctl("--url", url, "pause", "daily_reports")
            assert paused.returncode == 0, paused.stderr
            after = RealStore.read(client, *DEFAULT_KEYS)
            assert_consistent(after, {b"paused_sync", b"daily_reports"})
            assert after.jobs[b"daily_reports"] != before.jobs[b"daily_reports"]
            assert {k: v for k, v in after.jobs.items() if k != b"daily_reports"} == {k: v for k, v in before.jobs.items() if k != b"daily_reports"}
            assert after.run_times == [m for m in before.run_times if m[0] != b"daily_reports"], "another job's score moved"
            assert listed("--url", url)["daily_reports"]["state"] == "paused"

            other = jobctl("--url", f"unix://{server.socket}?db=6", "list")
            assert other.returncode == 1
            line = one_line(other.stderr)
            assert "database 6" in line and "databases holding keys on this server: 5" in line, line
            assert client.dbsize() == 2 and not client_for(f"unix://{server.socket}?db=6").dbsize(), "a read made keys"
        finally:
            client.close()


# --- 2. passwords and ACL users -----------------------------------------------------------------


@pytest.fixture
def secured(tmp_path):
    """A server with --requirepass SECRET (and a unix socket), ACL users alice (every command)
    and odd (a password full of URL syntax), and the store APScheduler wrote there through
    redis://:SECRET@… . Yields (server, admin client)."""
    needs_redis_server()
    with redis_server(tmp_path / "secured", "--requirepass", SECRET, unix_socket=True) as server:
        write_store(f"redis://:{SECRET}@127.0.0.1:{server.port}/0", "current", *keys_args(TAGGED_KEYS))
        client = client_for(f"redis://:{SECRET}@127.0.0.1:{server.port}/0")
        client.acl_setuser("alice", enabled=True, passwords=["+alice-pw"], keys=["*"], commands=["+@all"])
        client.acl_setuser("odd", enabled=True, passwords=[f"+{ODD_PASSWORD}"], keys=["*"], commands=["+@all"])
        try:
            yield server, client
        finally:
            client.close()


def url_for(server, how: str, password: str) -> str:
    """The secured server's URL: 'default' user, 'alice', or 'socket' (?password=)."""
    if how == "socket":
        return f"unix://{server.socket}?db=0&password={quote(password, safe='')}"
    user = "alice" if how == "alice" else ""
    return f"redis://{user}:{quote(password, safe='')}@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("url", [
    pytest.param(lambda server: url_for(server, "default", SECRET), id="requirepass"),
    pytest.param(lambda server: url_for(server, "alice", "alice-pw"), id="acl-user"),
    pytest.param(lambda server: f"redis://odd:{quote(ODD_PASSWORD, safe='')}@127.0.0.1:{server.port}/0", id="odd-password"),
    pytest.param(lambda server: url_for(server, "socket", SECRET), id="unix-socket"),
])  # fmt: skip
def test_a_password_or_an_acl_user_in_the_url_opens_the_store(secured, url):
    server, client = secured
    args = ["--url", url(server), *keys_args(TAGGED_KEYS)]
    before = RealStore.read(client, *TAGGED_KEYS)
    assert set(listed(*args)) == {job_id.decode() for job_id in before.jobs}
    assert RealStore.read(client, *TAGGED_KEYS) == before
    assert jobctl(*args, "pause", "daily_reports").returncode == 0
    assert client.zscore(TAGGED_KEYS[1], "daily_reports") is None
    assert jobctl(*args, "resume", "daily_reports").returncode == 0
    assert_consistent(RealStore.read(client, *TAGGED_KEYS), {b"paused_sync"})


@pytest.mark.parametrize("how", ["default", "alice", "socket"])
def test_a_wrong_password_is_one_line_that_never_shows_it(secured, how):
    server, client = secured
    before = RealStore.read(client, *TAGGED_KEYS)
    wrong = "Wr0ng-Guess"
    args = ["--url", url_for(server, how, wrong), *keys_args(TAGGED_KEYS)]
    for command in (["list"], ["pause", "daily_reports"], ["remove", "one_off", "--yes"]):
        result = jobctl(*args, *command)
        assert result.returncode == 1 and not result.stdout, (command, result)
        line = one_line(result.stderr)
        assert "refused the credentials" in line and wrong not in line and SECRET not in line, line
    health = jobctl(*args, "health")
    assert health.returncode == 3, health
    line = one_line(health.stdout)
    assert line.startswith("JOBCTL UNKNOWN - ") and "refused the credentials" in line and wrong not in line, line
    assert RealStore.read(client, *TAGGED_KEYS) == before


def test_no_password_is_one_line(secured):
    server, _ = secured
    result = jobctl("--url", f"redis://127.0.0.1:{server.port}/0", *keys_args(TAGGED_KEYS), "list")
    assert result.returncode == 1 and "needs a password" in one_line(result.stderr), result


@pytest.fixture
def config_file(secured, tmp_path):
    """A config file naming the secured server four ways, each with password_env; yields
    (its environment, the admin client)."""
    server, client = secured
    config = tmp_path / "config.toml"
    keys = f'jobs_key = "{TAGGED_KEYS[0]}"\nrun_times_key = "{TAGGED_KEYS[1]}"\n'
    config.write_text(
        'default = "x"\n'
        f'[stores.x]\nurl = "redis://127.0.0.1:{server.port}/0"\npassword_env = "SOME_VAR"\n{keys}'
        f'[stores.alice]\nurl = "redis://alice@127.0.0.1:{server.port}/0"\npassword_env = "ALICE_PW"\n{keys}'
        f'[stores.odd]\nurl = "redis://odd@127.0.0.1:{server.port}/0"\npassword_env = "ODD_PW"\n{keys}'
        f'[stores.sock]\nurl = "unix://{server.socket}?db=0"\npassword_env = "SOME_VAR"\n{keys}'
    )
    return {"JOBCTL_CONFIG": str(config), "SOME_VAR": SECRET, "ALICE_PW": "alice-pw", "ODD_PW": ODD_PASSWORD}, client


@pytest.mark.parametrize("store", ["x", "alice", "odd", "sock"])
def test_password_env_supplies_the_password_for_redis_and_unix_urls(config_file, store):
    """The config file names the variable, never the password; `jobctl config` masks it."""
    env, client = config_file
    ids = {job_id.decode() for job_id in client.hkeys(TAGGED_KEYS[0])}
    assert set(listed("--store", store, env=env)) == ids
    for output in ([], ["-o", "json"]):
        shown = jobctl("--store", store, "config", *output, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "***" in shown.stdout, shown.stdout
        for secret in (SECRET, "alice-pw", ODD_PASSWORD, quote(ODD_PASSWORD, safe="")):
            assert secret not in shown.stdout, shown.stdout
    wrong = jobctl("--store", store, "list", env={**env, "SOME_VAR": "Wr0ng-Guess", "ALICE_PW": "Wr0ng-Guess", "ODD_PW": "Wr0ng-Guess"})
    assert wrong.returncode == 1 and "refused the credentials" in one_line(wrong.stderr), wrong
    assert "Wr0ng-Guess" not in wrong.stderr


def test_password_env_of_the_default_store_and_when_unset(config_file):
    env, client = config_file
    assert jobctl("pause", "daily_reports", env=env).returncode == 0  # the file's default store
    assert client.zscore(TAGGED_KEYS[1], "daily_reports") is None
    unset = jobctl("list", env={"JOBCTL_CONFIG": env["JOBCTL_CONFIG"]})
    assert unset.returncode == 2 and "$SOME_VAR, which is not set" in one_line(unset.stderr), unset


def test_config_masks_a_password_given_in_the_url(secured):
    """Masking is text only (nothing connects): a unix:// URL shows on any redis-py."""
    server, _ = secured
    for url in (f"redis://:{SECRET}@127.0.0.1:{server.port}/0", f"rediss://alice:{SECRET}@localhost:{server.port}/0",
                f"unix://{server.socket}?db=0&password={SECRET}"):
        for way in (["--url", url], []):
            shown = jobctl(*way, "config", "-o", "json", env={} if way else {"JOBCTL_URL": url})
            assert shown.returncode == 0, shown.stderr
            assert SECRET not in shown.stdout and "***" in json.loads(shown.stdout)["url"], shown.stdout


# --- 3. TLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path):
    """A server with a TLS port (a throwaway CA's certificate for localhost and 127.0.0.1) and
    a plain one, the store written by APScheduler through the plain one. Yields (server, CA)."""
    needs_redis_server("openssl")
    certificates = make_certificates(tmp_path / "certs")
    with redis_server(tmp_path / "tls", *tls_options(certificates), tls_port=free_port()) as server:
        write_store(f"redis://127.0.0.1:{server.port}/0", "current", *keys_args(TAGGED_KEYS))
        yield server, certificates["ca.crt"]


def test_rediss_with_the_ca_named_in_the_url_opens_the_store(tls_server):
    """redis-py's from_url passes ssl_ca_certs (and ssl_cert_reqs) from the query string."""
    server, ca = tls_server
    client = client_for(f"redis://127.0.0.1:{server.port}/0")
    try:
        before = RealStore.read(client, *TAGGED_KEYS)
        ids = {job_id.decode() for job_id in before.jobs}
        for url in (f"rediss://localhost:{server.tls_port}/0?ssl_ca_certs={ca}",
                    f"rediss://127.0.0.1:{server.tls_port}/0?ssl_ca_certs={ca}",
                    f"rediss://localhost:{server.tls_port}/0?ssl_cert_reqs=none"):
            assert set(listed("--url", url, *keys_args(TAGGED_KEYS))) == ids, url
        args = ["--url", f"rediss://localhost:{server.tls_port}/0?ssl_ca_certs={ca}", *keys_args(TAGGED_KEYS)]
        health = jobctl(*args, "health")
        assert health.returncode == 0 and health.stdout.startswith("JOBCTL OK"), health.stdout
        assert RealStore.read(client, *TAGGED_KEYS) == before
        assert jobctl(*args, "pause", "daily_reports").returncode == 0
        assert_consistent(RealStore.read(client, *TAGGED_KEYS), {b"paused_sync", b"daily_reports"})
    finally:
        client.close()


def test_rediss_that_cannot_verify_the_server_fails_in_one_line(tls_server, tmp_path):
    server, ca = tls_server
    for url, said, code in ((f"rediss://localhost:{server.tls_port}/0", "certificate verify failed", 1),
                            (f"rediss://localhost:{server.tls_port}/0?ssl_ca_certs={tmp_path / 'missing.crt'}", "missing.crt in the Redis URL: no such file", 2)):
        result = jobctl("--url", url, *keys_args(TAGGED_KEYS), "list")
        assert result.returncode == code and said in one_line(result.stderr), result


def test_plain_redis_to_the_tls_port_fails_at_once_in_one_line(tls_server):
    server, _ = tls_server
    started = time.monotonic()
    result = jobctl("--url", f"redis://127.0.0.1:{server.tls_port}/0", *keys_args(TAGGED_KEYS), "list")
    assert time.monotonic() - started < 3
    assert result.returncode == 1 and "cannot reach" in one_line(result.stderr), result


def test_rediss_to_the_plain_port_fails_in_one_line_within_its_deadline(tls_server):
    """The server never answers a TLS hello: jobctl gives up after its connect deadline."""
    server, ca = tls_server
    env = {"JOBCTL_TIMEOUT": "1", "JOBCTL_LOCK_TIMEOUT": "1"}
    url = f"rediss://localhost:{server.port}/0?ssl_ca_certs={ca}"
    for command, code in ((["list"], 1), (["health"], 3)):
        started = time.monotonic()
        result = jobctl("--url", url, *keys_args(TAGGED_KEYS), *command, env=env)
        assert time.monotonic() - started < 4
        assert result.returncode == code, result
        line = one_line(result.stdout if code == 3 else result.stderr)
        assert f"could not connect to rediss://localhost:{server.port}/0 within 1 s (is that port TLS?" in line, line


def test_rediss_to_the_plain_port_fails_within_the_connect_deadline(tls_server):
    server, ca = tls_server
    env = {"JOBCTL_TIMEOUT": "1", "JOBCTL_LOCK_TIMEOUT": "3"}  # connect deadline 1 s, step 4 s
    started = time.monotonic()
    result = jobctl("--url", f"rediss://localhost:{server.port}/0?ssl_ca_certs={ca}", *keys_args(TAGGED_KEYS), "list", env=env)
    assert result.returncode == 1
    assert time.monotonic() - started < 2.5, f"took {time.monotonic() - started:.1f} s: {result.stderr}"


# --- 4. Redis Cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three masters of one Redis Cluster; yields their ports."""
    needs_redis_server("redis-cli")
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as servers:
        yield [server.port for server in servers]


@pytest.fixture
def cluster_client(cluster):
    from redis.cluster import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=cluster[0])
    yield client
    client.close()


def test_a_cluster_store_with_a_hash_tag_works_through_any_node(real_store, cluster, cluster_client, tmp_path):
    """'{aps}.jobs' and '{aps}.run_times' share a slot: every command works through a URL naming
    any node, the one holding the slot or not, and the keys stay whole."""
    real_store.put(cluster_client, *TAGGED_KEYS)
    owner = cluster_client.get_node_from_key(TAGGED_KEYS[0]).port
    others = [port for port in cluster if port != owner]
    assert owner in cluster and len(others) == 2

    def through(port: int) -> list[str]:
        return ["--url", f"redis://127.0.0.1:{port}/0", *keys_args(TAGGED_KEYS)]

    def now() -> RealStore:
        return RealStore.read(cluster_client, *TAGGED_KEYS)

    before = now()
    for port in cluster:
        assert set(listed(*through(port))) == {job_id.decode() for job_id in before.jobs}, port
        assert jobctl(*through(port), "show", "daily_reports").returncode == 0
        health = jobctl(*through(port), "health")
        assert health.returncode == 0 and health.stdout.startswith("JOBCTL OK"), (port, health.stdout)
    assert now() == before, "reading changed a byte"

    export = tmp_path / "one_off.json"
    steps = [  # (node, command, the jobs it changes, the paused jobs afterwards)
        (others[0], ["pause", "daily_reports"], {"daily_reports"}, {b"paused_sync", b"daily_reports"}),
        (others[1], ["resume", "paused_sync"], {"paused_sync"}, {b"daily_reports"}),
        (owner, ["run", "inventory_sync"], {"inventory_sync"}, {b"daily_reports"}),
        (others[0], ["reschedule", "weekday_digest", "--cron", "0 7 * * 1-5"], {"weekday_digest"}, {b"daily_reports"}),
        (others[1], ["export", "one_off", "-f", str(export)], set(), {b"daily_reports"}),
        (others[1], ["remove", "one_off", "--yes"], {"one_off"}, {b"daily_reports"}),
    ]
    changed: set[str] = set()
    for port, command, touched, paused in steps:
        step_before = now()
        result = jobctl(*through(port), *command)
        assert result.returncode == 0, (port, command, result.stderr)
        changed |= touched
        after = now()
        assert_consistent(after, paused)
        untouched = {job_id.encode() for job_id in touched}
        assert [m for m in after.run_times if m[0] not in untouched] == [m for m in step_before.run_times if m[0] not in untouched], command
        assert {k: v for k, v in after.jobs.items() if k not in untouched} == {k: v for k, v in step_before.jobs.items() if k not in untouched}, command
    final = now()
    assert b"one_off" not in final.jobs
    assert {k.decode() for k in before.jobs if before.jobs[k] != final.jobs.get(k)} == changed

    imported = jobctl(*through(others[0]), "import", str(export))
    assert imported.returncode == 0 and "1 added" in imported.stdout, imported.stderr
    assert now().jobs[b"one_off"] == before.jobs[b"one_off"], "the export and import changed a byte"

    # the application's own APScheduler loads the result back, each score as it computes it
    with redis_server(tmp_path / "check") as plain:
        url = f"redis://127.0.0.1:{plain.port}/0"
        check = client_for(url)
        try:
            now().put(check, *TAGGED_KEYS)
        finally:
            check.close()
        loaded = aps_load(url, "current", *keys_args(TAGGED_KEYS))["by_id"]
    assert loaded["daily_reports"]["next_run_time"] is None and loaded["paused_sync"]["next_run_time"] is not None
    assert "day_of_week='mon-fri'" in loaded["weekday_digest"]["trigger"] and "one_off" in loaded


def test_a_cluster_refuses_keys_in_two_slots_in_one_line(real_store, cluster, cluster_client, tmp_path):
    """APScheduler's default key names hash to different slots: no command touches them."""
    real_store.put(cluster_client, *TAGGED_KEYS)
    document = tmp_path / "jobs.json"
    exported = jobctl("--url", f"redis://127.0.0.1:{cluster[0]}/0", *keys_args(TAGGED_KEYS), "export", "-f", str(document))
    assert exported.returncode == 0, exported.stderr
    real_store.put(cluster_client, *DEFAULT_KEYS)
    try:
        before = RealStore.read(cluster_client, *DEFAULT_KEYS)
        commands = [["list"], ["show", "daily_reports"], ["pause", "daily_reports"], ["resume", "paused_sync"],
                    ["run", "inventory_sync"], ["remove", "one_off", "--yes"], ["reschedule", "one_off", "--interval", "1h"],
                    ["export"], ["import", str(document), "--replace"]]
        for port in cluster:
            for command in commands:
                result = jobctl("--url", f"redis://127.0.0.1:{port}/0", *command)
                assert result.returncode == 1 and not result.stdout, (port, command, result)
                line = one_line(result.stderr)
                assert "Redis Cluster" in line and "hash tag" in line and "'{apscheduler}.jobs'" in line, line
            health = jobctl("--url", f"redis://127.0.0.1:{port}/0", "health")
            assert health.returncode == 3 and "hash tag" in one_line(health.stdout), health
        assert RealStore.read(cluster_client, *DEFAULT_KEYS) == before
    finally:
        cluster_client.delete(DEFAULT_KEYS[0])
        cluster_client.delete(DEFAULT_KEYS[1])


def test_a_cluster_has_only_database_0(real_store, cluster, cluster_client):
    real_store.put(cluster_client, *TAGGED_KEYS)
    result = jobctl("--url", f"redis://127.0.0.1:{cluster[0]}/1", *keys_args(TAGGED_KEYS), "list")
    assert result.returncode == 1 and "cluster" in one_line(result.stderr).lower(), result


def test_a_cluster_user_without_info_goes_through_the_cluster(real_store, cluster, cluster_client):
    """INFO forbidden: jobctl cannot ask whether it is a cluster, and the node it names owns
    neither key; the redirect tells it, and it goes through the cluster."""
    real_store.put(cluster_client, *TAGGED_KEYS)
    owner = cluster_client.get_node_from_key(TAGGED_KEYS[0]).port
    import redis

    for port in cluster:
        node = redis.Redis(port=port)
        node.acl_setuser("noinfo", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info"])
        node.close()
    other = next(port for port in cluster if port != owner)
    args = ["--url", f"redis://noinfo:pw@127.0.0.1:{other}/0", *keys_args(TAGGED_KEYS)]
    result = jobctl(*args, "list", "-o", "json")
    if tuple(int(part) for part in redis.__version__.split(".")[:2]) < (4, 4):
        # redis-py 4.2's cluster client asks INFO itself: it cannot be set up, said in one line
        assert result.returncode == 1 and "is a Redis Cluster" in one_line(result.stderr), result
        return
    assert result.returncode == 0, result
    assert {job["id"] for job in json.loads(result.stdout)} == {job_id.decode() for job_id in real_store.jobs}
    refused = jobctl("--url", f"redis://noinfo:pw@127.0.0.1:{other}/0", *keys_args(DEFAULT_KEYS), "list")
    assert refused.returncode == 1 and "hash slot" in one_line(refused.stderr), refused


# --- 5. a user who may not run scripts ---------------------------------------------------------


@pytest.fixture
def limited(secured):
    """secured's server with the users 'limited' (reads, no scripts) and 'nowrite' (reads and
    scripts, no writes). Yields (server, admin client)."""
    server, client = secured
    client.acl_setuser("limited", enabled=True, passwords=["+pw"], keys=["*"], categories=["+@read", "-@scripting"])
    client.acl_setuser("nowrite", enabled=True, passwords=["+pw"], keys=["*"], categories=["+@read", "+@scripting"])
    return server, client


def test_a_user_who_may_not_run_scripts_is_told_in_one_line(limited):
    server, client = limited
    before = RealStore.read(client, *TAGGED_KEYS)
    args = ["--url", f"redis://limited:pw@127.0.0.1:{server.port}/0", *keys_args(TAGGED_KEYS)]
    for command in (["list"], ["show", "daily_reports"], ["pause", "daily_reports"], ["export"]):
        result = jobctl(*args, *command)
        assert result.returncode == 1 and not result.stdout, (command, result)
        line = one_line(result.stderr)
        assert "no permissions" in line and "evalsha" in line, line
    health = jobctl(*args, "health")
    assert health.returncode == 3 and "evalsha" in one_line(health.stdout), health
    assert RealStore.read(client, *TAGGED_KEYS) == before


def test_a_user_who_may_not_run_scripts_is_told_what_jobctl_needs(limited):
    server, _ = limited
    result = jobctl("--url", f"redis://limited:pw@127.0.0.1:{server.port}/0", *keys_args(TAGGED_KEYS), "list")
    assert result.returncode == 1 and "jobctl runs Lua scripts (EVALSHA" in one_line(result.stderr), result


def test_a_user_who_may_not_write_reads_and_is_refused_changes_in_one_line(limited):
    server, client = limited
    before = RealStore.read(client, *TAGGED_KEYS)
    args = ["--url", f"redis://nowrite:pw@127.0.0.1:{server.port}/0", *keys_args(TAGGED_KEYS)]
    assert set(listed(*args)) == {job_id.decode() for job_id in before.jobs}
    for command in (["pause", "daily_reports"], ["resume", "paused_sync"], ["remove", "one_off", "--yes"]):
        result = jobctl(*args, *command)
        assert result.returncode == 1 and not result.stdout, (command, result)
        assert "may not change these keys" in one_line(result.stderr), result
    assert RealStore.read(client, *TAGGED_KEYS) == before


# --- 6. a server at maxmemory ------------------------------------------------------------------


def test_a_server_at_maxmemory_is_still_read_and_refuses_changes_in_one_line(real_store, tmp_path):
    """With noeviction and no memory left, Redis refuses every command inside MULTI and every
    script that may write: reads fall back to the read script, and a change is one line."""
    with redis_server(tmp_path / "full") as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        client = client_for(url)
        try:
            real_store.put(client, *TAGGED_KEYS)
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1")  # below what is used: every write is refused
            args = ["--url", url, *keys_args(TAGGED_KEYS)]
            assert set(listed(*args)) == {job_id.decode() for job_id in real_store.jobs}
            assert jobctl(*args, "health").returncode in (0, 1)
            refused = jobctl(*args, "pause", "daily_reports")
            assert refused.returncode == 1 and "maxmemory" in one_line(refused.stderr), refused
            assert RealStore.read(client, *TAGGED_KEYS) == real_store
        finally:
            client.config_set("maxmemory", "0")
            client.close()
