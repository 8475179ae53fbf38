"""Throwaway redis-server processes for tests: plain, on a unix socket, with a password or ACL
users, over TLS, or three nodes of a Redis Cluster. Each runs in its own folder on ports free
when it starts, with no persistence, and is killed when its `with` block ends.

`needs_redis_server()` skips a test when the `redis-server` binary (or `redis-cli`, or
`openssl` for TLS) is not installed. `RealStore` holds the two keys of a store the fixture
application wrote through APScheduler's own RedisJobStore, byte for byte, to put into any of
these servers under any key names.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_SECONDS = 10


def needs_redis_server(*tools: str) -> None:
    """Skip unless redis-server and these other tools (redis-cli, openssl) are on PATH."""
    for tool in ("redis-server", *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: these tests start their own Redis servers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One redis-server process. `port` is its plain TCP port (0: none), `tls_port` its TLS port
    (0: none), `socket` its unix socket (None: none)."""

    folder: Path
    process: subprocess.Popen
    port: int = 0
    tls_port: int = 0
    socket: Path | None = None

    @property
    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def redis_server(folder: Path, *options: str, port: int | None = None, tls_port: int = 0,
                 unix_socket: bool = False) -> Iterator[Server]:
    """A redis-server with these extra OPTIONS (as on its command line), killed afterwards.
    port=None picks a free port; port=0 listens on none (TLS or the socket only)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else port
    # a socket's path has at most 107 bytes, which pytest's tmp_path may exceed
    sock_folder = Path(tempfile.mkdtemp(prefix="jobctl-redis-")) if unix_socket else None
    sock = sock_folder / "redis.sock" if sock_folder else None
    command = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(folder), "--logfile", str(folder / "redis.log"), "--daemonize", "no",
    ]
    if tls_port:
        command += ["--tls-port", str(tls_port)]
    if sock:
        command += ["--unixsocket", str(sock), "--unixsocketperm", "700"]
    command += list(options)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = Server(folder, process, port, tls_port, sock)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr:
            process.stderr.close()
        if sock_folder:
            shutil.rmtree(sock_folder, ignore_errors=True)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while "ready to accept connections" not in server.log.lower():
        if server.process.poll() is not None:
            error = server.process.stderr.read().decode(errors="replace") if server.process.stderr else ""
            pytest.fail(f"redis-server exited with {server.process.returncode}: {error}\n{server.log[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"redis-server not ready within {READY_SECONDS} s:\n{server.log[-2000:]}")
        time.sleep(0.02)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throwaway CA, and a server certificate it signed for localhost and 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr", "san.ext")}
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    # what CPython 3.13's strict verification (VERIFY_X509_STRICT) asks of a CA and a leaf
    paths["san.ext"].write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n"
    )
    for command in (
        ["openssl", "req", "-x509", "-new", *key, "-keyout", paths["ca.key"], "-out", paths["ca.crt"], "-days", "2",
         "-subj", "/CN=jobctl test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash"],
        ["openssl", "req", "-new", *key, "-keyout", paths["server.key"], "-out", paths["server.csr"], "-subj", "/CN=localhost"],
        ["openssl", "x509", "-req", "-in", paths["server.csr"], "-CA", paths["ca.crt"], "-CAkey", paths["ca.key"],
         "-CAcreateserial", "-out", paths["server.crt"], "-days", "2", "-extfile", paths["san.ext"]],
    ):
        subprocess.run([str(part) for part in command], check=True, capture_output=True, timeout=30)
    return paths


def tls_options(certificates: dict[str, Path]) -> list[str]:
    return ["--tls-cert-file", str(certificates["server.crt"]), "--tls-key-file", str(certificates["server.key"]),
            "--tls-ca-cert-file", str(certificates["ca.crt"]), "--tls-auth-clients", "no"]


@contextlib.contextmanager
def redis_cluster(folder: Path, nodes: int = 3) -> Iterator[list[Server]]:
    """NODES masters of one Redis Cluster (no replicas), every slot covered and the cluster ok."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(redis_server(
                folder / f"node{n}", "--cluster-enabled", "yes", "--cluster-config-file", str(folder / f"node{n}" / "nodes.conf"),
                "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000",
            ))
            for n in range(nodes)
        ]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in servers), "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )
        if created.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        _wait_cluster_ok(servers)
        yield servers


def _wait_cluster_ok(servers: list[Server]) -> None:
    import redis

    deadline = time.monotonic() + 20
    pending = list(servers)
    while pending:
        client = redis.Redis(port=pending[0].port)
        try:
            state = client.cluster("info")
        finally:
            client.close()
        if (state.get("cluster_state") if isinstance(state, dict) else None) == "ok" or "cluster_state:ok" in str(state):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            pytest.fail(f"Redis Cluster not ok within 20 s: {state}")
        time.sleep(0.05)


@dataclass
class RealStore:
    """A RedisJobStore's two keys as APScheduler wrote them: the hash's fields and values, and
    the sorted set's members and scores, all bytes."""

    jobs: dict[bytes, bytes]
    run_times: list[tuple[bytes, float]]

    @classmethod
    def read(cls, client, jobs_key: str, run_times_key: str) -> RealStore:
        return cls(client.hgetall(jobs_key), client.zrange(run_times_key, 0, -1, withscores=True))

    def put(self, client, jobs_key: str, run_times_key: str) -> None:
        """Write both keys into CLIENT's server (a redis.Redis or a RedisCluster) under these names."""
        client.delete(jobs_key)
        client.delete(run_times_key)
        client.hset(jobs_key, mapping=self.jobs)
        client.zadd(run_times_key, dict(self.run_times))
        assert RealStore.read(client, jobs_key, run_times_key) == self, "the copy differs from the store"
