"""The dashboard's JSON API (docs/ui.md) over a real HTTP server on 127.0.0.1:
the same answers as the CLI, the Host check, the write token, artifacts by
manifest only and verified, the static report."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import finished_run, git
from uiserver import a_sweep, get_json, request, ui_server

HOSTILE = "<img src=x onerror=alert(1)>"
GIT_EXP = os.path.join(os.path.dirname(sys.executable), "git-exp")


@pytest.fixture
def runs(repo):
    import gitexp

    refs = []
    for i, lr in enumerate([0.1, 0.03, 0.01]):
        with gitexp.start_run(
            experiment="mnist",
            name=HOSTILE if i == 0 else f"lr{lr}",
            params={"lr": lr, "seed": i % 2},
            command=["train"],
        ) as run:
            for step in range(50):
                run.log_metric("loss", 1.0 / (1 + lr * step), step=step)
            run.log_metric("acc", 0.5 + lr)
            (repo / "model.bin").write_bytes(os.urandom(1000) + bytes([i]))
            run.log_artifact(repo / "model.bin", name="out/model.bin")
            refs.append(run.ref)
    refs.append(finished_run(experiment="other", params={"lr": 1.0}, metrics={"acc": 0.1}))
    return refs


def short(ref: str) -> str:
    return ref.removeprefix("refs/experiments/")


def test_runs_are_the_leaderboard_of_git_exp_log(repo, runs, gx):
    with ui_server(repo) as srv:
        got = get_json(srv, "/api/runs?sort=-acc&experiment=mnist")
        want = json.loads(gx.ok("log", "--json", "--sort=-acc", "-e", "mnist"))
        assert got["total"] == 3
        assert got["runs"] == want  # records as `git exp log --json` prints them
        page = get_json(srv, "/api/runs?sort=acc&limit=2&offset=1")
        assert page["total"] == 4
        assert [r["metrics.acc"] for r in page["runs"]] == pytest.approx([0.51, 0.53])
        where = get_json(
            srv, "/api/runs?" + "where=" + quote("params.lr < 0.05 and metrics.acc > 0")
        )
        assert {r["params.lr"] for r in where["runs"]} == {0.03, 0.01}
        grouped = get_json(srv, "/api/runs?group_by=seed&experiment=mnist")
        assert grouped["grouped"] and [g["runs"] for g in grouped["runs"]] == [2, 1]
        base = get_json(srv, "/api/runs?experiment=mnist&baseline=" + quote(short(runs[0])))
        assert "delta(metrics.acc)" in base["columns"]
        srv.dashboard.edit(short(runs[1]), add_tags=["z", "a b"])  # what POST .../tags does
        facets = get_json(srv, "/api/facets")
        assert facets["experiments"] == ["mnist", "other"] and facets["runs"] == 4
        assert facets["tags"] == ["a b", "z"]
        assert {"params.lr", "params.seed"} <= set(facets["params"])
        assert facets["metrics"] == ["metrics.acc", "metrics.loss"]


def test_a_bad_where_is_the_cli_message_as_a_400(repo, runs, gx):
    bad = "params.lr <"
    cli = gx("log", "--where", bad)
    assert cli.returncode == 2
    with ui_server(repo) as srv:
        got = get_json(srv, "/api/runs?where=" + quote(bad), status=400)
        assert got["error"] in cli.stderr and got["error"]
        assert get_json(srv, "/api/runs?limit=x", status=400)["error"]
        assert get_json(srv, "/api/runs?sort=nosuchcolumn", status=400)["error"]
        assert get_json(srv, "/api/runs/nosuchrun", status=404)["error"]
        assert get_json(srv, "/api/nothing", status=404)["error"]


def test_one_run_is_git_exp_show_json_and_two_are_git_exp_diff(repo, runs, gx):
    with ui_server(repo) as srv:
        got = get_json(srv, "/api/runs/" + quote(short(runs[1]), safe=""))
        want = json.loads(gx.ok("show", "--json", runs[1]))
        assert {k: v for k, v in got.items() if k not in ("logs", "version")} == want
        d = get_json(srv, f"/api/diff?a={quote(runs[0])}&b={quote(runs[1])}")
        want = json.loads(gx.ok("diff", "--json", "--code", runs[0], runs[1]))
        assert d == want


def test_metrics_are_downsampled_keeping_min_and_max(repo):
    import numpy as np

    import gitexp

    rng = np.random.default_rng(1)
    values = rng.normal(size=100_000)
    values[12_345] = 50.0  # a spike a plain stride would lose
    values[99_000] = -40.0
    with gitexp.start_run(experiment="big", command=["x"]) as run:
        run.log_metric("noise", values)  # one point per element, steps 0..n-1
        run.log_metric("short", 1.5, step=3)
        ref = run.ref
    with ui_server(repo) as srv:
        addr = quote(short(ref), safe="")
        answer = get_json(srv, f"/api/metrics?runs={addr}&keys=noise&max_points=100")
        (s,) = answer["series"]
        assert s["key"] == "noise" and s["points"] == len(values) and s["downsampled"]
        assert len(s["value"]) == len(s["min"]) == len(s["max"]) == len(s["step"]) == 100
        assert max(s["max"]) == 50.0 and min(s["min"]) == -40.0
        assert s["step"] == sorted(s["step"]) and s["step"][-1] == len(values) - 1
        # each bucket's band holds its mean
        assert all(lo <= v <= hi for lo, v, hi in zip(s["min"], s["value"], s["max"]))
        both = get_json(srv, f"/api/metrics?runs={addr}")
        assert sorted(x["key"] for x in both["series"]) == ["noise", "short"]
        small = next(x for x in both["series"] if x["key"] == "short")
        assert small == small | {"step": [3], "value": [1.5], "downsampled": False}
        assert get_json(srv, "/api/metrics", status=400)["error"]
        assert get_json(srv, f"/api/metrics?runs={addr}&max_points=abc", status=400)


def test_artifacts_come_from_the_manifest_only_and_are_verified(repo, runs, gx):
    from gitexp.store import ExpStore

    with ExpStore(repo) as st:
        rec = st.read_settled(runs[1])
        (entry,) = [a for a in rec.artifacts if a.path == "out/model.bin"]
        obj = st.cas.path_for(entry.blake3)
    want = Path(obj).read_bytes()
    base = "/api/runs/" + quote(short(runs[1]), safe="")
    with ui_server(repo) as srv:
        code, headers, body = request(srv, base + "/artifacts/out/model.bin")
        assert code == 200 and body == want
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-disposition"].startswith("attachment")
        assert headers["x-gitexp-blake3"] == entry.blake3
        code, _, body = request(srv, base + "/artifacts/out/model.bin?head=10")
        assert code == 200 and body == want[:10]
        for bad in (
            "/artifacts/../../../../etc/passwd",
            "/artifacts/%2e%2e/%2e%2e/etc/passwd",
            "/artifacts/" + quote("/etc/passwd", safe=""),
            "/artifacts/out/./model.bin",
            "/artifacts/train.py",  # a file of the work tree, not of the run
            "/artifacts/" + entry.blake3,
        ):
            code, _, body = request(srv, base + bad)
            assert code == 404, (bad, body)
            assert b"root:" not in body
        # a damaged object is never served whole
        os.chmod(obj, 0o644)
        with open(obj, "r+b") as f:  # one byte flipped (random data: it may be any value)
            f.seek(500)
            byte = f.read(1)[0]
            f.seek(500)
            f.write(bytes([byte ^ 0xFF]))
        code, _, body = request(srv, base + "/artifacts/out/model.bin")
        assert code == 500 and b"damaged" in body and want[:400] not in body


def test_requests_for_another_host_are_refused(repo, runs):
    with ui_server(repo) as srv:
        for host in (f"evil.example:{srv.port}", "127.0.0.1:1", "attacker.test", ""):
            code, _, body = request(srv, "/api/runs", headers={"Host": host})
            assert code == 403, host
            assert b"metrics.acc" not in body
        for host in (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}"):
            code, _, _ = request(srv, "/api/runs", headers={"Host": host})
            assert code == 200


def test_the_page_has_a_strict_csp_and_a_token(repo, runs):
    with ui_server(repo) as srv:
        code, headers, body = request(srv, "/")
        assert code == 200
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert srv.token.encode() in body
        for name in ("app.js", "app.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"):
            code, headers, _ = request(srv, "/static/" + name)
            assert code == 200, name
        # the first table's address, for the browser to preload: the page's filters, escaped
        _, _, page = request(srv, "/?sort=-acc&where=" + quote('x" onload="alert(1)') + "&x=1")
        (href,) = re.findall(rb'<link rel="preload" href="([^"]*)" as="fetch"', page)
        assert href.startswith(b"/api/runs?where=x%22+onload%3D%22alert%281%29&amp;sort=-acc&amp;")
        assert b"x=1" not in href and b'onload="' not in page
        assert request(srv, "/static/../server.py")[0] == 404
        assert request(srv, "/static/vendor/uPlot.LICENSE")[0] == 404


@pytest.mark.slow
def test_writes_need_the_token_and_make_the_commits_of_git_exp_tag(repo, runs, gx):
    ref = runs[2]
    path = "/api/runs/" + quote(short(ref), safe="")
    with ui_server(repo) as srv:
        before = git("rev-parse", ref, cwd=repo).strip()
        for headers in ({}, {"X-GitExp-Token": "guess"}):
            code, _, _ = request(srv, path + "/tags", "POST", {"add": ["best"]}, headers)
            assert code == 403
        tok = {"X-GitExp-Token": srv.token}
        evil = {**tok, "Origin": "http://evil.example"}
        assert request(srv, path + "/tags", "POST", {"add": ["best"]}, evil)[0] == 403
        assert git("rev-parse", ref, cwd=repo).strip() == before
        code, _, body = request(srv, path + "/tags", "POST", {"add": ["best"]}, tok)
        assert code == 200, body
        code, _, body = request(srv, path + "/notes", "POST", {"text": "looks good"}, tok)
        assert code == 200, body
        code, _, body = request(srv, path + "/tags", "POST", {"add": ["bad tag\n"]}, tok)
        assert code == 400 and json.loads(body)["error"]
    info = json.loads(gx.ok("show", "--json", ref))["info"]
    assert "best" in info["tags"] and info["notes"][-1]["text"] == "looks good"
    # the same commits `git exp tag` and `git exp note` make: one each, on the run's ref
    log = git("log", "--format=%s", ref, cwd=repo).splitlines()
    assert git("rev-parse", f"{ref}~2", cwd=repo).strip() == before
    gx.ok("tag", short(runs[1]), "best")
    gx.ok("note", short(runs[1]), "looks good")
    other = git("log", "--format=%s", runs[1], cwd=repo).splitlines()
    assert [m.split(" ")[0] for m in log[:2]] == [m.split(" ")[0] for m in other[:2]]
    assert [m.split(" ")[0] for m in log[:2]] == ["note", "tag"]


@pytest.mark.slow
def test_the_report_is_one_file_with_everything_inline(repo, runs, gx, tmp_path):
    out = tmp_path / "report.html"
    proc = gx("report", "-e", "mnist", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert HOSTILE not in html  # the hostile name is inside the data, escaped
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in html
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(?!data:)", html)  # nothing to fetch
    assert "connect-src 'none'" in html
    data = re.search(r'<script type="application/json" id="gitexp-data">(.*?)</script>', html, re.S)
    assert data is not None
    payload = json.loads(data.group(1))
    assert payload["runs"]["total"] == 3
    assert {s["key"] for s in payload["metrics"]["series"]} == {"loss", "acc"}
    picked = tmp_path / "two.html"
    gx.ok("report", short(runs[0]), short(runs[3]), "-o", str(picked))
    two = re.search(r'id="gitexp-data">(.*?)</script>', picked.read_text(), re.S)
    assert two is not None and json.loads(two.group(1))["runs"]["total"] == 2
    bad = gx("report", "-w", "params.lr <", "-o", str(tmp_path / "bad.html"))
    assert bad.returncode == 2 and "where" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.html").exists()
    assert gx("report", "-o", str(tmp_path / "nodir" / "x.html")).returncode == 2


@pytest.mark.slow
def test_git_exp_ui_prints_its_address_takes_a_free_port_and_stops_on_ctrl_c(repo, runs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "git-exp"), "ui", "--port", str(port)],
            cwd=repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\n", line)
            assert m and int(m.group(1)) != port, line
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
            conn.request("GET", "/api/runs")
            assert conn.getresponse().status == 200
            conn.close()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(10) == 0
            assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    bad = subprocess.run(
        ["git", "exp", "ui", "--port", "70000"], cwd=repo, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--port" in bad.stderr
    nosweep = subprocess.run(
        ["git", "exp", "ui", "--sweep", "20991231-000000-000000"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nosweep.returncode == 4 and "no sweep" in nosweep.stderr
    assert len(nosweep.stderr.strip().splitlines()) == 1 and not nosweep.stdout


@pytest.mark.slow
def test_git_exp_ui_on_every_address_warns_and_opens_on_a_sweep(repo, runs):
    sid = a_sweep(repo)
    proc = subprocess.Popen(
        [GIT_EXP, "ui", "--host", "0.0.0.0", "--sweep", sid],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        m = re.fullmatch(rf"http://127\.0\.0\.1:(\d+)/\?sweep={sid}\n", line)
        assert m, line
        warning = proc.stderr.readline()
        assert "warning" in warning and "0.0.0.0" in warning
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
        conn.request("GET", f"/api/runs?sweep={sid}")
        res = conn.getresponse()
        assert res.status == 200 and json.loads(res.read())["total"] == 4
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_running_run_shows_what_it_spooled_since_its_last_checkpoint(repo, monkeypatch):
    import gitexp
    import gitexp.tracking as tracking

    # an hour into a run, checkpoints are minutes apart: the page must not wait for one
    monkeypatch.setattr(tracking, "MIN_CHECKPOINT", 3600.0)
    run = gitexp.start_run(experiment="live", name="going", command=["x"])
    try:
        for step in range(10):
            run.log_metric("loss", 1.0 - step / 100, step=step)
        run.checkpoint()
        with ui_server(repo) as srv:
            addr = quote(short(run.ref), safe="")
            before = get_json(srv, "/api/runs?experiment=live")
            assert before["runs"][0]["metrics.loss"] == pytest.approx(0.91)
            shown = get_json(srv, f"/api/runs/{addr}")
            run.log_metric("loss", 0.123, step=10)
            run.log_metric("acc", 0.5, step=10)
            run.flush()  # spooled, not committed
            assert git("rev-parse", run.ref, cwd=repo).strip() == before["runs"][0]["sha"]
            after = get_json(srv, "/api/runs?experiment=live")
            assert after["runs"][0]["metrics.loss"] == 0.123
            assert after["version"] != before["version"]
            (s,) = get_json(srv, f"/api/metrics?runs={addr}&keys=loss")["series"]
            assert s["step"][-1] == 10 and s["value"][-1] == 0.123 and s["points"] == 11
            page = get_json(srv, f"/api/runs/{addr}")
            assert page["version"] != shown["version"] and page["sha"] == shown["sha"]
            assert page["metrics"]["loss"]["count"] == 11
            assert page["metrics"]["acc"]["last"] == 0.5
    finally:
        run.finish()


@pytest.mark.slow
def test_the_api_takes_a_sweep_as_git_exp_log_and_sweep_show_do(repo, runs, gx):
    sid = a_sweep(repo)
    with ui_server(repo) as srv:
        got = get_json(srv, f"/api/runs?sweep={sid}&sort=-val_acc")
        want = json.loads(gx.ok("log", "--json", "--sweep", sid, "--sort=-val_acc"))
        assert got["total"] == 4 and got["runs"] == want
        assert get_json(srv, f"/api/sweeps/{sid}") == json.loads(
            gx.ok("sweep", "show", "--json", sid)
        )
        listed = get_json(srv, "/api/sweeps")["sweeps"]
        assert [s["id"] for s in listed] == [sid]
        assert get_json(srv, "/api/sweeps/20991231-000000-000000", status=404)["error"]
        assert get_json(srv, "/api/runs?sweep=" + quote("../x"), status=404)["error"]
