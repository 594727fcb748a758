"""The one exception hierarchy of git-exp.

Every error the core raises is a :class:`GitExpError`. The CLI turns it into a
one-line message on stderr and exits with the class's ``exit_code``; Python
callers catch the class they care about. The tree::

    GitExpError                      exit 1
    ├── UsageError                   exit 2   bad arguments, names, values
    │   ├── InvalidName                       experiment/run names, ref paths
    │   ├── InvalidValue                      params and metrics with no faithful form
    │   ├── BranchExists                      ``checkout-code``: the branch is elsewhere
    │   ├── TargetExists                      a file to write exists and overwriting was not asked
    │   ├── UnsupportedCall                   an MLflow/W&B call the shims do not map; ``call``
    │   └── ConfigError                       a config file that does not parse
    │       └── SpecError                     a sweep file that is not a valid search
    ├── NotARepository               exit 3   not inside a git repository
    │   ├── NoCommits                         the repository has no commits yet
    │   └── UnsupportedRepository             SHA-256 objects, reftable refs: refused at once
    ├── RunNotFound                  exit 4   no run matches an address
    │   ├── AmbiguousRun                      several runs match; ``candidates`` lists them
    │   ├── SweepNotFound                     no sweep matches an id
    │   └── ModelNotFound                     no model, version, stage holder or alias matches
    ├── RunConflict                  exit 5   a compare-and-swap on a run ref lost its race
    ├── StoreError                   exit 6   recorded data is missing or damaged
    │   ├── IntegrityError                    bytes do not match their BLAKE3
    │   ├── ObjectMissing                     a CAS or git object is not there
    │   ├── FormatError                       a run tree that does not parse
    │   │   └── UnsupportedFormat             a format version this release cannot read
    │   ├── ForeignStoreError                 an MLflow store or TensorBoard logdir to import from
    │   │                                     cannot be read
    │   └── SignatureError                    a commit could not be signed as git config asks
    ├── RunStateError                exit 7   an operation on a finished/foreign run, or one a
    │                                         model version's stage does not allow
    │   └── RunStopped                        the run was stopped early: a metric became NaN
    ├── CannotReproduce              exit 8   ``reproduce`` could not replay the run
    │   │                                     (missing code commit or CAS object, input drift)
    │   ├── InputDrift                        inputs differ from the recorded hashes; ``drift``
    │   └── ReplayInterrupted        exit 130 the replay was interrupted (Ctrl-C, SIGTERM)
    ├── DirtyWorkTree                exit 9   would overwrite uncommitted work; ``paths``
    ├── RemoteError                  exit 10  a remote or artifact store failed or refused
    │   ├── AuthError                         the remote refused our credentials
    │   ├── NoRemote                          no such remote / no remote configured
    │   └── Diverged                          runs not pushed or fetched: histories diverged
    ├── ExecutorError                exit 11  a sweep executor (pool, Dask, Ray) cannot be used
    ├── MissingExtra                 exit 1   an optional package is not installed; ``extra``
    └── CommandNotFound              exit 127 ``git exp run`` was given a missing program
"""

from __future__ import annotations

__all__ = [
    "AmbiguousRun",
    "AuthError",
    "BranchExists",
    "CannotReproduce",
    "CommandNotFound",
    "ConfigError",
    "DirtyWorkTree",
    "Diverged",
    "ExecutorError",
    "ForeignStoreError",
    "FormatError",
    "GitExpError",
    "InputDrift",
    "IntegrityError",
    "InvalidName",
    "InvalidValue",
    "MissingExtra",
    "ModelNotFound",
    "NoCommits",
    "NoRemote",
    "NotARepository",
    "ObjectMissing",
    "RemoteError",
    "ReplayInterrupted",
    "RunConflict",
    "RunNotFound",
    "RunStateError",
    "RunStopped",
    "SignatureError",
    "SpecError",
    "StoreError",
    "SweepNotFound",
    "TargetExists",
    "UnsupportedCall",
    "UnsupportedFormat",
    "UnsupportedRepository",
    "UsageError",
]


class GitExpError(Exception):
    """Base of every error git-exp raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(GitExpError, ValueError):
    """The caller asked for something that cannot be done as asked."""

    exit_code = 2


class InvalidName(UsageError):
    """An experiment name, run name or path that git-exp refuses."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class InvalidValue(UsageError):
    """A param or metric value with no faithful stored form."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class BranchExists(UsageError):
    """A branch of that name exists and points elsewhere (``branch``, its ``commit``)."""

    def __init__(self, message: str, branch: str = "", commit: str = "") -> None:
        super().__init__(message)
        self.branch = branch
        self.commit = commit


class TargetExists(UsageError):
    """A file or directory to write exists, and overwriting it was not asked for;
    ``path`` is where."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class UnsupportedCall(UsageError, AttributeError):
    """A call of ``gitexp.mlflow`` or ``gitexp.wandb`` that git-exp does not map onto its
    own API: raised instead of doing nothing. ``call`` names it (``mlflow.log_input``).

    Also an ``AttributeError``: an unsupported name is raised when it is looked up,
    so ``hasattr`` and Python's own machinery (imports, pickle) see a missing name."""

    def __init__(self, call: str, why: str = "") -> None:
        super().__init__(
            f"{call} is not supported by git-exp"
            + (f": {why}" if why else "")
            + " (docs/migrating.md lists what is)"
        )
        self.call = call


class ConfigError(UsageError):
    """A config file that cannot be read or parsed."""


class SpecError(ConfigError):
    """A sweep description that does not describe a valid search."""


class NotARepository(GitExpError):
    """The working directory is not inside a git repository."""

    exit_code = 3


class NoCommits(NotARepository):
    """The repository has no commit yet, so there is no code version to record."""


class UnsupportedRepository(NotARepository):
    """A git repository git-exp cannot write correctly (SHA-256 object names, a
    ref storage other than files): refused when it is opened, before any write."""


class RunNotFound(GitExpError, LookupError):
    """No run matches the address given."""

    exit_code = 4


class AmbiguousRun(RunNotFound):
    """More than one run matches the address given."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


class SweepNotFound(RunNotFound):
    """No sweep matches the id given."""


class ModelNotFound(RunNotFound):
    """No model of that name, or no version, stage holder or alias of it that matches."""


class RunConflict(GitExpError):
    """A run ref moved under us more often than we were willing to retry."""

    exit_code = 5

    def __init__(self, message: str, ref: str = "") -> None:
        super().__init__(message)
        self.ref = ref


class StoreError(GitExpError):
    """Recorded data is missing or damaged."""

    exit_code = 6


class IntegrityError(StoreError):
    """Bytes whose BLAKE3 is not the one they were stored under."""

    def __init__(self, message: str, expected: str = "", got: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.got = got


class ObjectMissing(StoreError):
    """A CAS object or git object that a run refers to is not present."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class FormatError(StoreError):
    """A run tree or file that does not parse as format version 1."""


class UnsupportedFormat(FormatError):
    """A run written in a format version this release cannot read."""

    def __init__(self, message: str, version: object = None) -> None:
        super().__init__(message)
        self.version = version


class ForeignStoreError(StoreError):
    """A store of another tool (an MLflow ``mlruns`` directory, database or tracking
    server, a TensorBoard log directory) that an import cannot read."""


class SignatureError(StoreError):
    """A commit could not be signed as the user's git config asks (``commit.gpgSign``):
    the signing program is missing or failed. Nothing is written unsigned instead."""


class RunStateError(GitExpError):
    """An operation that the run's state does not allow."""

    exit_code = 7


class RunStopped(RunStateError):
    """The run was stopped early on purpose (a metric became NaN or infinite and the
    run was asked to stop then): logging into it raises this. ``reason`` says why."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class CannotReproduce(GitExpError):
    """``reproduce`` could not replay a run: its code, a stored object or an input is not
    what was recorded. ``problems`` lists every reason, one line each."""

    exit_code = 8

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [message])


class InputDrift(CannotReproduce):
    """Inputs recorded by hash only differ now; ``drift`` has one dict per input
    (path, recorded/current hash and size)."""

    def __init__(self, message: str, problems: list[str], drift: list[dict[str, object]]) -> None:
        super().__init__(message, problems)
        self.drift = drift


class ReplayInterrupted(CannotReproduce):
    """The replay was interrupted; the replay run is recorded as ``killed``."""

    exit_code = 130


class DirtyWorkTree(GitExpError):
    """The work tree has uncommitted changes that the operation would overwrite."""

    exit_code = 9

    def __init__(self, message: str, paths: list[str] | None = None) -> None:
        super().__init__(message)
        self.paths = list(paths or [])


class ExecutorError(GitExpError):
    """A sweep's executor (local pool, Dask or Ray cluster) cannot be reached or used."""

    exit_code = 11


class MissingExtra(GitExpError):
    """An optional dependency is not installed; ``extra`` names the pip extra
    (``pip install 'git-exp[mlflow]'``) that brings it."""

    def __init__(self, what: str, extra: str, package: str) -> None:
        super().__init__(f"{what} needs the package {package!r}: pip install 'git-exp[{extra}]'")
        self.extra = extra
        self.package = package


class CommandNotFound(GitExpError):
    """The program to run does not exist or is not executable."""

    exit_code = 127


class RemoteError(GitExpError):
    """A git remote or an artifact store could not be used."""

    exit_code = 10

    def __init__(self, message: str, remote: str = "") -> None:
        super().__init__(message)
        self.remote = remote


class AuthError(RemoteError):
    """The remote refused our credentials."""


class NoRemote(RemoteError):
    """No remote of that name, or none configured at all."""


class Diverged(RemoteError):
    """Some runs were left alone because the local and remote histories diverged."""

    def __init__(self, message: str, refs: list[str] | None = None) -> None:
        super().__init__(message)
        self.refs = refs or []
