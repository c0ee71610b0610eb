"""The supervisor: the control plane's process and the composition root of `gandalf run`.

It owns SQLite, seeds it from the configuration, publishes keys and configuration to Redis,
serves the admin API, and (for `gandalf run`) starts the embedded Redis and the data plane,
restarting a child that dies or stopping everything with a clear message when it keeps dying:
never a half-alive gateway. SIGTERM/SIGINT drain the data plane, then stop the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from pathlib import Path

import redis.asyncio as aioredis
import structlog
from granian.constants import HTTPModes, Interfaces
from granian.server.embed import Server as EmbeddedServer

from app.config import (
    Config,
    admin_key_from_environment,
    process_environment,
    set_worker_environment,
)
from app.keyspace import Keyspace
from app.resp import REDIS_ERRORS
from storage.db import Database
from storage.seed import seed_admin_key, seed_from_config
from workers.admin.app import create_admin_app
from workers.embedded_redis import EmbeddedRedis
from workers.processes import ChildFailed, DataPlaneProcess
from workers.publisher import Publisher
from workers.quota import QuotaSync
from workers.recorder import Recorder
from workers.retention import keep_pruning
from workers.snapshots import load_identities, load_snapshot

log = structlog.get_logger("gandalf.supervisor")

RECORDER_DRAIN_S = 5.0
"""At stop, how long the recorder may take to store what the drained workers sent last."""


class StopRequested(Exception):
    """SIGTERM or SIGINT arrived."""


class Supervisor:
    def __init__(self, config: Config, config_path: Path | None, *, data_plane: bool) -> None:
        self.config = config
        self.config_path = config_path.resolve() if config_path is not None else None
        self.with_data_plane = data_plane

    async def run(self) -> int:
        """Run until a signal (exit 0) or a child that keeps dying (exit 1)."""
        workdir = Path(tempfile.mkdtemp(prefix="gandalf-"))
        embedded: EmbeddedRedis | None = None
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(shutil.rmtree, workdir, True)
            redis_url = self.config.redis.url
            if not redis_url:
                embedded = EmbeddedRedis(workdir)
                redis_url = embedded.start()  # main thread: see workers/lifetime.py
                stack.callback(embedded.stop)
                log.info("embedded redis started", socket=str(embedded.socket))
            db = await Database.open(self.config.database.dsn)
            stack.push_async_callback(db.aclose)
            await self._seed(db)
            client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
            stack.push_async_callback(client.aclose)
            keyspace = Keyspace(self.config.redis.key_prefix)
            publisher = Publisher(
                client,
                keyspace,
                lambda: db.read(load_identities),
                lambda: db.read(load_snapshot),
            )
            try:
                await publisher.publish_all()
            except REDIS_ERRORS as exc:  # `watch` publishes what was never published
                log.warning(
                    "redis unavailable at start; will publish when it answers", error=str(exc)
                )
            recorder = Recorder(client, keyspace, db, quota=QuotaSync(client, keyspace, db))
            server = self._admin_server(db, publisher, client, keyspace)
            data_plane = self._data_plane(redis_url)
            code = 0
            try:
                await self._serve(server, publisher, recorder, data_plane, embedded, db=db)
            except* StopRequested:
                pass
            except* ChildFailed as failed:
                for child in failed.exceptions:
                    log.error(str(child))
                code = 1
            finally:
                if data_plane is not None:
                    await data_plane.stop()
                server.stop()  # type: ignore[no-untyped-call]
        log.info("stopped", code=code)
        return code

    async def _seed(self, db: Database) -> None:
        config = self.config
        report = await db.write(seed_from_config, config.providers, config.routes, config.keys)
        log.info("database seeded from the configuration", report=str(report))
        admin_key = admin_key_from_environment()
        if admin_key:
            await db.write(seed_admin_key, admin_key)

    def _admin_server(
        self, db: Database, publisher: Publisher, client: aioredis.Redis, keyspace: Keyspace
    ) -> EmbeddedServer:
        server = self.config.server
        host, _, port = server.admin_addr.rpartition(":")
        app = create_admin_app(db, publisher, client, keyspace)
        return EmbeddedServer(
            app,
            address=host or "127.0.0.1",
            port=int(port),
            interface=Interfaces.ASGI,
            http=HTTPModes.http1,
            websockets=False,
            log_access=False,
        )

    def _data_plane(self, redis_url: str) -> DataPlaneProcess | None:
        if not self.with_data_plane:
            return None
        server = self.config.server
        control_url = server.control_url or f"http://{server.admin_addr}"
        env = set_worker_environment(
            process_environment(), self.config_path, redis_url, control_url
        )
        return DataPlaneProcess(self.config_path, env, server.shutdown_timeout)

    async def _serve(
        self,
        server: EmbeddedServer,
        publisher: Publisher,
        recorder: Recorder,
        data_plane: DataPlaneProcess | None,
        embedded: EmbeddedRedis | None,
        *,
        db: Database,
    ) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with asyncio.TaskGroup() as tasks:
            admin = tasks.create_task(server.serve(), name="admin-api")
            tasks.create_task(publisher.watch(), name="publisher")
            tasks.create_task(recorder.run(), name="usage-recorder")
            retention = self.config.database.usage_retention_days
            tasks.create_task(keep_pruning(db, retention), name="usage-retention")
            if embedded is not None:
                tasks.create_task(_watch_embedded(embedded), name="embedded-redis")
            if data_plane is not None:
                data_plane.start()
                tasks.create_task(data_plane.watch(), name="data-plane")
            await stop.wait()
            log.info("stopping: draining the data plane")
            if data_plane is not None:
                await data_plane.stop()
            # the workers' last usage events: an embedded Redis forgets them when it stops
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECORDER_DRAIN_S):
                    await recorder.drain()
            server.stop()  # type: ignore[no-untyped-call]
            await admin
            raise StopRequested


async def _watch_embedded(embedded: EmbeddedRedis, interval: float = 0.5) -> None:
    """The embedded Redis is restarted if it dies; the publisher then republishes."""
    while True:
        await asyncio.sleep(interval)
        if not embedded.alive():
            log.error("embedded redis exited; restarting it")
            try:
                embedded.start()  # main thread: see workers/lifetime.py
            except RuntimeError as exc:
                raise ChildFailed(f"the embedded redis cannot be restarted: {exc}") from exc
