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
from gitexp.git import GitRepo

MARK = "# git-exp pre-push hook"
CHAIN = "pre-push.local"

# Keep in sync with hooks/pre-push at the top of the repository (a test checks it).
# git runs pre-push for `git push --dry-run` too and does not tell the hook, so
# the hook reads the command line of the git that runs it (its parent process).
PRE_PUSH = f"""#!/bin/sh
{MARK}: also push experiment runs (and their artifacts) to the remote git pushes to.
# GITEXP_IN_HOOK guards against recursion; a failure warns and never blocks the push.
[ -z "$GITEXP_IN_HOOK" ] || exit 0
dry=
args=$(tr '\\000' ' ' < "/proc/$PPID/cmdline" 2>/dev/null || ps -o args= -p "$PPID" 2>/dev/null)
set -f
for a in $args; do
    case $a in
        --) break ;;
        --dry-run) dry=--dry-run ;;
        --*) ;;
        -*) case ${{a%%o*}} in -*n*) dry=--dry-run ;; esac ;;  # -n, -fn; not -o<value>
    esac
done
GITEXP_IN_HOOK=1 git exp push $dry "$1" >&2 ||
    echo "git exp: warning: runs not pushed; try: git exp push $1" >&2
exit 0
"""

_CHAINED = f"""#!/bin/sh
{MARK} (installed by git exp install-hooks; chains to {CHAIN}).
here=$(dirname "$0")
if [ -x "$here/{CHAIN}" ]; then "$here/{CHAIN}" "$@" || exit $?; fi
"""


_CREATED = "# git-exp created {n} directory level(s) for this hook; --uninstall removes them"


def script(chained: bool, created: int = 0) -> str:
    """The hook's text; with ``chained`` it first runs the user's previous hook.

    ``created``: how many directory levels install made for the hook, which
    uninstall removes again (when empty).
    """
    text = PRE_PUSH
    if chained:
        body = PRE_PUSH.split("\n", 2)[2]  # drop the shebang and the mark line
        text = _CHAINED + body
    if created:
        first, rest = text.split("\n", 1)
        text = f"{first}\n{_CREATED.format(n=created)}\n{rest}"
    return text


def _created_levels(text: bytes) -> int:
    import re

    pattern = re.escape(_CREATED).replace(r"\{n\}", "([0-9]+)").encode()
    found = re.search(pattern, text)
    return int(found.group(1)) if found else 0


def _makedirs(path: str) -> int:
    """``os.makedirs``; returns how many levels it created."""
    missing = 0
    probe = path
    while not os.path.isdir(probe):
        missing += 1
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    os.makedirs(path, exist_ok=True)
    return missing


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


def install_in(path: str | os.PathLike[str], uninstall: bool = False) -> HookResult:
    """:func:`install` in the repository containing ``path``."""
    with GitRepo(path) as repo:
        return install(repo, uninstall=uninstall)


def install(repo: GitRepo, uninstall: bool = False) -> HookResult:
    """Install (or remove) the pre-push hook in the hooks directory git uses.

    An existing hook (a file or a symlink, even a dangling one) is kept as
    ``pre-push.local``, as it was: a symlink stays a symlink. Uninstall puts
    it back and removes the directories install created, so the hooks
    directory is exactly as before.
    """
    hooks = repo.hooks_dir()
    path = os.path.join(hooks, "pre-push")
    local = os.path.join(hooks, CHAIN)
    current = _read(path) if os.path.isfile(path) and not os.path.islink(path) else None
    ours = current is not None and MARK.encode() in current
    if uninstall:
        if not ours:
            return HookResult(path, "not installed")
        chained = CHAIN.encode() in (current or b"")
        if chained and os.path.lexists(local):
            os.replace(local, path)  # the user's hook, as it was (mode, or symlink), back
        else:
            os.unlink(path)
            probe = hooks
            for _ in range(_created_levels(current or b"")):
                try:
                    os.rmdir(probe)  # only when empty: never removes anything else
                except OSError:
                    break
                probe = os.path.dirname(probe)
        return HookResult(path, "uninstalled", chained)
    if ours:
        return HookResult(path, "already installed", CHAIN.encode() in (current or b""))
    if os.path.islink(path) and os.path.isfile(path) and MARK.encode() in _read(path):
        # a link to the shipped hooks/pre-push, made by hand: chaining it would push twice
        return HookResult(path, "already installed")
    created = _makedirs(hooks)
    chained = os.path.lexists(path)
    if chained:
        if os.path.lexists(local):
            same = (
                os.readlink(local) == os.readlink(path)
                if os.path.islink(local) and os.path.islink(path)
                else os.path.isfile(local)
                and not os.path.islink(local)
                and current is not None
                and _read(local) == current
            )
            if not same:
                raise UsageError(
                    f"{path} and {local} both exist: git-exp will not overwrite either "
                    f"(merge them into one, or add 'git exp push \"$1\"' to your hook yourself)"
                )
        else:
            _keep(path, local)
    _write_exec(path, script(chained, created))
    return HookResult(path, "installed", chained)


def _keep(path: str, local: str) -> None:
    """Copy the user's hook to ``local`` exactly: a symlink as a symlink, a file
    with its mode; atomically (a temporary name, then renamed)."""
    tmp = os.path.join(os.path.dirname(local), f".gitexp-keep-{os.getpid()}")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        if os.path.islink(path):
            os.symlink(os.readlink(path), tmp)
        else:
            shutil.copy2(path, tmp)
        os.replace(tmp, local)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
