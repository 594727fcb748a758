"""Normal commands print what they should and nothing else: no warnings at exit."""

from __future__ import annotations

import sys

import pytest

NOISE = (
    "ResourceWarning",
    "sys.meta_path is None",
    "Exception ignored",
    "Traceback",
    "Warning:",
    "unclosed",
)


@pytest.mark.slow
def test_commands_leave_no_warnings_behind(gx, repo):
    # warnings shown (ResourceWarning is hidden by default): a superset of normal output
    env = {"PYTHONWARNINGS": "default"}
    (repo / "t.py").write_text(
        "import gitexp\n"
        "with gitexp.start_run(params={'a': 1}) as run:\n"
        "    run.log_metric('m', 1.0)\n"
        "print('trained')\n"
    )
    outputs = []
    first = gx("run", "-q", "--", sys.executable, "t.py", env=env)
    assert first.returncode == 0
    assert first.stdout == "trained\n"
    outputs.append(first.stderr)
    second = gx("run", "--", sys.executable, "t.py", env=env)
    assert second.stderr.count("\n") == 1  # the one summary line
    outputs.append(second.stderr)
    ids = [r.split()[0] for r in gx.ok("log", "-c", "id").splitlines()[1:]]
    for args in (["log"], ["log", "--json"], ["show", ids[0]], ["diff", *ids], ["-h"]):
        proc = gx(*args, env=env)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stderr)
    for err in outputs:
        for word in NOISE:
            assert word not in err, err
