"""Signed commits, made and checked the way git makes and checks them.

When the user's git config has ``commit.gpgSign`` true, every commit git-exp
writes carries a ``gpgsig`` header: the signature of the commit object without
it, made by the program git itself would run (``gpg --status-fd=2 -bsau KEY``
for ``gpg.format`` openpgp, the same with ``gpgsm`` for x509, ``ssh-keygen -Y
sign -n git -f KEYFILE`` for ssh), so that ``git verify-commit`` and ``git log
--show-signature`` accept it. The configuration is read once per open
repository; without ``commit.gpgSign`` nothing runs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from gitexp.errors import SignatureError
from gitexp.git.base import RepoBase, _git_env, _unlink_quiet

SIGN_TIMEOUT = 120.0  # a pinentry may ask for a passphrase


@dataclass(frozen=True)
class Signer:
    """How this repository's commits are signed (``commit.gpgSign`` true)."""

    format: str  # "openpgp", "x509" or "ssh"
    program: str
    key: str | None  # user.signingKey
    default_key_command: str | None = None  # gpg.ssh.defaultKeyCommand

    def sign(self, payload: bytes, committer: bytes) -> bytes:
        """The detached signature of ``payload`` (armored text, ending in a newline).

        Raises:
            SignatureError: the program is missing, or it failed.
        """
        if self.format == "ssh":
            return self._sign_ssh(payload)
        key = self.key or committer.decode("utf-8", "replace")
        argv = [*shlex.split(self.program), "--status-fd=2", "-bsau", key]
        proc = _run(argv, payload, "sign the commit")
        if b"\n[GNUPG:] SIG_CREATED " not in b"\n" + proc.stderr or not proc.stdout:
            raise SignatureError(f"{self.program} failed to sign the commit: {_last_line(proc)}")
        return bytes(proc.stdout)

    def _sign_ssh(self, payload: bytes) -> bytes:
        key = self.key
        literal = False
        if not key and self.default_key_command:
            out = _run(
                shlex.split(self.default_key_command), b"", "run gpg.ssh.defaultKeyCommand"
            ).stdout.decode("utf-8", "replace")
            key = out.splitlines()[0].strip() if out.strip() else None
            literal = True
        if not key:
            raise SignatureError(
                "commit.gpgSign is set with gpg.format ssh, but user.signingKey is not: "
                "git-exp cannot sign commits (set it, or unset commit.gpgSign)"
            )
        if key.startswith("key::"):
            key, literal = key[len("key::") :], True
        elif key.startswith("ssh-"):
            literal = True
        files: list[str] = []
        try:
            if literal:
                fd, key_file = tempfile.mkstemp(prefix=".git_signing_key_tmp")
                files.append(key_file)
                with os.fdopen(fd, "w") as f:
                    f.write(key + "\n")
            else:
                key_file = os.path.expanduser(key)
            fd, buffer_file = tempfile.mkstemp(prefix=".git_signing_buffer_tmp")
            files += [buffer_file, buffer_file + ".sig"]
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            argv = [*shlex.split(self.program), "-Y", "sign", "-n", "git", "-f", key_file]
            if literal:
                argv.append("-U")
            proc = _run([*argv, buffer_file], b"", "sign the commit")
            if proc.returncode != 0:
                raise SignatureError(f"ssh-keygen failed to sign the commit: {_last_line(proc)}")
            try:
                with open(buffer_file + ".sig", "rb") as f:
                    sig = f.read()
            except OSError as exc:
                raise SignatureError(f"ssh-keygen wrote no signature: {exc}") from exc
        finally:
            for path in files:
                _unlink_quiet(path)
        if not sig.startswith(b"-----BEGIN SSH SIGNATURE-----"):
            raise SignatureError("ssh-keygen wrote something that is not an ssh signature")
        return sig if sig.endswith(b"\n") else sig + b"\n"


def _run(argv: list[str], data: bytes, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, input=data, capture_output=True, timeout=SIGN_TIMEOUT)
    except FileNotFoundError as exc:
        raise SignatureError(f"cannot {what}: {argv[0]} is not installed") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SignatureError(f"cannot {what}: {exc}") from exc


def _last_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = [
        ln
        for ln in proc.stderr.decode("utf-8", "replace").splitlines()
        if ln.strip() and not ln.startswith("[GNUPG:]")
    ]
    return lines[-1].strip() if lines else f"exit code {proc.returncode}"


@dataclass(frozen=True)
class SignatureCheck:
    """What ``git verify-commit`` says of one commit."""

    sha: str
    signed: bool  # the commit carries a signature at all
    good: bool  # git verified it (exit 0)
    kind: str  # "openpgp", "x509", "ssh" or "" (unsigned)
    signer: str  # who signed, as the verifier names them ("" when unknown)
    detail: str  # the verifier's last line, for a report


class GitSigning(RepoBase):
    """Reading the signing configuration, signing payloads, verifying commits."""

    _signer_cache: Any = None  # Signer | False, read at the first signed write

    def signer(self) -> Signer | None:
        """The signer git's config asks for, or None when commits are not signed."""
        if self._signer_cache is None:
            self._signer_cache = self._read_signer() or False
        return self._signer_cache or None

    def _read_signer(self) -> Signer | None:
        stack = self.config_stack()

        def get(section: tuple[bytes, ...], name: bytes) -> str | None:
            try:
                return bytes(stack.get(section, name)).decode("utf-8", "surrogateescape")
            except KeyError:
                return None

        sign = (get((b"commit",), b"gpgsign") or "").strip().lower()
        if sign not in ("true", "yes", "on", "1"):
            return None
        fmt = (get((b"gpg",), b"format") or "openpgp").strip().lower()
        if fmt == "ssh":
            program = get((b"gpg", b"ssh"), b"program") or "ssh-keygen"
        elif fmt == "x509":
            program = get((b"gpg", b"x509"), b"program") or "gpgsm"
        elif fmt == "openpgp":
            program = get((b"gpg", b"openpgp"), b"program") or get((b"gpg",), b"program") or "gpg"
        else:
            raise SignatureError(
                f"gpg.format {fmt!r} is not one git knows (openpgp, x509, ssh): "
                "git-exp cannot sign commits"
            )
        key = get((b"user",), b"signingkey")
        default_cmd = get((b"gpg", b"ssh"), b"defaultkeycommand")
        return Signer(fmt, program, key.strip() if key else None, default_cmd)

    def sign_payload(self, payload: bytes) -> bytes | None:
        """The signature git would put on ``payload`` (a commit without its
        signature), or None when commits are not signed here."""
        signer = self.signer()
        if signer is None:
            return None
        return signer.sign(payload, self.identity())

    def commit_signature(self, sha: str) -> bytes | None:
        """The ``gpgsig`` of a commit, or None when it is unsigned."""
        obj = self._repo.object_store[sha.encode("ascii")]
        sig = getattr(obj, "gpgsig", None)
        return bytes(sig) if sig else None

    def verify_commit(self, sha: str) -> SignatureCheck:
        """Check a commit's signature with ``git verify-commit`` (the user's
        keyring, ``gpg.ssh.allowedSignersFile``)."""
        sig = self.commit_signature(sha)
        if sig is None:
            return SignatureCheck(sha, False, False, "", "", "no signature")
        kind = "ssh" if sig.startswith(b"-----BEGIN SSH SIGNATURE") else "openpgp"
        if sig.startswith(b"-----BEGIN SIGNED MESSAGE"):
            kind = "x509"
        try:
            proc = subprocess.run(
                ["git", "verify-commit", "--raw", sha],
                cwd=self.work_tree or self.git_dir,
                env=_git_env(),
                capture_output=True,
                timeout=SIGN_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return SignatureCheck(
                sha, True, False, kind, "", f"cannot run git verify-commit: {exc}"
            )
        text = proc.stderr.decode("utf-8", "replace") + proc.stdout.decode("utf-8", "replace")
        signer, detail = _signer_of(text, kind)
        return SignatureCheck(sha, True, proc.returncode == 0, kind, signer, detail)


def _signer_of(text: str, kind: str) -> tuple[str, str]:
    """(who signed, a one-line summary) from ``git verify-commit --raw``'s output."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    signer = ""
    for ln in lines:
        if kind == "ssh" and ln.startswith('Good "git" signature for '):
            # Good "git" signature for ada@example.com with ED25519 key SHA256:...
            signer = ln[len('Good "git" signature for ') :]
            return signer, ln
        if ln.startswith("[GNUPG:] GOODSIG "):
            parts = ln.split(" ", 3)
            signer = parts[3] if len(parts) > 3 else ""
        if ln.startswith("[GNUPG:] VALIDSIG "):
            fpr = ln.split(" ")[2]
            return f"{signer} (key {fpr})" if signer else f"key {fpr}", f"good signature: {signer}"
    errors = [ln for ln in lines if not ln.startswith("[GNUPG:]")]
    bad = [ln for ln in lines if ln.startswith(("[GNUPG:] BADSIG", "[GNUPG:] ERRSIG"))]
    detail = (bad or errors or ["verification failed"])[-1]
    return signer, detail
