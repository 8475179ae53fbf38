"""Loopback servers that misbehave, for fault tests: a listener that accepts and never speaks,
and a proxy in front of a real server that stops forwarding after a number of chunks.

Both listen on 127.0.0.1 only, on a port the system picks, serve from daemon threads, close
every socket they opened when stopped, and stop by themselves after `lifetime` seconds.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time


class _Server:
    def __init__(self, lifetime: float) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.deadline = time.monotonic() + lifetime
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = [self.listener]
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    def _running(self) -> bool:
        return not self.stopped.is_set() and time.monotonic() < self.deadline

    def _keep(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)

    def _accept_loop(self) -> None:
        while self._running():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self._keep(client)
            self.accepted(client)
        self.stop()

    def accepted(self, client: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.close()
                except OSError:
                    pass
            self.sockets.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SilentServer(_Server):
    """Accepts connections and never sends or reads a byte (a firewall that black-holes, a
    hung server with a full accept queue)."""

    def __init__(self, lifetime: float = 120) -> None:
        super().__init__(lifetime)

    def accepted(self, client: socket.socket) -> None:
        pass  # held open, silent, until stopped


class StallingProxy(_Server):
    """Forwards to `upstream` until `chunks` chunks have passed (both directions counted), then
    keeps both connections open and forwards nothing more: a connection that stalls mid-way.
    With `across`, the chunks are counted over all connections together: the path stalls
    after some connections went through whole (a listing that stops at its 50th page)."""

    def __init__(self, upstream: tuple[str, int], chunks: int, lifetime: float = 120, across: bool = False) -> None:
        self.upstream = upstream
        self.chunks = chunks
        self.across = across
        self.passed_across = 0
        super().__init__(lifetime)

    def accepted(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            client.close()
            return
        self._keep(server)
        threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        peers = {client: server, server: client}
        for sock in peers:
            selector.register(sock, selectors.EVENT_READ)
        passed = 0
        try:
            while self._running() and passed < self.chunks:
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    peers[key.fileobj].sendall(data)  # type: ignore[index]
                    if self.across:
                        with self.lock:
                            self.passed_across += 1
                            passed = self.passed_across
                    else:
                        passed += 1
            while self._running():  # stalled: hold the sockets, read nothing, send nothing
                time.sleep(0.2)
        except OSError:
            return
        finally:
            selector.close()


class TricklingServer(_Server):
    """Answers whatever it is sent with the start of a Redis bulk reply of a megabyte, then one
    byte every `every` seconds: a server (or path) too slow to ever finish, yet never silent
    long enough for a timeout on each read to fire."""

    def __init__(self, every: float = 0.3, lifetime: float = 120) -> None:
        self.every = every
        super().__init__(lifetime)

    def accepted(self, client: socket.socket) -> None:
        threading.Thread(target=self._trickle, args=(client,), daemon=True).start()

    def _trickle(self, client: socket.socket) -> None:
        try:
            client.settimeout(5)
            client.recv(65536)
            client.sendall(b"$1000000\r\n")
            while self._running():
                client.sendall(b"x")
                time.sleep(self.every)
        except OSError:
            return
