"""What the benchmark scripts share."""

from __future__ import annotations

import os
import subprocess

IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def make_repo(path: str, files: dict[str, str] | None = None) -> str:
    """A git repository at ``path`` with one commit of ``files``; returns HEAD's sha."""
    env = {**os.environ, **IDENTITY}
    subprocess.run(["git", "init", "-q", path], check=True)
    for name, text in (files or {"train.py": "print('hi')\n"}).items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    ).stdout.strip()
