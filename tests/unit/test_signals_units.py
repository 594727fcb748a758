"""The alert watcher, its configuration and the alerts.json records, in-process."""

from __future__ import annotations

import math

import pytest

from gitexp import records as fmt
from gitexp.errors import FormatError, InvalidValue, UsageError
from gitexp.records import MetricSummary, Summary
from gitexp.signals import AlertConfig, Watcher, parse_events, payload
from gitexp.where import names_in


def flush(t: float, **values: float) -> Summary:
    """The summary of one flush: each metric logged once at step int(t)."""
    return Summary(
        {
            k: MetricSummary(v, int(t), t, v if not math.isnan(v) else math.nan, v, 1)
            for k, v in values.items()
        }
    )


def watcher(**config) -> tuple[Watcher, list[dict]]:
    fired: list[dict] = []
    clock = [1000.0]
    w = Watcher(
        AlertConfig(**config),
        fired.append,
        info={"id": "20261207-000000-abcdef", "experiment": "e", "status": "running"},
        params={"opt": {"lr": 0.1}},
        clock=lambda: clock[0],
    )
    w.clock = clock  # type: ignore[attr-defined]
    return w, fired


def test_a_rule_fires_once_however_many_flushes_it_goes_on_holding():
    w, fired = watcher(rules=["metrics.val_acc > 0.9 and params.opt.lr < 1"])
    for t, acc in enumerate([0.5, 0.95, 0.97, 0.99, 0.5, 0.96]):
        w.observe(flush(t, val_acc=acc))
    assert len(fired) == 1
    (alert,) = fired
    assert alert["event"] == "rule" and alert["metric"] == "val_acc" and alert["value"] == 0.95
    assert alert["step"] == 1 and "params.opt.lr = 0.1" in alert["text"]
    assert "e/20261207-000000-abcdef" in alert["title"]


def test_nan_and_infinities_fire_once_per_run_naming_every_metric():
    w, fired = watcher(events=frozenset({"nan"}))
    w.observe(flush(0, loss=1.0, grad=2.0))
    w.observe(flush(1, loss=math.nan, grad=math.inf))
    w.observe(flush(2, loss=math.nan, grad=math.inf))
    assert [a["event"] for a in fired] == ["nan"]
    assert fired[0]["metric"] == "grad" and fired[0]["value"] == "Infinity"
    assert "loss = NaN" in fired[0]["text"]


def test_stalled_fires_once_per_silence_and_system_metrics_do_not_count():
    w, fired = watcher(stalled=60.0)
    w.observe(flush(1.0, loss=1.0))
    w.clock[0] += 30
    w.observe(flush(2.0, **{"system/cpu_percent": 50.0}))
    w.tick()
    assert fired == []
    w.clock[0] += 31
    w.tick()
    w.tick()
    assert [a["event"] for a in fired] == ["stalled"]
    assert "loss at step 1" in fired[0]["text"]
    w.observe(flush(3.0, loss=0.5))  # it came back: a new silence may alert again
    w.clock[0] += 61
    w.tick()
    assert [a["event"] for a in fired] == ["stalled", "stalled"]
    w.reset(w.summary)  # the same points seen again are no sign of life
    w.clock[0] += 61
    w.tick()
    assert len(fired) == 2


def test_the_end_alerts_only_for_the_events_asked_and_rules_see_the_status():
    w, fired = watcher(events=frozenset({"failed"}), rules=['status == "failed"'])
    w.observe(flush(0, loss=0.25))
    w.end("failed", 1, "Traceback...\nValueError: diverged")
    w.end("failed", 1, "again")  # once
    assert [a["event"] for a in fired] == ["rule", "failed"]
    end = fired[1]
    assert end["level"] == "error" and end["exit_code"] == 1
    assert "ValueError: diverged" in end["text"] and "loss = 0.25" in end["text"]
    w, fired = watcher(events=frozenset({"failed"}))
    w.end("finished", 0)
    assert fired == []
    w, fired = watcher(events=frozenset({"crashed"}))
    w.end("killed", 137, event="crashed", detail="the command died of SIGKILL")
    assert fired[0]["event"] == "crashed" and fired[0]["status"] == "killed"


def test_events_and_ages_are_checked():
    assert parse_events("nan, Finished") == {"nan", "finished"}
    assert parse_events(["nan", "stalled"]) == {"nan", "stalled"}
    assert parse_events("none") == frozenset()
    with pytest.raises(UsageError, match="sometimes"):
        parse_events("nan,sometimes")
    assert fmt.parse_age("3mo") == 90 * 86400 and fmt.parse_age("1y") == 365 * 86400
    assert fmt.parse_age("0.5s") == 0.5 and fmt.parse_age("30m") == 1800
    with pytest.raises(UsageError, match="mo or y"):
        fmt.parse_age("3 months")


def test_alert_records_are_checked_and_read_strictly():
    entry = fmt.alert_entry("t" * 500, "x", "warning", "user", "2026-12-07T00:00:00Z", step=3)
    assert len(entry["title"]) == 200 and entry["step"] == 3 and len(entry["id"]) == 12
    assert fmt.alert_entry("a\nb", event="rule", value=math.nan)["title"] == "a b"
    assert fmt.alert_entry("v", event="nan", value=math.nan)["value"] == "NaN"
    for bad in ({"level": "loud"}, {"event": "whenever"}):
        with pytest.raises(InvalidValue):
            fmt.alert_entry("t", **bad)
    with pytest.raises(InvalidValue):
        fmt.alert_entry("t", text="\udcff")
    assert fmt.parse_alerts([entry, {**entry, "later_field": 1}], "w")[1]["later_field"] == 1
    for bad in ({"a": 1}, [1], [{**entry, "title": 3}], [{**entry, "step": "3"}]):
        with pytest.raises(FormatError):
            fmt.parse_alerts(bad, "w")


def test_the_payload_is_slack_compatible():
    entry = fmt.alert_entry("loss became NaN", "loss = NaN at step 3", "error", "nan")
    body = payload(entry, {"id": "x", "ref": "refs/experiments/e/x"})
    assert body["text"] == "[error] loss became NaN\nloss = NaN at step 3"
    assert body["gitexp"]["run"]["ref"] == "refs/experiments/e/x"
    assert body["gitexp"]["id"] == entry["id"]


def test_names_in_lists_what_an_expression_reads():
    text = "metrics.val_acc > 0.9 and (lr < 1 or metrics.`a b` is null) and lr != 2"
    assert names_in(text) == ["metrics.val_acc", "lr", "metrics.a b"]
