"""Live signals (issue 17): system metrics and alerts, against real webhook
receivers (an HTTP server on 127.0.0.1 that answers, one that hangs, a port
that refuses), a real hook program, and real runs of ``git exp run``."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import textwrap
import threading
import time

import pytest

import gitexp
from conftest import git, show_json
from gitexp.errors import RunStopped, UsageError


class Receiver:
    """A webhook endpoint: records each JSON body POSTed to it (or hangs)."""

    def __init__(self, hang: float = 0.0, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.times: list[float] = []
        self.hang = hang
        self.status = status
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.hits += 1
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if outer.hang:
                    time.sleep(outer.hang)
                    return
                outer.times.append(time.time())
                outer.bodies.append(json.loads(body))
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def alerts(self) -> list[dict]:
        return [b["gitexp"] for b in self.bodies]

    def wait(self, n: int, timeout: float = 20.0) -> list[dict]:
        end = time.monotonic() + timeout
        while len(self.bodies) < n and time.monotonic() < end:
            time.sleep(0.05)
        return self.alerts()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def refused_url() -> str:
    """A loopback port nobody listens on: connections are refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/hook"


def only_ref(repo) -> str:
    refs = git("for-each-ref", "--format=%(refname)", "refs/experiments/", cwd=repo).split()
    assert len(refs) == 1, refs
    return refs[0]


def alerts_of(repo, ref: str) -> list[dict]:
    return show_json(repo, ref, "alerts.json")


TRAIN = textwrap.dedent(
    """
    import sys, time, gitexp
    nan_at = int(sys.argv[1])
    for i in range(30):
        loss = float("nan") if i >= nan_at else 1.0 / (i + 1)
        gitexp.log_metrics({"val_acc": i / 30, "loss": loss}, step=i)
        time.sleep(0.04)
    print("trained")
    """
)


@pytest.mark.slow
def test_a_rule_and_a_nan_each_alert_once_through_the_webhook_and_the_hook(repo, gx, receiver):
    """Threshold and NaN fire once each however many steps they go on holding;
    the end of the run too; the webhook and the hook program get the same
    alerts as the run records."""
    (repo / "train.py").write_text(TRAIN)
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    got = repo / "hook-got.jsonl"
    hook = hooks / "exp-alert"
    hook.write_text(f"#!/bin/sh\ncat >> {got}\necho >> {got}\n")
    hook.chmod(0o755)
    git("config", "exp.alert.webhook", receiver.url, cwd=repo)
    proc = gx(
        "run",
        "--alert",
        "metrics.val_acc > 0.5",
        "--alert-on",
        "nan,finished",
        "--system-interval",
        "0.2",
        "--",
        sys.executable,
        "train.py",
        "20",
    )
    assert proc.returncode == 0, proc.stderr
    ref = only_ref(repo)
    recorded = alerts_of(repo, ref)
    # once each: a rule and a NaN that go on holding for many steps
    assert sorted(a["event"] for a in recorded) == ["finished", "nan", "rule"]
    assert recorded[-1]["event"] == "finished"
    by_event = {a["event"]: a for a in recorded}
    rule, nan, end = by_event["rule"], by_event["nan"], by_event["finished"]
    assert rule["rule"] == "metrics.val_acc > 0.5" and rule["metric"] == "val_acc"
    assert rule["value"] > 0.5 and rule["level"] == "info"
    assert nan["metric"] == "loss" and nan["value"] == "NaN" and nan["level"] == "error"
    assert nan["step"] >= 20
    assert end["status"] == "finished" and end["exit_code"] == 0
    delivered = receiver.wait(3)
    assert sorted(a["id"] for a in delivered) == sorted(a["id"] for a in recorded)
    body = receiver.bodies[0]
    assert body["text"].startswith("[") and body["gitexp"]["run"]["ref"] == ref
    from_hook = [json.loads(ln) for ln in got.read_text().splitlines() if ln.strip()]
    assert sorted(b["gitexp"]["id"] for b in from_hook) == sorted(a["id"] for a in recorded)
    # the system metrics went on beside (at least two samples in a short run)
    summary = show_json(repo, ref, "summary.json")["metrics"]
    assert summary["system/cpu_percent"]["count"] >= 2
    assert summary["system/rss_bytes"]["max"] > 1_000_000
    shown = gx.ok("show", ref)
    assert "alerts" in shown and "loss became NaN" in shown
    assert "system/" not in gx.ok("log")  # the leaderboard shows them when asked
    assert "system/rss_bytes" in gx.ok("log", "--columns", "id,metrics.system/rss_bytes")
    git("fsck", "--strict", cwd=repo)


@pytest.mark.slow
def test_stop_on_nan_ends_a_diverged_run_failed_with_the_reason(repo, gx):
    (repo / "train.py").write_text(TRAIN.replace("range(30)", "range(100000)"))
    started = time.monotonic()
    proc = gx("run", "--stop-on-nan", "--no-system-metrics", "--", sys.executable, "train.py", "5")
    assert time.monotonic() - started < 60
    assert proc.returncode != 0
    ref = only_ref(repo)
    info = show_json(repo, ref, "run.json")
    assert info["status"] == "failed"
    assert "stopped early" in info["error"] and "loss" in info["error"]
    events = [a["event"] for a in alerts_of(repo, ref)]
    assert events == ["nan", "failed"]
    summary = show_json(repo, ref, "summary.json")["metrics"]
    assert "system/cpu_percent" not in summary
    assert summary["loss"]["count"] < 100000


@pytest.mark.slow
def test_a_hanging_and_a_refusing_webhook_never_slow_training_nor_hold_the_exit(repo, gx):
    """Alerts go to a server that never answers and to a port that refuses:
    the command runs at its own pace, the run ends within the alerts' time
    limit, and what could not be delivered is said on stderr."""
    hanging = Receiver(hang=30)
    try:
        git("config", "exp.alert.webhook", hanging.url, cwd=repo)
        git("config", "--add", "exp.alert.webhook", refused_url(), cwd=repo)
        git("config", "exp.alert.timeout", "1s", cwd=repo)
        (repo / "train.py").write_text(
            "import time, gitexp\n"
            "t = time.monotonic()\n"
            "for i in range(10):\n"
            "    gitexp.log_metric('loss', float('inf') if i == 2 else 1.0, step=i)\n"
            "    time.sleep(0.1)\n"
            "print('loop', round(time.monotonic() - t, 2))\n"
        )
        started = time.monotonic()
        proc = gx("run", "--alert-on", "nan,finished", "--", sys.executable, "train.py")
        took = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        loop = float(proc.stdout.split("loop")[1])
        assert loop < 5.0  # ten steps of 0.1 s: nothing waited for the webhooks
        assert took < 30  # the hanging server holds 30 s; the exit waits at most 1 s
        assert "not delivered" in proc.stderr and "attempt" in proc.stderr
        assert "secret" not in proc.stderr  # a webhook's path is its secret
        ref = only_ref(repo)
        assert [a["event"] for a in alerts_of(repo, ref)] == ["nan", "finished"]
        assert hanging.hits >= 1
    finally:
        hanging.close()


@pytest.mark.slow
def test_a_refused_webhook_is_retried_with_back_off_until_its_time_limit():
    from gitexp.signals.deliver import Dispatcher

    d = Dispatcher([refused_url()], timeout=1.0)
    started = time.monotonic()
    d.send({"text": "x", "gitexp": {"title": "t"}})
    assert time.monotonic() - started < 0.1  # send only queues
    assert d.drain(5.0)
    (out,) = d.outcomes
    assert not out.ok and out.attempts >= 3 and "refused" in out.error.lower()
    assert 0.5 < time.monotonic() - started < 3.0


def test_a_webhook_answering_4xx_is_not_retried(receiver):
    from gitexp.signals.deliver import Dispatcher

    receiver.status = 404
    d = Dispatcher([receiver.url], timeout=5.0)
    d.send({"text": "x", "gitexp": {"title": "t"}})
    assert d.drain(5.0)
    assert d.outcomes[0].attempts == 1 and "404" in d.outcomes[0].error


def test_run_alert_from_python_is_recorded_and_delivered_and_finish_waits_for_it(repo, receiver):
    git("config", "exp.alert.webhook", receiver.url, cwd=repo)
    with gitexp.start_run(experiment="py", system_metrics=False) as run:
        entry = run.alert("checkpoint saved", "epoch 3, 12 MB", level="warning")
        with pytest.raises(UsageError):
            run.alert("x", level="loud")
        with pytest.raises(UsageError):
            run.alert("   ")
    assert receiver.alerts()[0]["id"] == entry["id"]
    recorded = alerts_of(repo, run.ref)
    assert recorded[0] == {k: v for k, v in entry.items()}
    assert recorded[0]["event"] == "user" and recorded[0]["level"] == "warning"
    # the webhook got the alert of the run's end too (failed is watched by default,
    # finished is not)
    assert [a["event"] for a in receiver.alerts()] == ["user"]


def test_start_run_samples_system_metrics_and_stops_on_nan_when_asked(repo):
    with pytest.raises(RunStopped):
        with gitexp.start_run(system_interval=0.05, stop_on_nan=True) as run:
            for i in range(200):
                run.log_metric("loss", float("nan") if i >= 3 else 1.0, step=i)
                time.sleep(0.01)
    info = show_json(repo, run.ref, "run.json")
    assert info["status"] == "failed" and "RunStopped" in info["error"]
    summary = show_json(repo, run.ref, "summary.json")["metrics"]
    assert summary["system/rss_bytes"]["count"] >= 2
    assert summary["loss"]["count"] < 200
    assert [a["event"] for a in alerts_of(repo, run.ref)] == ["nan", "failed"]


def test_a_stopped_run_refuses_throughput_like_any_other_metric(repo):
    with pytest.raises(RunStopped):
        with gitexp.start_run(system_metrics=False, stop_on_nan=True) as run:
            run.log_metric("loss", float("nan"), step=0)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the watcher sees the NaN after a flush
                run.log_throughput(32)
                time.sleep(0.01)
    summary = show_json(repo, run.ref, "summary.json")["metrics"]
    # what was logged before the stop is kept; nothing after it
    assert summary["throughput/items_per_sec"]["count"] < 1000


@pytest.mark.slow
def test_bad_alert_settings_fail_before_anything_is_written(repo, gx):
    for args, word in (
        (["--alert", "metrics.acc >"], "alert rule"),
        (["--alert-on", "sometimes"], "sometimes"),
        (["--alert-stalled", "soon"], "soon"),
        (["--system-interval", "0"], "interval"),
    ):
        proc = gx("run", *args, "--", "true")
        assert proc.returncode == 2, (args, proc.stderr)
        assert word in proc.stderr and "Traceback" not in proc.stderr
    git("config", "exp.alert.rule", "metrics.x <<", cwd=repo)
    proc = gx("run", "--", "true")
    assert proc.returncode == 2 and "exp.alert" in proc.stderr
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""
    with pytest.raises(UsageError):
        gitexp.start_run(alerts=["(("])


@pytest.mark.slow
def test_a_stalled_run_and_a_crashed_command_alert_once_per_occurrence(repo, gx, receiver):
    git("config", "exp.alert.webhook", receiver.url, cwd=repo)
    git("config", "exp.alert.rule", "params.lr > 0.1", cwd=repo)  # from git config
    (repo / "stall.py").write_text(
        "import os, signal, time, gitexp\n"
        "gitexp.log_metric('loss', 1.0)\n"
        "time.sleep(3.0)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = gx(
        "run",
        "-p",
        "lr=0.5",
        "--alert-stalled",
        "1s",
        "--no-system-metrics",
        "--",
        sys.executable,
        "stall.py",
    )
    assert proc.returncode == 137
    ref = only_ref(repo)
    recorded = alerts_of(repo, ref)
    events = [a["event"] for a in recorded]
    # once per silence: the one after the metric (a slow interpreter start may be one too)
    assert events[0] == "rule" and events[-1] == "crashed" and events.count("stalled") in (1, 2)
    assert set(events) == {"rule", "stalled", "crashed"}
    assert "loss at step 0" in [a for a in recorded if a["event"] == "stalled"][-1]["text"]
    assert recorded[0]["rule"] == "params.lr > 0.1"
    assert "SIGKILL" in recorded[-1]["text"] and recorded[-1]["status"] == "killed"
    assert len(receiver.wait(len(recorded))) == len(recorded)


EXIT_SCRIPT = """
import gitexp, time
run = gitexp.start_run(experiment="x", system_interval=0.05, alert_on="finished")
run.log_metric("loss", 0.5)
time.sleep(0.3)
"""


@pytest.mark.slow
def test_a_run_finished_at_interpreter_exit_still_delivers_its_end_alert(repo, receiver):
    """At exit nothing may be imported: delivery was made ready when the run started."""
    import subprocess

    git("config", "exp.alert.webhook", receiver.url, cwd=repo)
    (repo / "s.py").write_text(EXIT_SCRIPT)
    proc = subprocess.run(
        [sys.executable, "s.py"], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "not delivered" not in proc.stderr, proc.stderr
    assert [a["event"] for a in receiver.wait(1)] == ["finished"]
    ref = only_ref(repo)
    assert show_json(repo, ref, "summary.json")["metrics"]["system/cpu_percent"]["count"] >= 2


@pytest.mark.slow
def test_a_script_calling_start_run_under_git_exp_run_is_sampled_once(repo, gx):
    (repo / "s.py").write_text(
        "import time, gitexp\n"
        "with gitexp.start_run(system_interval=0.05) as run:\n"
        "    run.log_metric('loss', 1.0)\n"
        "    time.sleep(1.2)\n"
    )
    proc = gx("run", "--system-interval", "0.3", "--", sys.executable, "s.py")
    assert proc.returncode == 0, proc.stderr
    ref = only_ref(repo)
    cpu = show_json(repo, ref, "summary.json")["metrics"]["system/cpu_percent"]
    duration = show_json(repo, ref, "run.json")["duration"]
    # one sampler (the supervisor's, every 0.3 s), not the script's every 0.05 s too:
    # no step sampled twice, and no more samples than 0.3 s intervals in the run
    assert cpu["count"] >= 2 and cpu["count"] == cpu["last_step"] + 1
    assert cpu["count"] <= duration / 0.3 + 2


def test_no_gpu_means_no_nvml_import(repo):
    from gitexp.signals import nvidia_present

    if nvidia_present():
        pytest.skip("this machine has an NVIDIA GPU")
    with gitexp.start_run(system_interval=0.05) as run:
        time.sleep(0.2)
    assert "pynvml" not in sys.modules
    keys = show_json(repo, run.ref, "summary.json")["metrics"]
    assert not any(k.startswith("system/gpu") for k in keys)


def test_a_run_with_no_alert_configured_has_no_alerts_file(repo, gx):
    proc = gx("run", "--no-system-metrics", "--", sys.executable, "-c", "print(1)")
    assert proc.returncode == 0
    ref = only_ref(repo)
    names = git("ls-tree", "--name-only", ref, cwd=repo).split()
    assert "alerts.json" not in names and "run.json" in names
