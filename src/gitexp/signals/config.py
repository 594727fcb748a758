"""Which alerts a run raises and where they go: git config, merged with what the
command line or ``start_run`` adds.

::

    [exp "alert"]
        rule = metrics.val_acc > 0.95          # a --where expression; repeat for more
        on = nan,failed,crashed,finished       # built-in events (default: nan,failed,crashed)
        stalled = 30m                          # no metric for this long: a "stalled" alert
        webhook = https://hooks.slack.com/...  # Slack-compatible JSON POST; repeat for more
        timeout = 10s                          # time to deliver one alert (all attempts)

plus the hook program ``<hooks dir>/exp-alert`` when it is executable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gitexp.errors import ConfigError, UsageError
from gitexp.records import parse_age
from gitexp.where import compile_where

if TYPE_CHECKING:
    from gitexp.git import GitRepo

SECTION, SUB = "exp", "alert"
HOOK_NAME = "exp-alert"
# the events a run watches for without being told (alerts are on at all only when a
# rule, a target, an event or stop-on-NaN is configured)
EVENTS = ("nan", "stalled", "finished", "failed", "killed", "crashed")
DEFAULT_EVENTS = frozenset({"nan", "failed", "crashed"})
DEFAULT_TIMEOUT = 10.0


@dataclass
class AlertConfig:
    """Everything about a run's alerts: rules, events, targets."""

    rules: list[str] = field(default_factory=list)
    events: frozenset[str] = DEFAULT_EVENTS
    stalled: float | None = None  # seconds without a metric before "stalled"
    webhooks: list[str] = field(default_factory=list)
    hook: str | None = None  # an executable program, the alert as JSON on its stdin
    timeout: float = DEFAULT_TIMEOUT
    stop_on_nan: bool = False
    explicit: bool = False  # events or stalled set on purpose (config or arguments)
    cwd: str | None = None  # where the hook runs (the work tree)

    @property
    def watching(self) -> bool:
        """True when the run must be watched at all."""
        return bool(
            self.rules
            or self.webhooks
            or self.hook
            or self.stop_on_nan
            or self.explicit
            or self.stalled is not None
        )

    @property
    def delivering(self) -> bool:
        """True when alerts go somewhere besides the run's record."""
        return bool(self.webhooks or self.hook)


def parse_events(text: str | Iterable[str]) -> frozenset[str]:
    """``"nan,failed"`` (or a list of such) -> the set of events; ``none`` for none."""
    items = [text] if isinstance(text, str) else list(text)
    names = {n.strip().lower() for item in items for n in item.split(",") if n.strip()}
    if names == {"none"}:
        return frozenset()
    unknown = sorted(names - set(EVENTS))
    if unknown:
        raise UsageError(
            f"unknown alert event {unknown[0]!r} (events: {', '.join(EVENTS)}, or none)"
        )
    return frozenset(names)


def check_rules(rules: Sequence[str]) -> list[str]:
    """The rules, each compiled once now: a rule that does not parse is an error
    before the run starts, not a silent no-op during it."""
    out = []
    for rule in rules:
        if not isinstance(rule, str) or not rule.strip():
            raise UsageError("an alert rule is an expression of the query language, not empty text")
        compile_where(rule, label=f"alert rule {rule!r}")
        out.append(rule.strip())
    return out


def _webhook(url: str) -> str:
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"alert webhook {url!r} is not an http:// or https:// URL")
    return url


def load(
    repo: GitRepo | None,
    rules: Sequence[str] = (),
    events: str | Iterable[str] | None = None,
    stalled: float | str | None = None,
    webhooks: Sequence[str] = (),
    stop_on_nan: bool = False,
) -> AlertConfig:
    """The alert configuration of a run: git config (``exp.alert.*``) and the hook
    program of ``repo``, plus the arguments (rules and webhooks add to the
    config's; ``events`` and ``stalled`` replace them).

    Raises:
        UsageError: a rule that does not parse, an unknown event, a bad age.
        ConfigError: the same in git config, or a webhook that is not http(s).
    """
    cfg = AlertConfig(stop_on_nan=stop_on_nan)
    conf_rules: list[str] = []
    conf_hooks: list[str] = []
    if repo is not None:
        cfg.cwd = repo.work_tree or repo.git_dir
        conf_rules = repo.config_get_all(SECTION, SUB, "rule")
        conf_hooks = repo.config_get_all(SECTION, SUB, "webhook")
        try:
            on = repo.config_get_all(SECTION, SUB, "on")
            if on and events is None:
                cfg.events, cfg.explicit = parse_events(on), True
            age = repo.config_get(SECTION, "stalled", SUB)
            if age and stalled is None:
                cfg.stalled = parse_age(age)
            timeout = repo.config_get(SECTION, "timeout", SUB)
            if timeout:
                cfg.timeout = max(0.1, parse_age(timeout))
            cfg.rules = check_rules(conf_rules)
        except UsageError as exc:
            raise ConfigError(f"git config exp.alert: {exc}") from exc
        hook = os.path.join(repo.hooks_dir(), HOOK_NAME)
        if os.path.isfile(hook) and os.access(hook, os.X_OK):
            cfg.hook = hook
    cfg.rules += check_rules(rules)
    cfg.webhooks = [_webhook(u) for u in [*conf_hooks, *webhooks]]
    if events is not None:
        cfg.events, cfg.explicit = parse_events(events), True
    if stalled is not None:
        cfg.stalled = parse_age(stalled) if isinstance(stalled, str) else float(stalled)
        if cfg.stalled <= 0:
            raise UsageError("the time before a run counts as stalled must be positive")
    if cfg.stalled is not None:
        cfg.events = cfg.events | {"stalled"}
    if stop_on_nan:
        cfg.events = cfg.events | {"nan"}
    return cfg
