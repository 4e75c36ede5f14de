"""The live experiment dashboard: `GET /ui` and its script and style sheet.

The page and its assets are public and hold no data: the browser script asks for the read
token (or takes it from the URL fragment `#token=...`, which browsers never send to the
server), keeps it in `sessionStorage` and reads `GET /v1/experiments` and
`GET /v1/experiments/{id}/results` with it, polling every few seconds. It calls no admin
route. The assets ship inside the package (`abrec/serve/ui_static`, package data); nothing
is loaded from elsewhere, and the page's Content-Security-Policy (`CSP_UI`) allows only
same-origin scripts, styles and requests. See docs/operations.md ("The dashboard").
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from abrec.serve.security import CSP_UI

router = APIRouter(tags=["ui"], include_in_schema=False)

#: The files the dashboard serves, with their media types (nothing else is reachable).
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


@cache
def asset(name: str) -> bytes:
    """The bundled file `name` (one of `ASSETS`), read once from the package."""
    if name not in ASSETS:
        raise KeyError(f"{name!r} is not a dashboard asset; one of {sorted(ASSETS)}")
    return (resources.files("abrec.serve") / "ui_static" / name).read_bytes()


def _file(name: str) -> Response:
    headers = {"Content-Security-Policy": CSP_UI} if name == "index.html" else None
    return Response(asset(name), media_type=ASSETS[name], headers=headers)


@router.get("/ui")
async def page() -> Response:
    """The dashboard page."""
    return _file("index.html")


@router.get("/ui/")
async def page_slash() -> RedirectResponse:
    """`/ui/` -> `/ui` (the page's relative links assume `/ui`)."""
    return RedirectResponse("../ui", status_code=308)


@router.get("/ui/app.js")
async def script() -> Response:
    """The dashboard's script."""
    return _file("app.js")


@router.get("/ui/app.css")
async def style() -> Response:
    """The dashboard's style sheet."""
    return _file("app.css")
