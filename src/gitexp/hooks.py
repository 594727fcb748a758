"""The git hooks git-exp ships, and installing them without harming existing ones.

``pre-push``: when the user pushes a branch, also push their runs (and the
artifacts, to the remote's store) to the same remote. It never blocks the
branch push: if the runs cannot be pushed it says so and lets git go on.

Installing respects ``core.hooksPath`` and never overwrites a hook: an
existing ``pre-push`` is kept as ``pre-push.local`` and run first (its exit
status still decides the push). Uninstalling puts it back exactly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from gitexp.errors import UsageError
from gitexp.gitstore import GitRepo

MARK = "# git-exp pre-push hook"
CHAIN = "pre-push.local"

# Keep in sync with hooks/pre-push at the top of the repository (a test checks it).
PRE_PUSH = f"""#!/bin/sh
{MARK}: also push experiment runs (and their artifacts) to the remote git pushes to.
# GITEXP_IN_HOOK guards against recursion; a failure warns and never blocks the push.
[ -n "$GITEXP_IN_HOOK" ] || GITEXP_IN_HOOK=1 git exp push "$1" >&2 ||
    echo "git exp: warning: runs not pushed; try: git exp push $1" >&2
exit 0
"""

_CHAINED = f"""#!/bin/sh
{MARK} (installed by git exp install-hooks; chains to {CHAIN}).
here=$(dirname "$0")
if [ -x "$here/{CHAIN}" ]; then "$here/{CHAIN}" "$@" || exit $?; fi
"""


def script(chained: bool) -> str:
    """The hook's text; with ``chained`` it first runs the user's previous hook."""
    if not chained:
        return PRE_PUSH
    body = PRE_PUSH.split("\n", 2)[2]  # drop the shebang and the mark line
    return _CHAINED + body


@dataclass
class HookResult:
    """What install-hooks did."""

    path: str
    action: str  # "installed", "already installed", "uninstalled", "not installed"
    chained: bool = False


def _write_exec(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".gitexp-hook-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def install(repo: GitRepo, uninstall: bool = False) -> HookResult:
    """Install (or remove) the pre-push hook in the hooks directory git uses."""
    hooks = repo.hooks_dir()
    path = os.path.join(hooks, "pre-push")
    local = os.path.join(hooks, CHAIN)
    current = _read(path) if os.path.lexists(path) and os.path.isfile(path) else None
    ours = current is not None and MARK.encode() in current
    if uninstall:
        if not ours:
            return HookResult(path, "not installed")
        chained = CHAIN.encode() in (current or b"")
        if chained and os.path.lexists(local):
            os.replace(local, path)  # the user's hook, with its mode, back in place
        else:
            os.unlink(path)
        return HookResult(path, "uninstalled", chained)
    if ours:
        return HookResult(path, "already installed", CHAIN.encode() in (current or b""))
    os.makedirs(hooks, exist_ok=True)
    chained = os.path.lexists(path)
    if chained:
        if os.path.lexists(local):
            if not (os.path.isfile(local) and current is not None and _read(local) == current):
                raise UsageError(
                    f"{path} and {local} both exist: git-exp will not overwrite either "
                    f"(merge them into one, or add 'git exp push \"$1\"' to your hook yourself)"
                )
        else:
            shutil.copy2(path, local)  # keep the user's hook, mode and all
    _write_exec(path, script(chained))
    return HookResult(path, "installed", chained)
