"""The litestar app factory every listener uses, so conventions live in one place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin

from cynode import __version__
from cynode.http.health import Readiness, health_routes
from cynode.http.middleware import EdgeMiddleware
from cynode.http.problems import EXCEPTION_HANDLERS

MiB = 1024 * 1024


def build_app(
    title: str,
    route_handlers: Sequence[Any],
    *,
    readiness: Readiness,
    state: dict[str, Any] | None = None,
    max_body_bytes: int = 1 * MiB,
    accepting: Callable[[], bool] = lambda: True,
    on_startup: Sequence[Callable[..., Any]] = (),
    on_shutdown: Sequence[Callable[..., Any]] = (),
) -> EdgeMiddleware:
    app = Litestar(
        route_handlers=[*health_routes(readiness), *route_handlers],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title=title, version=__version__, path="/schema",
            render_plugins=[JsonRenderPlugin(), SwaggerRenderPlugin()],
        ),
        request_max_body_size=max_body_bytes,
        state=None,
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        debug=False,
        logging_config=None,
    )
    if state:
        for k, v in state.items():
            app.state[k] = v
    return EdgeMiddleware(app, listener=title, accepting=accepting)
