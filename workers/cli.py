"""`gandalf`: the command line, and the composition root of the processes it starts.

gandalf serve --config PATH    the data plane: Granian with server.workers workers
gandalf run --config PATH      everything on one machine: supervisor, embedded Redis, data plane
gandalf supervisor --config PATH   the control plane alone (Kubernetes)
gandalf check --config PATH    validate a configuration file and exit
gandalf --version
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import structlog

from app.config import (
    CONFIG_ENV_VAR,
    SERVER_PID_ENV_VAR,
    Config,
    ConfigError,
    load_config,
    supervisor_pid_from_environment,
)
from app.telemetry.logging import configure_logging

APP_TARGET = "app.server.factory:create_app"


def package_version() -> str:
    try:
        return version("gandalf-gateway")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"


def _load(path: str | None) -> tuple[Config, list[str]]:
    try:
        return load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"gandalf: invalid configuration\n{exc}\n")
        raise SystemExit(2) from exc


def serve(path: str | None) -> int:
    """Start Granian on the worker factory; returns when it has shut down."""
    from granian import Granian  # noqa: PLC0415 - heavy import only when serving
    from granian.constants import HTTPModes, Interfaces, Loops  # noqa: PLC0415

    config, warnings = _load(path)
    configure_logging(config.server.log_format, config.server.log_level)
    log = structlog.get_logger("gandalf")
    for warning in warnings:
        log.warning(warning)
    if path is not None:
        os.environ[CONFIG_ENV_VAR] = str(Path(path).resolve())  # the workers read it
    supervisor = supervisor_pid_from_environment()
    if supervisor is not None:
        from workers.lifetime import stop_when_orphaned  # noqa: PLC0415

        stop_when_orphaned(supervisor)
    # Granian can respawn a worker while it shuts down; that worker outlives it, orphaned,
    # unless it knows whose child it must be (app/server/state.py watches for this)
    os.environ[SERVER_PID_ENV_VAR] = str(os.getpid())
    server = config.server
    log.info(
        "starting data plane",
        version=package_version(),
        addr=f"{server.host}:{server.port}",
        workers=server.worker_count,
    )
    Granian(
        APP_TARGET,
        factory=True,
        address=server.host,
        port=server.port,
        interface=Interfaces.ASGI,
        workers=server.worker_count,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        backlog=2048,
        log_enabled=True,
        log_access=False,
        respawn_failed_workers=True,
        respawn_interval=0.5,
        workers_kill_timeout=max(1, round(server.shutdown_timeout)),
    ).serve()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gandalf", description="Gandalf LLM gateway")
    parser.add_argument("--version", action="version", version=f"gandalf {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("run", "run everything on this machine"),
        ("serve", "run the data plane (Granian workers)"),
        ("supervisor", "run the control plane alone"),
        ("check", "validate a configuration file"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--config", "-c", default=None, help="YAML file (default: the embedded default)"
        )
    args = parser.parse_args(argv)
    if args.command == "check":
        _, warnings = _load(args.config)
        for warning in warnings:
            sys.stderr.write(f"warning: {warning}\n")
        sys.stdout.write("configuration is valid\n")
        return 0
    if args.command == "serve":
        return serve(args.config)
    return supervise(args.config, data_plane=args.command == "run")


def supervise(path: str | None, *, data_plane: bool) -> int:
    """The supervisor: control plane, plus embedded Redis and data plane for `run`."""
    import asyncio  # noqa: PLC0415

    from workers.supervisor import Supervisor  # noqa: PLC0415 - control plane only

    config, warnings = _load(path)
    configure_logging(config.server.log_format, config.server.log_level)
    log = structlog.get_logger("gandalf")
    for warning in warnings:
        log.warning(warning)
    if not data_plane and not config.redis.url:
        log.error("gandalf supervisor needs redis.url (the embedded Redis is for gandalf run)")
        return 2
    log.info("starting supervisor", version=package_version(), data_plane=data_plane)
    supervisor = Supervisor(config, Path(path) if path else None, data_plane=data_plane)
    return asyncio.run(supervisor.run())


if __name__ == "__main__":
    raise SystemExit(main())
