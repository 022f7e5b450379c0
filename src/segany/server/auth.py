"""The project token: an annotation server bound beyond localhost answers only requests that
carry it (a header, or the cookie set once the page has been opened with ``?token=…`` or the
token typed into the form this gate shows), like Jupyter's token."""

from __future__ import annotations

import hashlib
import html
import secrets
from urllib.parse import urlencode

from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "x-segany-token"
TOKEN_QUERY = "token"
COOKIE_DAYS = 30
NEEDS_TOKEN = (
    "this server needs the project token: open the address `segany annotate` printed "
    f"(…?{TOKEN_QUERY}=…), or send the token in the {TOKEN_HEADER} header"
)
LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>segany: token</title>
<style>body{{font-family:system-ui,sans-serif;margin:3rem}}input{{font:inherit;width:24em}}</style>
<h1>segany annotate</h1><p>{message}</p>
<form method="get" action="{action}"><input name="token" type="password" autofocus
 placeholder="the project token" aria-label="project token"> <button>Open</button></form>"""


def required_token(host: str, token: str) -> str | None:
    """The token a server bound to ``host`` asks for: none on localhost."""
    return None if host in LOCAL_HOSTS else token


def cookie_name(token: str) -> str:
    """Named after the token, so servers of two projects on one host keep their own cookie."""
    return "segany_token_" + hashlib.sha256(token.encode()).hexdigest()[:12]


class TokenGate:
    """ASGI middleware: every HTTP request must carry ``token``; 401 otherwise (JSON for the
    API, a form asking for the token for pages)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie = cookie_name(token)

    def _valid(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = HTTPConnection(scope)
        if self._valid(request.headers.get(TOKEN_HEADER)) or self._valid(
            request.cookies.get(self.cookie)
        ):
            await self.app(scope, receive, send)
            return
        await self._refuse_or_log_in(request)(scope, receive, send)

    def _refuse_or_log_in(self, request: HTTPConnection) -> Response:
        offered = request.query_params.get(TOKEN_QUERY)
        if offered is not None and self._valid(offered):
            # The token leaves the address bar at once; the cookie carries it from now on.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_QUERY]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, 303)
            response.set_cookie(
                self.cookie,
                self.token.decode(),
                max_age=COOKIE_DAYS * 86400,
                httponly=True,
                samesite="strict",
            )
            return response
        message = "wrong project token" if offered is not None else NEEDS_TOKEN
        if request.url.path.startswith("/api/") or request.scope.get("method") != "GET":
            return JSONResponse({"detail": message}, 401)
        page = LOGIN_PAGE.format(message=html.escape(message), action=html.escape(request.url.path))
        return HTMLResponse(page, 401)
