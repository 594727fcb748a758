"""The dashboard in a real browser: Debian's chromium driven by Playwright.

One browser for the module; each test starts its own server on a free
127.0.0.1 port. What a user does: sort, filter (and see an error), select two
runs and read the diff, select five and see five curves, brush the parallel
coordinates, open a run page (tag it, read its log), watch a run that is still
logging, open the static report from file:// with every request blocked; a
run named like an HTML tag shows as text. A failing test saves a screenshot
(in $GITEXP_SCREENSHOTS, default the test's tmp directory).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import finished_run
from servers import require
from uiserver import a_sweep, ui_server

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None, "the playwright package")
    require(os.path.exists(CHROMIUM) and shutil.which(CHROMIUM) is not None, CHROMIUM)
    assert sync_playwright is not None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A page of the browser, recording dialogs (an XSS would open one) and errors."""

    def __init__(self, browser, tmp_path: Path, name: str) -> None:
        self.ctx = browser.new_context(viewport={"width": 1300, "height": 900})
        self.page = self.ctx.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type == "error" else None,
        )
        self.shots = Path(os.environ.get("GITEXP_SCREENSHOTS") or tmp_path)
        self.name = name

    def close(self, failed: bool) -> None:
        if failed:
            self.shots.mkdir(parents=True, exist_ok=True)
            shot = self.shots / f"{self.name}.png"
            with contextlib.suppress(Exception):
                self.page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failed page: {shot}", file=sys.stderr)
        self.ctx.close()


@pytest.fixture
def page(browser, tmp_path, request):
    p = Page(browser, tmp_path, request.node.name)
    failed_before = request.session.testsfailed
    try:
        yield p
    finally:
        # the call's report is logged before teardown: a failure has been counted
        p.close(request.session.testsfailed > failed_before or bool(p.dialogs))
    assert not p.dialogs, p.dialogs


def record_runs(repo: Path) -> list[str]:
    import gitexp

    refs = []
    for i, lr in enumerate([0.1, 0.03, 0.01, 0.003, 0.001, 0.0003]):
        with gitexp.start_run(
            experiment="mnist",
            name=HOSTILE if i == 0 else f"lr{lr}",
            params={"lr": lr, "opt": "adam" if i % 2 else "sgd"},
            command=["train"],
        ) as run:
            for step in range(100):
                run.log_metrics(
                    {"loss": math.exp(-lr * step * 10) + 0.01 * i, "acc": 0.9 - lr * (i + 1)},
                    step=step,
                )
            refs.append(run.ref)
    return refs


def column(pg, col: str) -> list[str]:
    return pg.locator(f"#runs tbody td[data-col='{col}']").all_text_contents()


def test_sort_filter_select_diff_curves_and_parallel_coordinates(repo, page, gx, monkeypatch):
    from playwright.sync_api import expect

    from gitexp.ui.api import Dashboard

    refs = record_runs(repo)
    gx.ok("tag", refs[2].removeprefix("refs/experiments/"), "best")
    asked: list[dict] = []
    runs = Dashboard.runs
    monkeypatch.setattr(Dashboard, "runs", lambda self, a, *r: asked.append(a) or runs(self, a, *r))
    pg = page.page
    with ui_server(repo) as srv:
        asked.clear()
        pg.goto(srv.url)
        pg.wait_for_selector("#runs[data-state=ready]")
        assert pg.locator("#runs tbody tr").count() == 6
        # the first table was preloaded while the scripts loaded: asked for once
        assert asked == [{"offset": "0", "limit": "100"}]
        # the hostile name is text: shown as typed, no element made of it
        assert HOSTILE in column(pg, "name")
        assert pg.locator("#runs img").count() == 0
        # sort by a metric: click its header, ascending then descending
        pg.click("#runs th[data-col='metrics.acc']")
        pg.wait_for_selector("#runs th[data-col='metrics.acc'] .arrow")
        asc = [float(v) for v in column(pg, "metrics.acc")]
        assert asc == sorted(asc)
        pg.click("#runs th[data-col='metrics.acc']")
        pg.wait_for_selector("#runs th[data-col='metrics.acc'] .arrow:has-text('▼')")
        desc = [float(v) for v in column(pg, "metrics.acc")]
        assert desc == sorted(asc, reverse=True)
        assert pg.url.endswith("?sort=-metrics.acc")  # a link to this very table
        # filter with the --where language; a bad expression shows the CLI's message inline
        pg.fill("#where", "params.lr < 0.005")
        pg.click("#apply")
        expect(pg.locator("#runs tbody tr")).to_have_count(3)
        pg.fill("#where", "params.lr <")
        pg.click("#apply")
        expect(pg.locator("#error")).not_to_be_empty()
        message = pg.text_content("#error")
        cli = gx("log", "--where", "params.lr <")
        assert message and message in cli.stderr
        pg.fill("#where", "")
        pg.click("#apply")
        expect(pg.locator("#runs tbody tr")).to_have_count(6)
        assert pg.text_content("#error") == ""
        # group by a param: one row per value, with runs, mean, std and count of each metric
        pg.fill("#group-by", "opt")
        pg.click("#apply")
        expect(pg.locator("#runs tbody tr")).to_have_count(2)
        for col in ("runs", "mean(metrics.acc)", "std(metrics.acc)", "count(metrics.acc)"):
            assert pg.locator(f"#runs th[data-col='{col}']").count() == 1, col
        assert sorted(column(pg, "runs")) == ["3", "3"]
        assert "group_by=opt" in pg.url  # the filters are in the address
        # a baseline: a delta column against it, zero on its own row
        pg.fill("#group-by", "")
        pg.fill("#baseline", "tag:" + "best")
        pg.click("#apply")
        expect(pg.locator("#runs th[data-col='delta(metrics.acc)']")).to_have_count(1)
        deltas = [float(v) for v in column(pg, "delta(metrics.acc)")]
        assert 0.0 in deltas and len(set(deltas)) == 6
        pg.fill("#baseline", "")
        pg.click("#apply")
        expect(pg.locator("#runs th[data-col='delta(metrics.acc)']")).to_have_count(0)
        # two runs: the diff
        boxes = pg.locator("#runs tbody input[type=checkbox]")
        boxes.nth(0).check()
        boxes.nth(1).check()
        pg.wait_for_selector("#diff:not([hidden]) table.diff-params")
        assert "lr" in pg.locator("#diff table.diff-params").text_content()
        assert pg.locator("#diff .diff-metrics tr").count() == 3  # header, acc, loss
        # five runs: five curves on one chart, drawn on its canvas
        for i in range(2, 5):
            boxes.nth(i).check()
        pg.wait_for_selector("#diff", state="hidden")
        pg.wait_for_selector(".chart[data-series='5']")
        drawn = pg.evaluate(
            """() => { const c = document.querySelector('.chart canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
        )
        assert drawn > 1000
        assert pg.locator(".chart .u-legend .u-series").count() == 6  # x + five runs
        # x as time since each series began, log y, smoothing: redrawn so
        pg.select_option("#xaxis", "relative")
        pg.check("#logy")
        pg.wait_for_selector(".chart[data-x='relative'][data-logy='true'][data-series='5']")
        assert pg.get_attribute(".chart", "data-x0") == "0"
        pg.select_option("#xaxis", "step")
        pg.uncheck("#logy")
        pg.wait_for_selector(".chart[data-x='step'][data-logy='false']")
        # parallel coordinates of the five, brushed on the lr axis
        pg.wait_for_selector("#pc-svg")
        assert pg.locator("#pc-svg polyline").count() == 5
        axis = pg.locator("#pc-svg g.axis[data-col='params.lr'] rect.pc-hit")
        axis.scroll_into_view_if_needed()
        hit = axis.bounding_box()
        assert hit is not None
        x = hit["x"] + hit["width"] / 2
        pg.mouse.move(x, hit["y"] + hit["height"] * 0.7)
        pg.mouse.down()
        pg.mouse.move(x, hit["y"] + hit["height"] - 1, steps=5)
        pg.mouse.up()
        inside = int(pg.get_attribute("#pc-svg", "data-in") or "0")
        assert 0 < inside < 5
        assert pg.locator("#pc-svg polyline.dim").count() == 5 - inside
        assert pg.locator("#scatter-svg circle").count() == 5
    # the one error: the API's 400 for the bad expression, shown above
    assert [e for e in page.errors if "status of 400" not in e] == [], page.errors


def test_an_answer_that_comes_late_never_draws_over_a_newer_selection(repo, page):
    """The server answers in any order: the curves of four runs, held back until
    the fifth run's curves are drawn, must not replace them (nor a stale diff
    of two runs show once three are selected)."""
    from urllib.parse import parse_qs, urlparse

    record_runs(repo)
    pg = page.page
    held: list = []
    hold = {"metrics": 4, "diff": 2}  # hold the answer for this many selected runs

    def route(r):
        query = parse_qs(urlparse(r.request.url).query)
        runs = len(query.get("runs", [""])[0].split(",")) if "runs" in query else 2
        what = "metrics" if "/api/metrics" in r.request.url else "diff"
        if hold.get(what) == runs:
            held.append(r)
        else:
            r.continue_()

    with ui_server(repo) as srv:
        pg.goto(srv.url)
        pg.wait_for_selector("#runs[data-state=ready]")
        pg.route("**/api/metrics?*", route)
        pg.route("**/api/diff?*", route)
        boxes = pg.locator("#runs tbody input[type=checkbox]")
        for i in range(3):
            boxes.nth(i).check()
        pg.wait_for_selector(".chart[data-series='3']")
        boxes.nth(3).check()  # its curves (and the diff of two, earlier) are held
        boxes.nth(4).check()
        pg.wait_for_selector(".chart[data-series='5']")
        assert [
            len(parse_qs(urlparse(r.request.url).query)["runs"][0].split(","))
            for r in held
            if "/api/metrics" in r.request.url
        ] == [4]
        with pg.expect_response(lambda resp: "/api/metrics" in resp.url):
            for r in held:
                r.continue_()
        pg.wait_for_timeout(300)  # the late answers had their turn to draw
        assert pg.get_attribute(".chart", "data-series") == "5"
        assert pg.locator(".chart").count() == 1
        assert pg.is_hidden("#diff")
    assert page.errors == [], page.errors


def test_run_page_with_curves_artifacts_logs_and_a_tag(repo, page, gx):
    import gitexp

    with gitexp.start_run(experiment="cv", name=SCRIPT, params={"lr": 0.1}, command=["x"]) as run:
        for step in range(3000):  # more than the run page asks for: downsampled, with a band
            run.log_metric("loss", 1 / (step + 1) + 0.1 * (step % 7), step=step)
        (repo / "out.log").write_text(f"epoch 1 {SCRIPT}\n")
        run.log_artifact(repo / "out.log", name="logs/stdout", role="log")
        (repo / "model.bin").write_bytes(b"\0" * 4096)
        run.log_artifact(repo / "model.bin")
        ref = run.ref
    short = ref.removeprefix("refs/experiments/")
    pg = page.page
    with ui_server(repo) as srv:
        pg.goto(srv.url + "#run/" + quote(short, safe=""))
        pg.wait_for_selector("#run-view[data-state=ready]")
        assert pg.text_content("#run-title") == SCRIPT
        assert pg.locator("#run-view script").count() == 0
        assert "0.1" in pg.locator(".run-params").text_content()
        pg.wait_for_selector("#run-curves .chart[data-key='loss'][data-bands='1']")
        # the band's edges are not in the legend, which names the one run
        legend = pg.locator("#run-curves .u-legend .u-series")
        assert legend.count() == 4
        assert [legend.nth(i).is_visible() for i in range(4)] == [True, True, False, False]
        pg.wait_for_selector("pre.log")
        assert pg.text_content("pre.log") == f"epoch 1 {SCRIPT}\n"
        rows = pg.locator("#run-artifacts tr").all_text_contents()
        assert any("model.bin" in r and "4.0 KiB" in r for r in rows)
        href = pg.get_attribute("#run-artifacts a[download]", "href")
        got = pg.evaluate(
            "async (h) => { const r = await fetch(h); return (await r.arrayBuffer()).byteLength; }",
            href,
        )
        assert got in (4096, len(f"epoch 1 {SCRIPT}\n"))
        pg.fill("#tag-form input", "reviewed")
        pg.click("#tag-form button")
        pg.wait_for_selector("#run-tags li:has-text('reviewed')")
        pg.fill("#note-form input", "checked by hand")
        pg.click("#note-form button")
        pg.wait_for_selector("#run-notes li:has-text('checked by hand')")
    info = json.loads(gx.ok("show", "--json", ref))["info"]
    assert "reviewed" in info["tags"] and info["notes"][-1]["text"] == "checked by hand"
    assert not page.errors, page.errors


def test_a_run_still_logging_appears_and_updates_without_a_reload(repo, page, monkeypatch):
    import gitexp
    import gitexp.tracking as tracking

    # a run an hour old commits minutes apart: what it spools must show before that
    monkeypatch.setattr(tracking, "MIN_CHECKPOINT", 3600.0)
    record_runs(repo)
    pg = page.page
    with ui_server(repo) as srv:
        pg.goto(srv.url)
        pg.wait_for_selector("#runs[data-state=ready]")
        run = gitexp.start_run(experiment="live", name="still-going", command=["x"])
        try:
            for step in range(10):
                run.log_metric("loss", 1.0 - step / 100, step=step)
            run.checkpoint()
            row = "#runs tbody tr:has-text('still-going')"
            pg.wait_for_selector(row, timeout=10_000)
            assert "running" in pg.locator(row).text_content()
            sha = run.sha
            run.log_metric("loss", 0.123, step=10)
            run.flush()  # spooled, not committed: the page reads the spool of a live run
            pg.wait_for_selector(
                f"{row} td[data-col='metrics.loss']:has-text('0.123')", timeout=10_000
            )
            assert run.sha == sha  # no checkpoint meanwhile
            # its run page follows it too: the curve grows without a reload
            pg.click(f"{row} td[data-col='id'] a")
            pg.wait_for_selector("#run-curves .chart[data-key='loss']")
            points = "#run-view .run-metrics tr:has-text('loss')"
            assert "11" in pg.text_content(points)
            run.log_metric("loss", 0.1, step=11)
            run.flush()
            pg.wait_for_selector(f"{points}:has-text('12')", timeout=10_000)
            pg.click("#run-view a[href='#']")
        finally:
            run.finish()
        pg.wait_for_selector(f"{row} td[data-col='status']:has-text('finished')", timeout=10_000)
    assert not page.errors, page.errors


def test_the_report_renders_from_file_with_every_request_blocked(repo, page, gx, tmp_path):
    record_runs(repo)
    out = tmp_path / "report.html"
    gx.ok("report", "-e", "mnist", "-o", str(out))
    pg = page.page
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.route(
        "**/*",
        lambda route: (
            route.abort() if not route.request.url.startswith("file:") else route.continue_()
        ),
    )
    pg.goto(out.as_uri())
    pg.wait_for_selector("#runs[data-state=ready]")
    assert pg.locator("#runs tbody tr").count() == 6
    assert HOSTILE in column(pg, "name")
    assert pg.locator("#runs img").count() == 0
    pg.wait_for_selector(".chart[data-key='acc']")
    assert pg.locator("#pc-svg polyline").count() == 6
    assert [u for u in requests if not u.startswith("file:")] == []
    assert not page.errors, page.errors


def hostile_runs(repo: Path) -> list[str]:
    """Two runs with a string meant as HTML in every place a run holds one."""
    import gitexp

    refs = []
    for i in range(2):
        (repo / "data.csv").write_text(f"{i}\n")
        with gitexp.start_run(
            experiment="xss",
            name=f"{HOSTILE}{i}",
            params={"lr": 0.1 * (i + 1), HOSTILE: f"{SCRIPT}{i}"},
            command=["x"],
        ) as run:
            run.log_input(repo / "data.csv")
            for step in range(30):
                run.log_metrics({HOSTILE: step * (i + 1), "loss": 1 / (step + 1)}, step=step)
            run.set_tags(HOSTILE, f"t{i}")
            run.note(SCRIPT)
            log = repo / "out.log"
            log.write_text(f"line {SCRIPT} {HOSTILE}\n")
            run.log_artifact(log, name=f"logs/{HOSTILE}", role="log")
            refs.append(run.ref)
    return refs


NO_MARKUP = """() => ({
    img: document.querySelectorAll('img, iframe, object, embed').length,
    scripts: [...document.scripts].filter((s) => s.type !== 'application/json').length,
    text: document.body.innerText,
})"""


def test_strings_from_runs_are_text_everywhere_in_the_page_and_the_report(repo, page, gx, tmp_path):
    refs = hostile_runs(repo)
    pg = page.page
    with ui_server(repo) as srv:
        pg.goto(srv.url)
        pg.wait_for_selector("#runs[data-state=ready]")
        boxes = pg.locator("#runs tbody input[type=checkbox]")
        boxes.nth(0).check()
        boxes.nth(1).check()
        pg.wait_for_selector("#diff:not([hidden]) table.diff-params")
        pg.select_option("#metric-keys", [HOSTILE])
        pg.wait_for_selector(f".chart[data-key='{HOSTILE}'][data-series='2']")
        pg.wait_for_selector("#pc-svg")
        seen = pg.evaluate(NO_MARKUP)
        assert seen["img"] == 0 and seen["scripts"] == 2
        text = seen["text"]
        for shown in (f"{HOSTILE}0", f"{SCRIPT}1", "DATA CHANGED"):
            assert shown in text, shown
        assert HOSTILE in pg.text_content("#runs thead")  # the param and metric columns
        assert HOSTILE in pg.text_content(".chart h4") + pg.text_content(".chart .u-legend")
        assert HOSTILE[:20] in pg.text_content("#pc-svg")  # axis labels are clipped
        assert pg.locator("#pc-svg foreignObject, #scatter-svg foreignObject").count() == 0
        pg.goto(srv.url + "#run/" + quote(refs[0].removeprefix("refs/experiments/"), safe=""))
        pg.wait_for_selector("pre.log")
        seen = pg.evaluate(NO_MARKUP)
        assert seen["img"] == 0 and seen["scripts"] == 2
        assert pg.text_content("#run-title") == f"{HOSTILE}0"
        assert HOSTILE in pg.text_content("#run-tags")
        assert SCRIPT in pg.text_content("#run-notes")
        assert f"{SCRIPT}0" in pg.text_content(".run-params")
        assert f"logs/{HOSTILE}" in pg.text_content("#run-artifacts")
        assert pg.text_content("pre.log") == f"line {SCRIPT} {HOSTILE}\n"
        assert HOSTILE in pg.text_content(".run-metrics")
    out = tmp_path / "report.html"
    gx.ok("report", "-e", "xss", "-o", str(out))
    assert HOSTILE not in out.read_text() and SCRIPT not in out.read_text()
    pg.goto(out.as_uri())
    pg.wait_for_selector(".chart")
    seen = pg.evaluate(NO_MARKUP)
    assert seen["img"] == 0 and seen["scripts"] == 2
    for shown in (f"{HOSTILE}0", f"{SCRIPT}1", HOSTILE):
        assert shown in seen["text"], shown
    assert not page.errors, page.errors


def test_a_sweep_in_the_page_and_in_its_report(repo, page, gx, tmp_path):
    from playwright.sync_api import expect

    finished_run(experiment="other", params={"lr": 1.0}, metrics={"acc": 0.1})
    sid = a_sweep(repo)
    pg = page.page
    with ui_server(repo) as srv:
        pg.goto(srv.url + "?sweep=" + sid)
        pg.wait_for_selector("#runs[data-state=ready]")
        pg.wait_for_selector("#sweep-panel:not([hidden]) .sweep-info")
        assert pg.locator("#runs tbody tr").count() == 4
        assert pg.text_content("#sweep-id") == sid
        assert "random" in pg.text_content(".sweep-info")
        assert "val_acc (maximize)" in pg.text_content(".sweep-info")
        assert pg.locator(".sweep-importance tr").count() == 3  # header, lr, depth
        assert pg.input_value("#pc-metric") == "metrics.val_acc"
        assert pg.locator("#pc-svg polyline").count() == 4
        # select the trials: the curves of the metric they have (the sweep's), not the first
        pg.click("#select-all")
        pg.wait_for_selector(".chart[data-key='val_acc'][data-series='4']")
        pg.click("#clear")
        best = pg.locator("#sweep-best a")
        best.click()
        pg.wait_for_selector("#run-view[data-state=ready]")
        pg.go_back()
        pg.wait_for_selector("#runs[data-state=ready]")
        pg.select_option("#sweep", "")
        pg.click("#apply")
        pg.wait_for_selector("#sweep-panel", state="hidden")
        expect(pg.locator("#runs tbody tr")).to_have_count(5)
    out = tmp_path / "sweep.html"
    gx.ok("report", "--sweep", sid, "-o", str(out))
    pg.goto(out.as_uri())
    pg.wait_for_selector("#runs[data-state=ready]")
    assert pg.locator("#runs tbody tr").count() == 4
    assert pg.text_content("#sweep-id") == sid
    assert sid in pg.text_content("#title")
    pg.wait_for_selector(".chart[data-key='val_acc'][data-series='4']")
    assert not page.errors, page.errors
