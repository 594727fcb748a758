"""Runs to register as models: finished, with a metric, an input and an artifact."""

from __future__ import annotations

from pathlib import Path


def make_runs(repo: Path, aucs: list[float], artifact: bool = True, seed0: int = 0) -> list[str]:
    """One finished run per auc, each with model.bin (distinct bytes); their refs."""
    import gitexp

    refs = []
    for i, auc in enumerate(aucs):
        seed = seed0 + i
        (repo / "model.bin").write_bytes(f"weights {seed} ".encode() * 64)
        (repo / "data.csv").write_text(f"x,y\n{seed},1\n")
        with gitexp.start_run(
            experiment="fraud", params={"seed": seed}, command=["train"], repo=repo
        ) as run:
            run.log_metrics({"auc": auc, "loss": 1 - auc})
            run.log_input(str(repo / "data.csv"))
            if artifact:
                run.log_artifact(str(repo / "model.bin"))
            refs.append(run.ref)
    return refs


def isolated_repo(tmp_path_factory, name: str, build) -> Path:
    """A repository shared by the tests of a module (``build(repo)`` fills it),
    made under the same isolated git identity the ``isolate`` fixture gives
    each test (module-scoped fixtures are set up before it)."""
    import os

    import pytest

    from conftest import make_repo

    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("GIT_", "GITEXP_"))]:
            mp.delenv(key)
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        repo = make_repo(tmp_path_factory.mktemp(name) / "project")
        build(repo)
    return repo
