"""The data plane's HTTP layer: Litestar app, hot-path ASGI handlers, auth, errors."""
