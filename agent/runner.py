"""Start and stop the whole agent (call service and web server) inside one event loop.

SIGHUP reloads the TLS certificate from `[http] certificate` and `key`: new connections
use the new one, open ones keep theirs. It also checks open pages for revoked devices.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
import ssl

import uvicorn
from argon2 import PasswordHasher

from agent.app import create_app
from agent.auth import Authenticator
from agent.bus import EventBus
from agent.config import Config
from agent.history import History
from agent.metrics import Registry
from agent.push.service import PushService
from agent.push.store import PUSH_SERVICE_HOSTS, EndpointPolicy
from agent.push_api import push_routes
from agent.push_wiring import UserAudience, identify, prune_subscriptions
from agent.service import CallService
from agent.tls import TlsError, load_certificate, server_context
from agent.users import UserStore

log = logging.getLogger("ringboard")

# uvicorn waits this long for open connections at shutdown before closing them.
GRACEFUL_SHUTDOWN_SECONDS = 3

# How long `start` waits for the web server to bind before giving up.
STARTUP_TIMEOUT = 10.0

# The page sends nothing but the WebSocket's own control frames, so a larger message from
# a client is rejected instead of buffered. uvicorn's default is 16 MiB.
WS_MAX_MESSAGE = 64 * 1024


class AgentRunner:
    """The agent as one object: `await start()`, use `url`, `await stop()`."""

    def __init__(self, config: Config, pin_hasher: PasswordHasher | None = None) -> None:
        self.config = config
        self.history = History(config.agent.data_dir / "ringboard.sqlite3")
        self.users = UserStore.in_data_dir(config.agent.data_dir, pin_hasher)
        self.bus = EventBus()
        self.metrics = Registry()
        self.service = CallService(config, self.history, self.bus, self.metrics)
        self.auth = Authenticator(self.users, self.metrics)
        self.push = PushService(
            config.agent.data_dir,
            UserAudience(self.users),
            metrics=self.metrics,
            contact=config.push_contact,
            region=config.numbers.default_region,
            policy=EndpointPolicy(hosts=PUSH_SERVICE_HOSTS + config.push_hosts, allow_http=config.push_allow_http),
        )
        self.service.push = self.push
        self._prune: asyncio.Task[None] | None = None
        self.metrics.gauge("ringboard_websocket_clients", "connected page WebSockets", lambda: {(): float(self.bus.client_count)})
        self.server: uvicorn.Server | None = None
        self.ssl_context: ssl.SSLContext | None = None
        self._serving: asyncio.Task[None] | None = None
        self._sighup_installed = False

    @property
    def url(self) -> str:
        """The page's address, with the port actually bound."""
        assert self.server is not None and self.server.servers, "the agent is not started"
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        if ipaddress.ip_address(host).is_unspecified:
            # Bound to every interface: over HTTPS the certificate names this host.
            host = socket.gethostname() if self.config.http.tls else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.config.http.tls else "http"
        return f"{scheme}://{host}:{port}/"

    async def start(self) -> str:
        """Start subscribing and serving; return the page's address."""
        http = self.config.http
        if http.certificate is not None and http.key is not None:
            self.ssl_context = server_context(http.certificate, http.key)

        await self.service.start()
        await self.auth.start()

        await self.push.start()
        self._prune = asyncio.create_task(prune_subscriptions(self.push, self.users), name="prune-push")
        app = create_app(self.service, self.bus, self.config.agent.data_dir, self.auth, tls=http.tls)
        # Routes are matched at request time, so the push endpoints join the app's own
        # behind the same device-token guard.
        app.router.routes.extend(push_routes(self.push, identify))
        context = self.ssl_context
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=http.host,
                port=http.port,
                log_level="warning",
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                ws="websockets-sansio",
                ws_max_size=WS_MAX_MESSAGE,
                lifespan="on",
                # Pairing lock-outs count per client address, so the address must be the
                # socket's peer, never a header a client can write.
                proxy_headers=False,
                server_header=False,
                ssl_context_factory=(lambda config, default: context) if context is not None else None,
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
        self._install_sighup()
        return self.url

    def reload(self) -> None:
        """Reload the TLS certificate and close the pages of revoked devices, as on SIGHUP."""
        http = self.config.http
        if self.ssl_context is not None and http.certificate is not None and http.key is not None:
            try:
                info = load_certificate(self.ssl_context, http.certificate, http.key)
            except TlsError as error:
                log.error("TLS certificate not reloaded, the previous one stays in use: %s", error)
            else:
                log.info(
                    "TLS certificate reloaded from %s: %s, valid until %s",
                    http.certificate, ", ".join(info.names), info.not_after.isoformat(),
                )
        self.auth.check_live_connections()

    def _install_sighup(self) -> None:
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError, ValueError) as error:
            # Not the main thread, or not Unix: `reload()` can still be called directly.
            log.debug("no SIGHUP handler installed: %s", error)
            return
        self._sighup_installed = True

    async def wait(self) -> None:
        """Wait until the web server stops (on SIGINT or SIGTERM)."""
        if self._serving is not None:
            # uvicorn raises the caught SIGINT again once it stopped, and asyncio then
            # cancels the caller; the shield keeps that from cancelling the server too.
            await asyncio.shield(self._serving)

    async def stop(self) -> None:
        """Stop serving, unsubscribe and close the databases."""
        if self._sighup_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup_installed = False
        if self.server is not None and self._serving is not None:
            self.server.should_exit = True
            await self._serving
        await self.auth.stop()
        if self._prune is not None:
            self._prune.cancel()
            await asyncio.gather(self._prune, return_exceptions=True)
        await self.service.stop()
        await self.push.stop()
        self.history.close()
        self.users.close()
        log.info("agent stopped")
