"""The architecture of DESIGN.md, checked on the source: who may import what."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "gitexp"

# The layer of each top-level module or package (docs/development.md). A module
# imports only from layers below its own, or from inside its own package: two
# services on one layer never import each other, so each layer can be read (and
# changed) knowing only the ones below it. ALLOWED lists the few exceptions.
LAYERS = {
    "errors": 0,
    "git": 1,  # objects, refs, snapshots, transport: the only importer of dulwich
    "where": 1,  # the --where language: parse and evaluate
    "stats": 1,  # intervals, tests, effect sizes (scipy, imported lazily)
    "cas": 2,  # the BLAKE3 store, local and remote
    "records": 2,  # format 1, pure
    "columns": 2,  # Arrow arrays from Python values and numpy buffers (no pandas)
    "metrics": 3,
    "capture": 3,
    "store": 4,  # runs as commits, the spool, liveness
    "signals": 4,  # system metrics, alert rules and delivery (where, records; no store)
    "catalog": 5,
    "rundiff": 5,
    "show": 5,
    "hooks": 5,
    "tracking": 5,
    "leaderboard": 6,  # the one listing service (catalog + where)
    "runner": 6,  # git exp run (tracking)
    "seeding": 6,
    "export": 7,
    "maintenance": 7,
    "remotes": 7,
    "interop": 7,  # import from MLflow and TensorBoard, export to TensorBoard; MLflow's names
    "replay": 8,  # reproduce (runner, seeding, rundiff, catalog)
    "retention": 8,  # archive: runs pushed (remotes), verified, then removed (maintenance)
    "sweeps": 8,  # sweeps: trials through the runner, results through the leaderboard
    "registry": 8,  # models on refs/models/ (store, remotes for bytes, leaderboard to select)
    "api": 9,
    "comparison": 9,  # git exp compare and check (stats, leaderboard, registry)
    "audit": 9,  # git exp verify (registry, store, remotes' listings)
    "ui": 10,  # the dashboard: a server and a report over the services
    "mlflow": 10,  # the MLflow-style API (shim) over tracking, the leaderboard and interop
    "wandb": 10,  # the W&B-style API (shim) over tracking
    "integrations": 10,  # framework callbacks (Lightning, Keras, transformers, XGBoost, LightGBM)
    "cli": 20,
}

# (importer, imported) pairs allowed against the rule above, each with its reason
ALLOWED: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in sorted(SRC.rglob("*.py"))
    }


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # module level, including inside try/if at module level
        nodes = [
            n
            for stmt in tree.body
            for n in ast.walk(stmt)
            if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ]
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _importers_of(package: str) -> set[str]:
    return {
        name
        for name, path in _modules().items()
        if any(i == package or i.startswith(package + ".") for i in _imports(path))
    }


def _in(package: str, modules: set[str]) -> set[str]:
    """The modules not inside ``gitexp.<package>``."""
    return {
        m for m in modules if m != f"gitexp.{package}" and not m.startswith(f"gitexp.{package}.")
    }


def test_only_the_git_layer_imports_dulwich():
    assert _importers_of("dulwich") and not _in("git", _importers_of("dulwich"))


def test_only_cas_imports_blake3():
    assert _importers_of("blake3") and not _in("cas", _importers_of("blake3"))


# the modules that read or write Arrow data themselves; everything else gets
# tables from them (a new owner is a decision: add it here, and say why)
PYARROW_OWNERS = {
    "columns",  # Arrow arrays built from buffers (pa.array imports pandas)
    "metrics",  # metric segments: the Arrow tables of points, Parquet bytes
    "catalog",  # the run index, a Parquet file
    "leaderboard",  # result tables (gitexp.runs())
    "export",  # Parquet / CSV files for pandas, polars, DuckDB
    "cas",  # pyarrow.fs: the remote artifact store (cas/remote.py: S3, GCS, HDFS, local)
}


def test_only_the_data_layers_import_pyarrow():
    owners = {m.split(".")[1] for m in _importers_of("pyarrow")}
    assert owners <= PYARROW_OWNERS, owners - PYARROW_OWNERS


def test_cli_modules_do_not_import_heavy_modules_at_module_level():
    heavy = ("dulwich", "pyarrow", "numpy", "blake3")
    for name, path in _modules().items():
        if not name.startswith("gitexp.cli"):
            continue
        top = _imports(path, top_level_only=True)
        bad = [
            i
            for i in top
            if i.split(".")[0] in heavy
            or (i.startswith("gitexp.") and not i.startswith(("gitexp.cli", "gitexp.errors")))
        ]
        assert not bad, f"{name} imports {bad} at module level"


def test_every_module_has_a_layer():
    tops = {name.split(".")[1] for name in _modules() if name.count(".") >= 1}
    missing = tops - set(LAYERS) - {"__main__"}
    assert not missing, f"give {sorted(missing)} a layer in LAYERS (docs/development.md)"


def test_each_layer_imports_only_from_below():
    bad = []
    for name, path in _modules().items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] == "__main__":
            continue
        mine = LAYERS[parts[1]]
        for imp in _imports(path):
            ip = imp.split(".")
            if ip[0] != "gitexp" or len(ip) < 2 or ip[1] not in LAYERS or ip[1] == parts[1]:
                continue
            if (parts[1], ip[1]) in ALLOWED:
                continue
            if LAYERS[ip[1]] >= mine:
                bad.append(f"{name} (layer {mine}) imports {imp} (layer {LAYERS[ip[1]]})")
    assert not bad, "\n".join(sorted(set(bad)))


def test_the_cli_reaches_the_git_layer_only_through_services():
    for name, path in _modules().items():
        if name.startswith("gitexp.cli"):
            low = [i for i in _imports(path) if i.split(".")[:2] in (["gitexp", "git"],)]
            assert not low, f"{name} imports {low}: call a service instead"


def test_the_core_never_prints_or_exits():
    for name, path in _modules().items():
        if name.startswith("gitexp.cli") or name == "gitexp.__main__":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name) and f.id in ("print", "exit", "quit"):
                    pytest.fail(f"{name}:{node.lineno} calls {f.id}()")
                if (
                    isinstance(f, ast.Attribute)
                    and f.attr == "exit"
                    and isinstance(f.value, ast.Name)
                    and f.value.id == "sys"
                ):
                    pytest.fail(f"{name}:{node.lineno} calls sys.exit()")
                # sys.stdout.write / sys.stderr.write / print to them: the CLI renders
                if (
                    isinstance(f, ast.Attribute)
                    and f.attr in ("write", "writelines")
                    and isinstance(f.value, ast.Attribute)
                    and f.value.attr in ("stdout", "stderr")
                    and isinstance(f.value.value, ast.Name)
                    and f.value.value.id == "sys"
                ):
                    pytest.fail(f"{name}:{node.lineno} writes to sys.{f.value.attr}")


# core modules whose error messages still name a CLI flag (issue 12 section 4): to be
# reworded so that the CLI names the flag; the list only shrinks
FLAG_NAMING: set[str] = set()


def test_core_error_messages_state_facts_not_cli_flags():
    """A core error is raised with the fact ("inputs changed since the run"); the
    CLI words the flag ("pass --allow-input-drift"), so Python callers are not told
    about options they do not have."""
    import re

    flag = re.compile(r"(?<![\w-])--[a-z]")
    for name, path in _modules().items():
        if name.startswith("gitexp.cli") or name in FLAG_NAMING:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for part in ast.walk(node.exc):
                    if (
                        isinstance(part, ast.Constant)
                        and isinstance(part.value, str)
                        and flag.search(part.value)
                    ):
                        pytest.fail(f"{name}:{node.lineno} names a CLI flag: {part.value!r}")


def test_importing_the_cli_and_help_stay_light():
    script = (
        "import sys, gitexp.cli\n"
        "try:\n"
        "    gitexp.cli.cli.main(['--help'], prog_name='git exp', standalone_mode=False)\n"
        "finally:\n"
        "    heavy = sorted(m for m in ('pyarrow', 'dulwich', 'numpy', 'blake3')\n"
        "                   if m in sys.modules)\n"
        "    print('HEAVY', heavy)\n"
        "    print('COMMAND MODULES', sorted(m for m in sys.modules\n"
        "                                    if m.startswith('gitexp.cli.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "COMMAND MODULES []" in out.stdout  # the list comes from SUMMARIES
    assert "Commands:" in out.stdout


@pytest.mark.slow
def test_help_lists_every_command():
    from gitexp.cli import COMMANDS

    # `git exp --help` is turned by git into `git help exp`, the man page
    # (tests/func/test_cli_manpage.py); the short help comes from `git exp -h` or `git-exp --help`
    for argv in (["git", "exp", "-h"], ["git-exp", "--help"]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        commands = out.stdout.split("Commands:")[1].split()
        for name in COMMANDS:
            assert name in commands, (argv, name)
    for name in COMMANDS:
        out = subprocess.run(["git", "exp", name, "-h"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Usage: git exp " + name in out.stdout, out.stderr
