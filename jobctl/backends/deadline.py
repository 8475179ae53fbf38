"""A deadline on one step over the network: when it runs out, the step's socket is shut down.

A server behind a network path that stalls (a proxy or firewall that stops forwarding, with the
connection left open) never answers, and a driver waits for ever (libpq has no read timeout), or,
where it has a timeout per read, for as long as the server trickles a byte before each one.
Shutting the socket down wakes the driver, which fails the step. Both backends use this.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Cut:
    """Shuts down the sockets of the connections a step uses when it outlasts its time (a timer
    thread). `connections` gives them; by default, the last one `watch` was given."""

    def __init__(self, connections: Callable[[], Iterable[Any]] | None = None) -> None:
        self.fired = False
        self.connection: Any = None
        self.connections = connections or (lambda: [self.connection])

    def watch(self, connection: Any) -> None:
        """The connection the current step uses (a SQL step connects anew: no pool)."""
        self.connection = connection

    @contextlib.contextmanager
    def bounded(self, seconds: float) -> Iterator[None]:
        """Cut the step's connections if it takes more than `seconds`."""
        timer = threading.Timer(seconds, self.fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def fire(self) -> None:
        self.fired = True
        for connection in self.connections():
            _shut_down(connection)


def _shut_down(connection: Any) -> None:
    """Shut down a connection's socket: a DB-API connection's fileno() (psycopg), or the socket
    a driver keeps (PyMySQL's and redis-py's _sock)."""
    fileno = getattr(connection, "fileno", None)
    if fileno is None:
        sock = getattr(connection, "_sock", None)
        fileno = getattr(sock, "fileno", None)
    try:
        fd = fileno() if fileno is not None else -1
        if fd >= 0:
            with socket.socket(fileno=os.dup(fd)) as duplicate:
                duplicate.shutdown(socket.SHUT_RDWR)  # shuts the socket itself, for every fd
    except Exception:  # noqa: BLE001 - already closed (OSError, psycopg's OperationalError): the step is over
        pass  # and this runs in a timer thread, where anything raised is a traceback on stderr
