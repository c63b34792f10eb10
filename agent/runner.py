"""Start and stop the whole agent (call service and web server) inside one event loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from agent.app import create_app
from agent.bus import EventBus
from agent.config import Config
from agent.history import History
from agent.metrics import Registry
from agent.service import CallService

log = logging.getLogger("ringboard")

# uvicorn waits this long for open connections at shutdown before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 3

# How long `start` waits for the web server to bind before giving up.
STARTUP_TIMEOUT = 10.0


class AgentRunner:
    """The agent as one object: `await start()`, use `url`, `await stop()`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.history = History(config.agent.data_dir / "ringboard.sqlite3")
        self.bus = EventBus()
        self.metrics = Registry()
        self.service = CallService(config, self.history, self.bus, self.metrics)
        self.metrics.gauge("ringboard_websocket_clients", "connected page WebSockets", lambda: {(): float(self.bus.client_count)})
        self.server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The page's address, with the port actually bound."""
        assert self.server is not None and self.server.servers, "the agent is not started"
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/"

    async def start(self) -> str:
        """Start subscribing and serving; return the page's address."""
        await self.service.start()
        app = create_app(self.service, self.bus, self.config.agent.data_dir)
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=self.config.http.host,
                port=self.config.http.port,
                log_level="warning",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                ws="websockets-sansio",
                lifespan="on",
            )
        )
        self._serving = asyncio.create_task(self.server.serve(), name="http-server")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT
        while not self.server.started:
            if self._serving.done():
                self._serving.result()  # Raises the reason uvicorn could not start.
                raise RuntimeError(f"the web server stopped at start-up on port {self.config.http.port}")
            if loop.time() > deadline:
                raise TimeoutError(f"the web server did not start within {STARTUP_TIMEOUT} s")
            await asyncio.sleep(0.02)
        return self.url

    async def wait(self) -> None:
        """Wait until the web server stops (on SIGINT or SIGTERM)."""
        if self._serving is not None:
            await self._serving

    async def stop(self) -> None:
        """Stop serving, unsubscribe and close the database."""
        if self.server is not None and self._serving is not None:
            self.server.should_exit = True
            await self._serving
        await self.service.stop()
        self.history.close()
        log.info("agent stopped")
