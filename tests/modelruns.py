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
