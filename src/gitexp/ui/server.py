"""``git exp ui``: a local HTTP server for the page and its JSON API.

The standard library's ThreadingHTTPServer is enough: one user, on loopback,
a handful of requests a second; every answer comes from
:class:`gitexp.ui.api.Dashboard`. What the server adds is the web's safety:

- it listens on 127.0.0.1 unless told otherwise;
- a request whose ``Host`` is not the address served is refused (DNS rebinding);
- every response carries a Content-Security-Policy that allows the page's own
  scripts and nothing else (no inline script, no other origin), ``nosniff``
  and ``frame-ancestors 'none'``;
- writing requests (tags, notes) need the token the page got from the server
  with the page, in the ``X-GitExp-Token`` header, and a same-origin
  ``Origin`` when one is sent: another site cannot make them;
- artifacts are served from the CAS by the hash their run's manifest gives for
  the exact path asked, verified as they go; nothing else on disk is reachable.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import json
import secrets
import threading
from collections.abc import Callable, Generator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from gitexp.errors import GitExpError, RunConflict, RunNotFound, StoreError, UsageError
from gitexp.ui.api import Dashboard, read_verified

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "vendor/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uPlot.min.css": "text/css; charset=utf-8",
}
MAX_BODY = 64 * 1024
# the page's filters (app.js FILTERS): the first table is preloaded with them
FILTERS = (
    "where",
    "experiment",
    "status",
    "tag",
    "sweep",
    "columns",
    "group_by",
    "baseline",
    "sort",
)
PAGE_ROWS = 100
TOKEN_HEADER = "X-GitExp-Token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def static_text(name: str) -> str:
    """One of the page's files (package data)."""
    return (resources.files("gitexp.ui") / "static" / name).read_text("utf-8")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UiServer(ThreadingHTTPServer):
    """The server of one dashboard."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, dashboard: Dashboard, host: str, port: int) -> None:
        self.dashboard = dashboard
        self.token = secrets.token_urlsafe(24)
        self.bound_host = host
        self.files = {name: static_text(name).encode() for name in STATIC}
        self.index = static_text("index.html")
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
            super().__init__((host, 0), Handler)  # the port is taken: a free one

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = self.bound_host
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/"

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request's Host header names this server (no DNS rebinding)."""
        if not header:
            return False
        host, sep, port = header.rpartition(":")
        if not sep or port != str(self.port):
            return False
        host = host.strip("[]").lower()
        if host in LOOPBACK or host == self.bound_host.lower():
            return True
        if self.bound_host in ("", "0.0.0.0", "::"):  # every address of the machine
            try:
                ipaddress.ip_address(host)
                return True
            except ValueError:
                return False
        return False

    def page(self, args: dict[str, str]) -> bytes:
        """The page, with its token and the address of its first table (the
        filters of the page's own address): the browser asks for it while it
        loads the scripts."""
        pairs = [(k, args[k]) for k in FILTERS if args.get(k)]
        first = "/api/runs?" + urlencode([*pairs, ("offset", "0"), ("limit", str(PAGE_ROWS))])
        page = self.index.replace("{{TOKEN}}", self.token)
        return page.replace("{{PRELOAD}}", html.escape(first, quote=True)).encode()


def serve(repo: str = ".", host: str = "127.0.0.1", port: int = 0) -> UiServer:
    """A server for the repository at ``repo`` on ``host:port`` (a free port when
    ``port`` is 0 or taken), ready for ``serve_forever``; close it with
    ``shutdown`` and ``server_close`` (and its dashboard with ``close``)."""
    dashboard = Dashboard(repo)
    try:
        server = UiServer(dashboard, host, port)
    except BaseException:
        dashboard.close()
        raise
    try:
        dashboard.warm()  # before the address is printed: the first page is a warm one
    except BaseException:
        server.server_close()
        dashboard.close()
        raise
    return server


def status_of(exc: GitExpError) -> int:
    """The HTTP status of an error of the services."""
    if isinstance(exc, RunNotFound):
        return 404
    if isinstance(exc, UsageError):
        return 400
    if isinstance(exc, RunConflict):
        return 409
    if isinstance(exc, StoreError):
        return 500
    return 400


def _disposition(path: str) -> str:
    name = path.rsplit("/", 1)[-1] or "artifact"
    ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100]
    return f"attachment; filename=\"{ascii_name or 'artifact'}\"; filename*=UTF-8''{quote(name)}"


class Handler(BaseHTTPRequestHandler):
    """One request: refused, a file of the page, or a call of the API."""

    server: UiServer
    protocol_version = "HTTP/1.1"
    server_version = "git-exp-ui"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI owns the terminal
        return

    # ------------------------------------------------------------ responses
    def _headers(
        self, status: int, ctype: str, length: int, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self._headers(status, ctype, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: int = 200) -> None:
        body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        self._send(status, body.encode(), "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message[:2000], "status": status}, status)

    # -------------------------------------------------------------- routing
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _handle(self, route: Callable[[list[str], dict[str, str]], None]) -> None:
        if not self.server.host_allowed(self.headers.get("Host")):
            self._error(403, "this server answers only to the address it serves (Host refused)")
            return
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        args = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            route(parts, args)
        except GitExpError as exc:
            self._error(status_of(exc), str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _get(self, parts: list[str], args: dict[str, str]) -> None:
        dash = self.server.dashboard
        if parts in ([""], ["index.html"]):
            self._send(200, self.server.page(args), "text/html; charset=utf-8")
            return
        if parts and parts[0] == "static":
            name = "/".join(parts[1:])
            if name in STATIC:
                self._send(200, self.server.files[name], STATIC[name])
                return
            self._error(404, "not found")
            return
        if not parts or parts[0] != "api":
            self._error(404, "not found")
            return
        rest = parts[1:]
        if rest == ["runs"]:
            self._json(dash.runs(args))
        elif rest == ["facets"]:
            self._json(dash.facets())
        elif rest == ["metrics"]:
            runs = [r for r in args.get("runs", "").split(",") if r]
            keys = [k for k in args.get("keys", "").split(",") if k] or None
            points = args.get("max_points")
            if points is not None and not points.isdigit():
                raise UsageError("max_points must be a whole number")
            self._json(dash.metrics(runs, keys, int(points) if points else None))
        elif rest == ["diff"]:
            self._json(dash.diff(args.get("a", ""), args.get("b", "")))
        elif rest == ["sweeps"]:
            self._json({"sweeps": dash.sweeps()})
        elif len(rest) == 2 and rest[0] == "sweeps":
            self._json(dash.sweep(rest[1]))
        elif len(rest) == 2 and rest[0] == "runs":
            self._json(dash.run(rest[1]))
        elif len(rest) >= 4 and rest[0] == "runs" and rest[2] == "artifacts":
            self._artifact(rest[1], "/".join(rest[3:]), args.get("head"))
        else:
            self._error(404, "no such API path")

    def _artifact(self, run: str, path: str, head: str | None) -> None:
        dash = self.server.dashboard
        art = dash.artifact(run, path)
        if head is not None and not head.isdigit():
            raise UsageError("head must be a whole number of bytes")
        limit = min(int(head), art.size) if head is not None else None
        chunks = read_verified(dash.store, art, limit)
        try:
            self._stream(art, limit, chunks)
        finally:
            chunks.close()

    def _stream(self, art: Any, limit: int | None, chunks: Generator[bytes, None, None]) -> None:
        first = next(chunks, b"")  # a small object is verified before anything is sent
        length = art.size if limit is None else len(first)
        extra = {
            "Content-Disposition": _disposition(art.path),
            "X-GitExp-Blake3": art.blake3,
        }
        self._headers(200, "application/octet-stream", length, extra)
        if self.command == "HEAD":
            return
        self.wfile.write(first)
        try:
            for data in chunks:
                self.wfile.write(data)
        except StoreError:  # damaged: the response ends short, the client sees it incomplete
            self.close_connection = True

    def _post(self, parts: list[str], args: dict[str, str]) -> None:
        if self.headers.get(TOKEN_HEADER) != self.server.token:
            self._error(403, "writing needs the page's token (no cross-site writes)")
            return
        origin = self.headers.get("Origin")
        if origin is not None and not self.server.host_allowed(urlsplit(origin).netloc):
            self._error(403, "cross-origin write refused")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._error(413, "request body too large")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise UsageError("the request body must be JSON") from None
        if not isinstance(body, dict):
            raise UsageError("the request body must be a JSON object")
        rest = parts[1:] if parts and parts[0] == "api" else []
        dash = self.server.dashboard
        if len(rest) == 3 and rest[0] == "runs" and rest[2] == "tags":
            add, remove = body.get("add") or [], body.get("remove") or []
            if not all(isinstance(t, str) for t in [*add, *remove]):
                raise UsageError("tags must be strings")
            self._json(dash.edit(rest[1], add_tags=add, remove_tags=remove))
        elif len(rest) == 3 and rest[0] == "runs" and rest[2] == "notes":
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                raise UsageError("a note needs text")
            self._json(dash.edit(rest[1], note=text))
        else:
            self._error(404, "no such API path")


def run_in_thread(server: UiServer) -> threading.Thread:
    """Serve in a daemon thread (for notebooks and tests); stop with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, name="gitexp-ui", daemon=True)
    thread.start()
    return thread
