"""`gandalf`: the command line, and the composition root of the processes it starts.

gandalf serve --config PATH    the data plane: Granian with server.workers workers
gandalf run --config PATH      everything on one machine (today: the data plane)
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

from app.config import CONFIG_ENV_VAR, Config, ConfigError, load_config
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
        ("serve", "run the data plane (Granian workers)"),
        ("run", "run everything on this machine"),
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
    return serve(args.config)


if __name__ == "__main__":
    raise SystemExit(main())
