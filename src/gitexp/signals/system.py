"""System metrics: what a run's processes and its machine are doing.

A :class:`SystemSampler` samples, every ``interval`` seconds in a thread of its
own, the process tree of one process (the command ``git exp run`` started, or
the process that called ``start_run``, with its children: data-loader
workers, subprocesses) and the machine, and hands the values to a ``log``
callable as ordinary metrics under ``system/`` at steps 0, 1, 2... The first
sample is taken one interval into the run (a CPU share needs an interval).

Through psutil, never our own ``/proc`` parsing. NVIDIA GPUs through NVML
(``nvidia-ml-py``, the ``gpu`` extra), imported only when the machine has an
NVIDIA device: without one, GPUs cost one ``stat``.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

DEFAULT_INTERVAL = 5.0  # seconds between samples
PRIME_DELAY = 0.5  # seconds after the start before the baseline is taken
MIN_INTERVAL = 0.05

_log = logging.getLogger("gitexp")

# the keys, for the docs and the tests (GPU keys repeat per device as system/gpu<i>/...)
KEYS = (
    "system/cpu_percent",  # the process tree's CPU use; 100 = one core busy
    "system/rss_bytes",  # the process tree's resident memory
    "system/processes",  # processes in the tree
    "system/memory_percent",  # the machine's memory in use
    "system/disk_read_bytes",  # bytes the tree read from storage since the run started
    "system/disk_write_bytes",  # ... and wrote
    "system/net_sent_bytes",  # bytes the machine sent (loopback aside) since the run started
    "system/net_recv_bytes",  # ... and received
)
GPU_KEYS = (
    "utilization_percent",
    "memory_used_bytes",
    "memory_percent",
    "power_watts",
    "temperature_c",
)


def nvidia_present() -> bool:
    """True when the machine shows an NVIDIA device (a file test, no import)."""
    return os.path.exists("/dev/nvidiactl") or bool(glob.glob("/dev/nvidia[0-9]*"))


class _Gpus:
    """NVML handles of the machine's NVIDIA GPUs (empty without a GPU or NVML)."""

    def __init__(self) -> None:
        self.nvml: Any = None
        self.handles: list[Any] = []
        self.problem: str | None = None
        if not nvidia_present():
            return
        try:
            import pynvml
        except ImportError:
            self.problem = (
                "an NVIDIA GPU is present but nvidia-ml-py is not installed: no GPU "
                "metrics (pip install 'git-exp[gpu]')"
            )
            return
        try:
            pynvml.nvmlInit()
            self.handles = [
                pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
            ]
            self.nvml = pynvml
        except Exception as exc:  # NVMLError and its many subclasses; a driver mismatch
            self.problem = f"NVML could not be used, no GPU metrics: {exc}"
            self.handles = []

    def _value(self, name: str, handle: Any) -> float:
        nvml = self.nvml
        if name == "utilization_percent":
            return float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        if name == "power_watts":
            return float(nvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0  # milliwatts
        if name == "temperature_c":
            return float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        if name == "memory_used_bytes":
            return float(mem.used)
        return 100.0 * float(mem.used) / max(1.0, float(mem.total))  # memory_percent

    def sample(self, out: dict[str, float]) -> None:
        for i, handle in enumerate(self.handles):
            for name in GPU_KEYS:
                try:
                    out[f"system/gpu{i}/{name}"] = self._value(name, handle)
                except Exception:  # a field this GPU does not support: left out
                    continue

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass
            self.nvml = None
            self.handles = []


class SystemSampler:
    """Samples a process tree and the machine in a background thread.

    Args:
        log: called with ``(values, step)`` for each sample (``run.log_metrics``).
        pid: the root of the process tree (default: this process).
        interval: seconds between samples.
    """

    def __init__(
        self,
        log: Callable[[dict[str, float], int], None],
        pid: int | None = None,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.log = log
        self.pid = os.getpid() if pid is None else pid
        self.interval = max(MIN_INTERVAL, float(interval))
        self.samples = 0
        self.seconds = 0.0  # time spent sampling (CPU of this process's sampler thread)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, Any] = {}
        self._io: dict[int, tuple[int, int]] = {}
        self._disk = [0, 0]
        self._cpu_total: float | None = None
        self._cpu_at = 0.0
        self._net0: tuple[int, int] | None = None
        self._gpus: _Gpus | None = None
        self._reported = False

    # ------------------------------------------------------------- sampling
    def prime(self) -> None:
        """Import psutil and NVML and take the baseline a first share is measured
        from: everything a sample will use is loaded now (nothing is imported
        later, at interpreter exit or in a background thread)."""
        self._load()
        self._net0 = self._net()
        self._measure(baseline=True)

    def _load(self) -> None:
        """Import psutil (and NVML, when an NVIDIA device is there)."""
        if self._gpus is not None:
            return
        import psutil

        self._psutil = psutil
        self._gpus = _Gpus()
        if self._gpus.problem:
            _log.warning("git-exp: %s", self._gpus.problem)

    def _net(self) -> tuple[int, int] | None:
        """Bytes sent and received by the machine's interfaces, loopback left out."""
        try:
            nics = self._psutil.net_io_counters(pernic=True)
        except (OSError, RuntimeError):
            return None
        sent = recv = 0
        for name, c in nics.items():
            if name == "lo" or name.startswith("lo"):
                continue
            sent += c.bytes_sent
            recv += c.bytes_recv
        return sent, recv

    def _tree(self) -> list[Any]:
        psutil = self._psutil
        root = self._procs.get(self.pid)
        if root is None:
            root = psutil.Process(self.pid)
            self._procs[self.pid] = root
        procs = [root]
        try:
            procs += root.children(recursive=True)
        except psutil.Error:
            pass
        # keep the Process objects: psutil checks a pid was not reused through them
        live = {}
        for p in procs:
            live[p.pid] = self._procs.get(p.pid, p)
        self._procs = live
        return list(live.values())

    def _measure(self, baseline: bool = False) -> dict[str, float]:
        psutil = self._psutil
        now = time.monotonic()
        out: dict[str, float] = {}
        cpu = 0.0
        rss = 0
        alive = 0
        for p in self._tree():
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    mem = p.memory_info()
                    io = p.io_counters() if hasattr(p, "io_counters") else None
            except psutil.Error:  # gone (or not ours to read) since it was listed
                continue
            alive += 1
            # a process's own time and that of the children it reaped: a worker that
            # exits is counted by its parent from then on
            cpu += t.user + t.system + getattr(t, "children_user", 0.0)
            cpu += getattr(t, "children_system", 0.0)
            rss += mem.rss
            if io is not None:
                # a process already there at the start counts from then; one started
                # since, from its beginning
                before = self._io.get(p.pid)
                if before is None:
                    before = (io.read_bytes, io.write_bytes) if baseline else (0, 0)
                self._disk[0] += max(0, io.read_bytes - before[0])
                self._disk[1] += max(0, io.write_bytes - before[1])
                self._io[p.pid] = (io.read_bytes, io.write_bytes)
        if alive == 0:
            return {}
        if self._cpu_total is not None and now > self._cpu_at:
            share = 100.0 * (cpu - self._cpu_total) / (now - self._cpu_at)
            out["system/cpu_percent"] = max(0.0, share)
        self._cpu_total, self._cpu_at = cpu, now
        out["system/rss_bytes"] = float(rss)
        out["system/processes"] = float(alive)
        out["system/memory_percent"] = float(psutil.virtual_memory().percent)
        if self._io:
            out["system/disk_read_bytes"] = float(self._disk[0])
            out["system/disk_write_bytes"] = float(self._disk[1])
        net = self._net()
        if net is not None and self._net0 is not None:
            out["system/net_sent_bytes"] = float(max(0, net[0] - self._net0[0]))
            out["system/net_recv_bytes"] = float(max(0, net[1] - self._net0[1]))
        if self._gpus is not None:
            self._gpus.sample(out)
        return out

    def sample(self) -> dict[str, float]:
        """One sample now (empty when the process tree is gone)."""
        return self._measure()

    def sample_and_log(self) -> bool:
        """Take one sample and log it; False when there was nothing to log."""
        started = time.thread_time()
        try:
            values = self._measure()
            if values:
                self.log(values, self.samples)
                self.samples += 1
            return bool(values)
        finally:
            self.seconds += time.thread_time() - started

    # --------------------------------------------------------------- thread
    def start(self) -> None:
        """Sample every ``interval`` seconds until :meth:`stop`.

        psutil is imported here, in the caller's thread (nothing is imported in
        the background or at exit); the baseline (a walk of the process tree,
        the machine's counters: a few milliseconds of CPU) is taken by the
        sampler's own thread after PRIME_DELAY (or one interval, if shorter):
        a run shorter than that is not slowed by it, and records no samples."""
        if self._thread is not None:
            return
        self._load()
        self._thread = threading.Thread(target=self._loop, name="gitexp-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        if self._stop.wait(min(self.interval, PRIME_DELAY)):
            return
        try:
            self.prime()
        except Exception as exc:  # never break the run; say it once
            self._reported = True
            _log.warning("git-exp: system metrics not sampled: %s", exc)
            return
        while not self._stop.wait(self.interval):
            try:
                self.sample_and_log()
            except Exception as exc:  # never break the run; say it once
                if not self._reported:
                    self._reported = True
                    _log.warning("git-exp: system metrics not sampled: %s", exc)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop sampling (waits at most ``timeout`` for a sample in progress)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self._gpus is not None and (t is None or not t.is_alive()):
            self._gpus.close()
