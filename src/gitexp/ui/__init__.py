"""The dashboard: ``git exp ui`` (a local server, its JSON API, the page) and
``git exp report`` (the same page as one self-contained HTML file).

- :mod:`gitexp.ui.api`: the JSON API as functions over the services (the
  leaderboard, show, rundiff, metrics, maintenance.edit, sweeps).
- :mod:`gitexp.ui.series`: metric series downsampled on the server (min/max kept).
- :mod:`gitexp.ui.server`: the HTTP server: Host check, CSP, write token, artifacts.
- :mod:`gitexp.ui.report`: the static report.
- ``static/``: the page (``index.html``, ``app.js``, ``app.css``) and the vendored
  chart library (uPlot, MIT, with its licence).

docs/ui.md describes the page and the API.
"""

from __future__ import annotations

__all__ = ["Dashboard", "UiServer", "build_report", "serve"]

from gitexp.ui.api import Dashboard
from gitexp.ui.report import build_report
from gitexp.ui.server import UiServer, serve
