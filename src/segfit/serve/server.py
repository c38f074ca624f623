"""The page's server in a background thread, on a free loopback port: for notebooks, tests and benchmarks
(``segfit serve`` runs uvicorn in the foreground instead)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn
from starlette.applications import Starlette

START_TIMEOUT_S = 30.0


@contextmanager
def running(app: Starlette) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a port the system picks; yields the base URL, stops the server on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the page's server did not start (see the uvicorn messages above)")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
