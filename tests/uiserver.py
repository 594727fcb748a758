"""The dashboard server for the UI tests: started in the test process on a free
127.0.0.1 port, stopped (and its store closed) when the test ends."""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def ui_server(repo: Path) -> Iterator[Any]:
    from gitexp.ui.server import run_in_thread, serve

    server = serve(str(repo), "127.0.0.1", 0)
    thread = run_in_thread(server)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.dashboard.close()
        thread.join(5)


def request(
    server: Any,
    path: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request to the server: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def get_json(server: Any, path: str, status: int = 200) -> Any:
    code, _, body = request(server, path)
    assert code == status, (code, body[:500])
    return json.loads(body)


def a_sweep(repo) -> str:
    """A finished sweep of four trials (the notebook API: no subprocess)."""
    import gitexp

    def fn(params, budget, run):
        for epoch in range(3):
            run.log_metric("val_acc", 1 - abs(params["lr"] - 0.01) - 0.01 * epoch, step=epoch)
        return 1 - abs(params["lr"] - 0.01)

    best = gitexp.sweep(
        fn,
        {"lr": {"values": [0.001, 0.01, 0.1]}, "depth": {"values": [1, 2]}},
        method="random",
        trials=4,
        metric="val_acc",
        experiment="sw",
        repo=repo,
    )
    assert best is not None
    return str(best["sweep"])
