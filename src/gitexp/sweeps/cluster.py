"""The Dask executor: a sweep's trials on a Dask distributed cluster.

``git exp sweep FILE --executor dask://HOST:PORT`` sends each trial to a
Dask worker as a task (:func:`gitexp.sweeps.worker.run_trial`); Dask
schedules them, git-exp has no scheduler of its own. Trials and the driver
share runs through a git remote (``--remote``, by default the one ``git exp
push`` uses) and its artifact store:

- before the first trial the driver pushes the sweep's ref, whose first commit
  has the sweep's code commit as a parent, and uploads the large code files of
  a dirty snapshot to the artifact store;
- a worker runs the trial at that code commit in a clean checkout of its own
  clone and pushes the run (artifacts first, then the ref);
- the driver fetches the run (:func:`gitexp.remotes.fetch`) and its artifacts
  when the trial ends, reads the metric from its own copy, and decides; the
  runs it marks ``pruned`` and its last record go back to the remote.

A pruner (``method: optuna``) hears a running trial's metric through a Dask
queue (worker to driver) and stops it through a Dask event (driver to worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from typing import Any

from gitexp.errors import ExecutorError, GitExpError, RemoteError
from gitexp.records import ExpRef
from gitexp.store import ExpStore
from gitexp.sweeps import methods as m
from gitexp.sweeps.driver import Driver, LocalExecutor, _nested, metric_value, sweep_tag

EXTRA = "pip install 'git-exp[dask]'"
TIMEOUT_ENV = "GITEXP_DASK_TIMEOUT"
DEFAULT_TIMEOUT = 10.0  # seconds to reach the scheduler and see a worker


def parse_address(address: str) -> tuple[str, int]:
    """``dask://HOST:PORT`` -> (host, port); ExecutorError for anything else."""
    rest = address[len("dask://") :] if address.startswith("dask://") else ""
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ExecutorError(f"executor {address!r}: give the scheduler as dask://HOST:PORT")
    return host, int(port)


def _timeout() -> float:
    try:
        return max(0.5, float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


class DaskExecutor(LocalExecutor):
    """Trials as tasks of a Dask distributed cluster; ``slots`` of them at once
    (default: the cluster's worker threads), each waited for by a driver thread.

    Made in two steps, both before any trial: the address is checked (something
    listens there) when it is made; :meth:`check` checks the remote, then
    connects to the scheduler and waits for a worker."""

    name = "dask"

    def __init__(self, address: str, slots: int | None, remote: str | None = None) -> None:
        import importlib.util

        self.host, self.port = parse_address(address)
        if importlib.util.find_spec("distributed") is None:
            raise ExecutorError(
                f"executor {address}: the Dask executor needs Dask distributed, which is not "
                f"installed ({EXTRA})"
            )
        self.address = address
        self.slots = slots or 1  # until connected
        self.wanted = slots
        self.client: Any = None
        self.distributed: Any = None
        self.remote_given = remote
        self.remote: Any = None  # gitexp.remotes.Remote, after check()
        self._sync = threading.Lock()  # one fetch or push into the driver's repository at once
        self._futures: set[Any] = set()
        self._closed = False
        self._probe()

    def _probe(self) -> None:
        """Something listens at the scheduler's address (a refused or unroutable
        address fails here at once, before Dask is even imported)."""
        try:
            socket.create_connection((self.host, self.port), timeout=min(_timeout(), 5.0)).close()
        except OSError as exc:
            raise ExecutorError(
                f"executor {self.address}: cannot reach the Dask scheduler at "
                f"{self.host}:{self.port} ({exc.strerror or exc})"
            ) from None

    def _connect(self) -> None:
        """Connect to the scheduler and see a worker; ExecutorError in one line when not."""
        host, port, address = self.host, self.port, self.address
        timeout = _timeout()
        import distributed as dist_module

        logging.getLogger("distributed").setLevel(logging.ERROR)
        distributed: Any = dist_module  # untyped in parts
        try:
            client = distributed.Client(
                f"tcp://{host}:{port}", timeout=timeout, set_as_default=False
            )
        except Exception as exc:  # distributed raises OSError, TimeoutError, its own
            raise ExecutorError(
                f"executor {address}: the Dask scheduler at {host}:{port} did not answer "
                f"({type(exc).__name__})"
            ) from None
        try:
            client.wait_for_workers(1, timeout=timeout)
            threads = sum(client.nthreads().values())
        except Exception:  # TimeoutError, or the scheduler went away
            client.close()
            raise ExecutorError(
                f"executor {address}: no Dask worker joined the scheduler within {timeout:g} s"
            ) from None
        self.client, self.distributed = client, distributed
        LocalExecutor.__init__(self, self.wanted or max(1, threads))

    # ------------------------------------------------------------ the remote
    def _remote_arg(self) -> str:
        assert self.remote is not None
        return str(self.remote.name or self.remote.url)

    def check(self, store: ExpStore) -> None:
        """The remote exists, answers, and has an artifact store."""
        from gitexp.git import remote_refs
        from gitexp.remotes import resolve_remote

        rem = resolve_remote(store.repo, self.remote_given)
        remote_refs(rem.url, "refs/sweeps/", rem.ssh_command)  # RemoteError when unreachable
        if not rem.store_url:
            raise RemoteError(
                f"remote {rem.label} has no artifact store: the workers' runs could not bring "
                f"their artifacts (git config remote.{rem.label}.expstore URL)",
                rem.url,
            )
        self.remote = rem
        if self.client is None:
            self._connect()

    def facts(self) -> dict[str, Any]:
        rem = self.remote
        if rem is None:
            return {}
        return {"remote": {"name": rem.name, "url": rem.url, "store": rem.store_url}}

    def _push_record(self, driver: Driver) -> None:
        rem = self.remote
        record = driver.record
        if rem is None or record.sha is None:
            return
        with self._sync:
            pushed = driver.store.repo.push(
                rem.url, {record.ref: record.sha}, ssh_command=rem.ssh_command, force=True
            )
        bad = [p for p in pushed if p.status == "rejected"]
        if bad:
            raise RemoteError(f"{rem.label} refused {record.ref}: {bad[0].reason}", rem.url)

    def prepare(self, driver: Driver) -> None:
        """Share the sweep's ref (and so its code commit) and its large code files."""
        from gitexp.remotes import open_store

        self._push_record(driver)
        rem = self.remote
        files = driver.code.large_files
        if files and rem is not None:
            base = driver.store.repo.work_tree or driver.store.repo.git_dir
            remote_store = open_store(rem, base)
            if remote_store is not None:
                for key in remote_store.missing([e.blake3 for e in files]):
                    remote_store.upload(driver.store.cas, key)

    def sync(self, store: ExpStore) -> None:
        """Fetch the remote's runs (trials that ended while no driver ran)."""
        from gitexp.remotes import fetch

        with self._sync:
            fetch(store, self._remote_arg())

    def pruned(self, driver: Driver, refs: Sequence[str]) -> None:
        """Push the runs the driver marked pruned, so the remote says so too."""
        from gitexp.remotes import push

        try:
            with self._sync, ExpStore(driver.repo_path) as store:
                push(store, self._remote_arg(), runs=list(refs))
        except GitExpError as exc:
            driver.warnings.append(f"pruned runs not pushed to {self._remote_arg()}: {exc}")

    def finish(self, driver: Driver) -> None:
        """Share the sweep's last record."""
        self._push_record(driver)

    # ------------------------------------------------------------ a trial
    def task(self, driver: Driver, job: m.Job, channel: str | None) -> dict[str, Any]:
        """What a worker needs to run one trial (plain data)."""
        spec = driver.spec
        rem = self.remote
        assert rem is not None
        params = job.all_params(spec)
        code = driver.code
        root = driver.store.repo.work_tree or driver.cwd
        rel = os.path.relpath(driver.cwd, root)
        return {
            "sweep": driver.record.id,
            "sweep_ref": driver.record.ref,
            "remote": {"url": rem.url, "store": rem.store_url},
            "code": {
                "data": code.data,
                "commit": code.code_commit,
                "tree": code.code_tree,
                "large_files": [e.to_json() for e in code.large_files],
            },
            "name": os.path.basename(root.rstrip(os.sep)) or "code",
            "cwd_rel": "." if rel.startswith("..") else rel.replace(os.sep, "/"),
            "argv": spec.argv(params),
            "experiment": spec.experiment,
            "params": _nested(params),
            "tags": [sweep_tag(driver.record.id)],
            "link": driver.link(job),
            "metric": spec.metric,
            "channel": channel,
        }

    def run_trial(self, driver: Driver, job: m.Job) -> m.Outcome:
        """Send the trial to the cluster, wait for it (feeding the pruner), then
        fetch its run and read the metric from the driver's own copy."""
        from gitexp.sweeps import worker

        search = driver.search
        watched = search is not None and search.prunes and driver.spec.metric is not None
        token = secrets.token_hex(4)
        channel = f"gitexp-{driver.record.id}-{job.trial}-{job.rung}-{token}" if watched else None
        task = self.task(driver, job, channel)
        fut = self.client.submit(
            worker.run_trial,
            task,
            key=f"gitexp-trial-{driver.record.id}-{job.trial}-{job.rung}-{token}",
            pure=False,
        )
        self._futures.add(fut)
        try:
            if channel is not None and search is not None:
                self._feed_pruner(fut, channel, lambda pts: search.report(job.trial, pts))
            try:
                res = fut.result()
            except Exception as exc:  # the worker died, the task was cancelled
                return m.Outcome(m.FAILED, error=f"Dask: {type(exc).__name__}: {exc}")
        finally:
            self._futures.discard(fut)
        if not isinstance(res, dict):
            return m.Outcome(m.FAILED, error="the worker returned no result")
        ref, error = res.get("run"), res.get("error")
        if not ref:
            return m.Outcome(m.FAILED, error=str(error or "the trial did not start"))
        if not res.get("pushed"):
            return m.Outcome(m.FAILED, error=str(error))
        return self._collect(driver, str(ref), res)

    def _feed_pruner(self, fut: Any, channel: str, report: Any) -> None:
        queue = self.distributed.Queue(channel, client=self.client)
        event = self.distributed.Event(channel, client=self.client)
        while not fut.done():
            try:
                points = queue.get(timeout=0.5)
            except (TimeoutError, asyncio.TimeoutError):
                continue
            except Exception:  # the scheduler is gone: the future says how
                break
            if report([(int(s), float(v)) for s, v in points]):
                event.set()

    def _collect(self, driver: Driver, ref_name: str, res: dict[str, Any]) -> m.Outcome:
        """Fetch the trial's run from the remote (and its artifacts); its outcome."""
        from gitexp.remotes import fetch, fetch_run_artifacts

        metric = driver.spec.metric
        with self._sync, ExpStore(driver.repo_path) as store:
            try:
                fetch(store, self._remote_arg(), prefix=ref_name)  # this run only
            except GitExpError as exc:
                return m.Outcome(m.FAILED, run=ref_name, error=f"fetching the run: {exc}")
            ref = ExpRef.from_ref(ref_name)
            if store.repo.get_ref(ref_name) is None:
                return m.Outcome(m.FAILED, error=f"{ref_name} was pushed but is not on the remote")
            with contextlib.suppress(GitExpError):  # logs: nice to have here, not needed
                fetch_run_artifacts(store, ref_name, self._remote_arg())
            run = store.read(ref)
            status = run.info.get("status")
            value = metric_value(run.summary, metric)
        if status == "finished":
            if metric is not None and value is None:
                error = f"the trial never logged the sweep's metric {metric!r}"
                return m.Outcome(m.FAILED, run=ref_name, error=error)
            return m.Outcome(m.FINISHED, value, ref_name)
        if status == "pruned":
            return m.Outcome(m.PRUNED, value, ref_name)
        error = run.info.get("error") or res.get("error") or f"exit code {res.get('exit_code')}"
        state = m.KILLED if status == "killed" else m.FAILED
        return m.Outcome(state, run=ref_name, error=str(error).strip().splitlines()[-1])

    def close(self, wait: bool = True) -> None:
        """Stop taking trials; the tasks not started are cancelled (a trial already
        running on a worker runs to its end and pushes its run)."""
        if self._closed or self.client is None:
            return
        if not wait and self._futures:
            with contextlib.suppress(Exception):
                self.client.cancel(list(self._futures))
        super().close(wait)
        self._closed = True
        with contextlib.suppress(Exception):
            self.client.close()
