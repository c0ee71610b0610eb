"""What the handlers of one worker need, built once per process (clients in the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import msgspec
import redis.asyncio as aioredis
import structlog
from litestar import Litestar

from app.accounting import Accounting
from app.config import Config, secret_from_environment, server_pid_from_environment
from app.domain import ConfigSnapshot, Provider, ProviderSettings, ServiceUnavailable
from app.keyspace import Keyspace
from app.pipeline import Gateway
from app.providers.registry import build_provider
from app.resp import RespClient
from app.routing.router import Router, build_routes, route_specs
from app.server.auth import Authenticator, StaticKeys, identities_from_config
from app.server.control import ControlLink, KeyCache
from app.server.lifetime import exit_when_orphaned
from app.server.model_list import ModelList
from app.snapshot import provider_settings, snapshot_from_config

log = structlog.get_logger("gandalf.worker")


class WorkerState:
    """The worker's composition root: configuration in, ready collaborators out."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.max_body_bytes = config.server.max_body_bytes
        self.keepalive_interval = config.server.keepalive_interval
        self.x_gateway = config.server.x_gateway
        self.prices = config.pricing.table()
        self.authenticator = Authenticator(StaticKeys(identities_from_config(config.keys)))
        self.model_list = ModelList((), int(time.time()))
        self._secrets = {p.name: p.resolved_api_key for p in config.providers}
        self._local = {p.name: provider_settings(p) for p in config.providers}
        """Each provider as this process's own file has it: the source of what only the
        machine that calls the provider knows (its credentials file), and SQLite never holds."""
        self._providers: dict[str, tuple[ProviderSettings, Provider]] = {}
        self._gateway: Gateway | None = None
        self.snapshot_version = -1
        self.keyspace = Keyspace(config.redis.key_prefix)
        self.redis: aioredis.Redis | None = None
        self.accounting: Accounting | None = None
        """Limits, budgets and the cache; None without Redis (a data plane on its own file)."""

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            raise ServiceUnavailable("the gateway is starting")
        return self._gateway

    @property
    def ready(self) -> bool:
        return self._gateway is not None

    async def apply(self, snapshot: ConfigSnapshot) -> None:
        """Serve from `snapshot`; adapters whose settings did not change are kept."""
        providers: dict[str, tuple[ProviderSettings, Provider]] = {}
        for published in snapshot.providers:
            if not published.enabled:
                continue
            settings = self._with_local(published)
            current = self._providers.get(settings.name)
            if current is not None and current[0] == settings:
                providers[settings.name] = current
                continue
            api_key = self._secrets.get(settings.name) or secret_from_environment(
                settings.api_key_env
            )
            adapter = build_provider(settings, api_key)
            if adapter is not None:
                providers[settings.name] = (settings, adapter)
        routes = build_routes(
            route_specs(snapshot), {name: adapter for name, (_, adapter) in providers.items()}
        )
        self._providers = providers
        self.model_list = ModelList(routes, int(time.time()))
        self._gateway = Gateway(Router(routes))
        self.snapshot_version = snapshot.version
        # Replaced adapters are not closed here: requests in flight still hold them, and their
        # pools are released when the last of those requests lets go of them.
        log.info(
            "serving configuration",
            version=snapshot.version,
            providers=sorted(providers),
            models=len(routes),
        )

    def _with_local(self, settings: ProviderSettings) -> ProviderSettings:
        """The published settings, with the local-only ones of the same provider laid over."""
        local = self._local.get(settings.name)
        if local is None or (local.type, local.hosting) != (settings.type, settings.hosting):
            return settings
        return msgspec.structs.replace(
            settings,
            auth_type=settings.auth_type or local.auth_type,
            credentials_file=settings.credentials_file or local.credentials_file,
            connect_timeout_ms=local.connect_timeout_ms,
        )

    async def is_ready(self) -> bool:
        """Serving a configuration, and (with a control plane) Redis answers."""
        if self._gateway is None:
            return False
        if self.redis is None:
            return True
        try:
            return bool(await self.redis.ping())
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return False

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        """Build this worker's clients and background tasks; close them on shutdown.

        Without `redis.url` the worker serves its own YAML file. With it, keys and
        configuration come from what the control plane publishes, and a background task
        follows its announcements.
        """
        server = server_pid_from_environment()
        if server is not None:
            exit_when_orphaned(server)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._close_providers)
            if not self.config.redis.url:
                await self.apply(snapshot_from_config(self.config))
                yield
                return
            self.redis = aioredis.Redis.from_url(
                self.config.redis.url, socket_timeout=2, socket_connect_timeout=2
            )
            stack.push_async_callback(self.redis.aclose)
            hot = RespClient(self.config.redis.url, timeout=2)
            stack.push_async_callback(hot.aclose)
            self.accounting = Accounting(hot, self.keyspace, self.prices, self.config)
            await self.accounting.start()
            keys = KeyCache(self.redis, self.keyspace)
            self.authenticator = Authenticator(keys)
            link = ControlLink(self.redis, self.keyspace, keys, self.apply)
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            follower = tasks.create_task(link.follow(), name="control-plane-follower")
            settler = tasks.create_task(self.accounting.run_settlements(), name="settlements")
            heartbeat = tasks.create_task(self.accounting.run_heartbeat(), name="heartbeat")
            try:
                yield
            finally:
                follower.cancel()
                heartbeat.cancel()
                settler.cancel()  # it sends what is still queued before it ends

    async def _close_providers(self) -> None:
        self._gateway = None
        for _, adapter in self._providers.values():
            await adapter.aclose()
        self._providers = {}
