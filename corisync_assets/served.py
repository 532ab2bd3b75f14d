"""A Starlette app served by uvicorn: as a process's main loop, or in a daemon thread of this process.

The web collector and the local Airbyte stand-in run as processes of their own; tests, benchmarks and the
stand-in's tools serve them (and the Google double) in a thread. Both go through here, so the uvicorn settings
and the wait for a listening socket are written once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any


def uvicorn_config(app: Any, host: str, port: int, log_level: str = "warning", **options: Any):
    """uvicorn settings of our services: no access log, no server header, our logging (``options`` add to them)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
                          server_header=False, log_config=None, **options)


def serve(app: Any, host: str, port: int, log_level: str = "info", **options: Any) -> None:
    """Serve until SIGTERM/SIGINT (in-flight requests finish)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, host, port, log_level, **options)).run()


@dataclass
class ServedApp:
    """An app served by uvicorn in a daemon thread (``serve_in_thread``)."""

    url: str
    app: Any
    server: Any
    thread: threading.Thread

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *, name: str, timeout: float = 30.0,
                    **options: Any) -> ServedApp:
    """Serve ``app`` in a daemon thread (port 0: any free one); returns once it listens, with its bound URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(app, host, port, **options))
    thread = threading.Thread(target=server.run, name=f"{name}-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"{name} did not start (see the log)")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return ServedApp(f"http://{'[' + host + ']' if ':' in host else host}:{bound}", app, server, thread)
