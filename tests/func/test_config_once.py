"""A script reads the --config that git exp run was given through gitexp: named once."""

from __future__ import annotations

import json


def test_the_script_reads_the_config_and_p_values_through_the_run(repo, gx):
    (repo / "conf.json").write_text(json.dumps({"lr": 0.3, "layers": [64, 32]}))
    (repo / "p.py").write_text(
        "import json, gitexp\n"
        "run = gitexp.start_run()\n"
        "print(json.dumps(run.params, sort_keys=True))\n"
        "run.finish()\n"
    )
    out = gx.ok("run", "-e", "cfg", "--config", "conf.json", "-p", "lr=0.5", "--", "python", "p.py")
    assert json.loads(out.splitlines()[-1]) == {"layers": [64, 32], "lr": 0.5}
