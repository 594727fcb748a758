"""Importing a framework integration without its framework: one line naming the extra."""

from __future__ import annotations

import importlib
import sys

import pytest

from gitexp.errors import MissingExtra

# integration module -> (the framework modules it can use, the pip extra)
INTEGRATIONS = {
    "lightning": (("lightning", "pytorch_lightning"), "lightning"),
    "keras": (("keras",), "keras"),
    "transformers": (("transformers",), "transformers"),
    "xgboost": (("xgboost",), "xgboost"),
    "lightgbm": (("lightgbm",), "lightgbm"),
}


@pytest.mark.parametrize("name", sorted(INTEGRATIONS))
def test_without_its_framework_an_integration_names_the_extra_to_install(name, monkeypatch):
    frameworks, extra = INTEGRATIONS[name]
    # None in sys.modules: "import x" fails as if x were not installed (its submodules
    # too, when an earlier test imported the framework)
    for module in frameworks:
        for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            monkeypatch.setitem(sys.modules, loaded, None)
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, f"gitexp.integrations.{name}", raising=False)
    with pytest.raises(MissingExtra) as caught:
        importlib.import_module(f"gitexp.integrations.{name}")
    message = str(caught.value)
    assert "\n" not in message and f"pip install 'git-exp[{extra}]'" in message
    assert message.startswith(f"gitexp.integrations.{name} needs the package")
    assert caught.value.extra == extra and caught.value.__cause__ is None


def test_a_framework_that_is_there_but_cannot_import_a_dependency_says_so(tmp_path, monkeypatch):
    from gitexp.integrations._common import require

    (tmp_path / "fakefw").mkdir()
    (tmp_path / "fakefw" / "__init__.py").write_text("import gitexp_no_such_backend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="gitexp_no_such_backend"):
        require("fakefw", "gitexp.integrations.fakefw", "fakefw")


def test_importing_the_integrations_package_imports_no_framework():
    import subprocess

    script = (
        "import sys, gitexp.integrations, gitexp.integrations._common\n"
        "print(sorted(m for m in ('torch', 'lightning', 'pytorch_lightning', 'keras',\n"
        "    'transformers', 'xgboost', 'lightgbm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
