"""Real servers on 127.0.0.1 for the sharing tests, started and stopped by fixtures.

- ``git_daemon``: ``git daemon --enable=receive-pack`` over a base directory;
- ``git_http``: smart HTTP, a ThreadingHTTPServer running ``git http-backend``
  as a CGI per request (chunked bodies de-chunked), with a gate that lets a
  test hold a push half-way;
- ``sshd``: ``/usr/sbin/sshd`` with throwaway host and user keys;
- ``s3``: a moto S3 server;
- ``dask_cluster``: ``dask scheduler`` and two ``dask worker`` processes.

A server that cannot be had here skips its tests, unless GITEXP_REQUIRE_SERVERS=1
(CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def require(ok: bool, what: str) -> None:
    """Skip when a server or package is not available; fail instead in CI
    (``CI=true``) and under ``GITEXP_REQUIRE_SERVERS=1``, which ``.ci/run`` sets."""
    if ok:
        return
    if os.environ.get("GITEXP_REQUIRE_SERVERS") == "1" or os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI but not available")
    pytest.skip(f"{what} not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def bare(base: Path, name: str) -> Path:
    """A new bare repository under a server's base directory."""
    path = base / name
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ daemon


@dataclass
class Daemon:
    base: Path
    port: int

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def git_daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("daemon")
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            "--informative-errors",
            f"--base-path={base}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield Daemon(base, port)
    finally:
        stop(proc)


# -------------------------------------------------------------------- http


@dataclass
class HTTPGit:
    base: Path
    port: int
    # set ``hold`` to make the next receive-pack POST wait until ``release`` is set
    hold: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


def _backend() -> str:
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return os.path.join(exec_path, "git-http-backend")


def _handler(state: HTTPGit, backend: str) -> type[BaseHTTPRequestHandler]:
    class GitHTTPHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    line = self.rfile.readline()
                    if not line:
                        raise ConnectionError("client went away mid-body")
                    size = int(line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    chunk = self.rfile.read(size)
                    if len(chunk) != size:
                        raise ConnectionError("client went away mid-chunk")
                    parts.append(chunk)
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length) if length else b""
            if len(data) != length:
                raise ConnectionError("client went away mid-body")
            return data

        def _cgi(self) -> None:
            path, _, query = self.path.partition("?")
            if self.command == "POST" and path.endswith("git-receive-pack") and state.hold.is_set():
                state.arrived.set()
                state.release.wait(30)
            try:
                body = self._body()
            except (ConnectionError, ValueError, OSError):
                return
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(state.base),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REMOTE_USER": "test",
                "REMOTE_ADDR": "127.0.0.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "GIT_CONFIG_NOSYSTEM": "1",
                "HOME": str(state.base),
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            proc = subprocess.run([backend], input=body, env=env, capture_output=True)
            out = proc.stdout
            sep = out.find(b"\r\n\r\n")
            head, payload = (out[:sep], out[sep + 4 :]) if sep >= 0 else out.split(b"\n\n", 1)
            status = 200
            headers = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            try:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass

    return GitHTTPHandler


def start_http(base: Path) -> tuple[HTTPGit, ThreadingHTTPServer]:
    """Smart HTTP over the bare repositories under ``base``, in a thread (also
    used by bench/bench_scale.py); stop it with :func:`stop_http`."""
    state = HTTPGit(base, 0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, _backend()))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return state, httpd


def stop_http(state: HTTPGit, httpd: ThreadingHTTPServer) -> None:
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def git_http(tmp_path_factory):
    state, httpd = start_http(tmp_path_factory.mktemp("http"))
    try:
        yield state
    finally:
        stop_http(state, httpd)


# --------------------------------------------------------------------- ssh

SSHD = "/usr/sbin/sshd"


@dataclass
class SSHServer:
    base: Path
    port: int
    command: str  # for GIT_SSH_COMMAND / dulwich ssh_command

    def url(self, name: str) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{self.base}/{name}"


def sshd_available() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh") is not None and os.geteuid() == 0


def start_sshd(tmp: Path) -> tuple[SSHServer, subprocess.Popen]:
    """``sshd -D`` on 127.0.0.1 with throwaway keys under ``tmp`` (also used by
    bench/bench_scale.py); stop the process with :func:`stop`."""
    base = tmp / "repos"
    base.mkdir()
    for key in ("ssh_host_ed25519_key", "id_ed25519"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / key)], check=True
        )
    shutil.copy(tmp / "id_ed25519.pub", tmp / "authorized_keys")
    port = free_port()
    (tmp / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {tmp}/ssh_host_ed25519_key\n"
        f"PidFile {tmp}/sshd.pid\nAuthorizedKeysFile {tmp}/authorized_keys\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nAllowTcpForwarding no\n"
        "X11Forwarding no\nPrintMotd no\nLogLevel ERROR\n"
    )
    host_pub = (tmp / "ssh_host_ed25519_key.pub").read_text().split()
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    command = (
        f"ssh -i {tmp}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes "
        f"-o UserKnownHostsFile={tmp}/known_hosts -o StrictHostKeyChecking=yes "
        "-o GlobalKnownHostsFile=/dev/null"
    )
    try:
        wait_port(port, proc)
    except BaseException:
        stop(proc)
        raise
    return SSHServer(base, port, command), proc


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    require(sshd_available(), "sshd (as root)")
    server, proc = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        stop(proc)


# ---------------------------------------------------------------------- s3

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


@dataclass
class S3Server:
    endpoint: str

    def url(self, bucket: str, prefix: str = "") -> str:
        path = f"{bucket}/{prefix}".rstrip("/")
        return f"s3://{path}?endpoint_override={self.endpoint}&scheme=http&region=us-east-1"

    def make_bucket(self, bucket: str) -> None:
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(
            access_key="testing",
            secret_key="testing",
            endpoint_override=self.endpoint,
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        fs.create_dir(bucket)


@pytest.fixture(scope="session")
def s3():
    try:
        import logging

        from moto.server import ThreadedMotoServer
    except ImportError:
        require(False, "moto (pip install 'moto[s3]' flask flask-cors)")
    for k, v in S3_ENV.items():
        os.environ.setdefault(k, v)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    _, port = srv.get_host_and_port()
    try:
        yield S3Server(f"127.0.0.1:{port}")
    finally:
        srv.stop()


# -------------------------------------------------------------------- dask


@dataclass
class DaskCluster:
    port: int
    workers: list[Path]  # each worker's local directory (its clones live below)

    @property
    def address(self) -> str:
        return f"dask://127.0.0.1:{self.port}"


def _dask_env(home: Path) -> dict[str, str]:
    """The environment of the cluster's processes: no git or git-exp settings
    from outside, a git identity of its own (workers commit runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITEXP_"))}
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").write_text("[user]\n\tname = Dask Worker\n\temail = worker@example.com\n")
    env.update(
        HOME=str(home), GIT_CONFIG_NOSYSTEM="1", TZ="UTC", DASK_DISTRIBUTED__WORKER__DAEMON="False"
    )
    return env


def _wait_workers(log: Path, n: int, procs: list[subprocess.Popen], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a Dask process exited: {log.read_text()[-2000:]}")
        if log.read_text().count("Register worker") >= n:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{n} Dask workers did not register: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes (one thread each) on
    127.0.0.1, separate processes started from this interpreter's bin/."""
    bindir = Path(sys.executable).parent
    dask = bindir / "dask"
    try:
        import distributed  # noqa: F401
    except ImportError:
        require(False, "Dask distributed (pip install 'git-exp[dask]')")
    require(dask.exists(), f"the dask command ({dask})")
    base = tmp_path_factory.mktemp("dask")
    env = _dask_env(base / "home")
    port = free_port()
    log = base / "scheduler.log"
    procs: list[subprocess.Popen] = []
    with open(log, "wb") as out:
        procs.append(
            subprocess.Popen(
                [
                    str(dask),
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-dashboard",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=base,
            )
        )
    workers = []
    try:  # the workers start beside the scheduler (they retry until it listens)
        for i in range(2):
            local = base / f"worker{i}"
            local.mkdir()
            workers.append(local)
            with open(base / f"worker{i}.log", "wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            str(dask),
                            "worker",
                            f"tcp://127.0.0.1:{port}",
                            "--host",
                            "127.0.0.1",
                            "--nthreads",
                            "1",
                            "--no-dashboard",
                            "--no-nanny",
                            "--name",
                            f"worker{i}",
                            "--local-directory",
                            str(local),
                            "--preload",  # imports what a trial needs before the first one
                            "gitexp.sweeps.worker",
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=local,
                    )
                )
        _wait_workers(log, 2, procs)
        yield DaskCluster(port, workers)
    finally:
        for p in procs:  # all at once: each takes a moment to close
            p.terminate()
        for p in procs:
            stop(p)
