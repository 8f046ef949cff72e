"""Warm job processes (issue 16): one fork server per pipeline run imports the heavy
third-party packages once (torch, Lightning, MLflow and its SQL store, ...) and forks one
child per Snakemake job, so no job pays their import cost again (several seconds a job on
a 2-core machine, more than most of this profile's jobs compute).

How a job runs warm
- The Snakefile's `onstart` starts `python -m lifelearn.warm <socket>` (`start`) and puts
  the socket's path in the environment the jobs inherit (LIFELEARN_WARM_SOCKET). The
  server binds the socket only once its imports are done; it exits with Snakemake (it
  watches its parent) or on `stop` (`onsuccess` / `onerror`).
- A job's glue (workflow/scripts/run_study.py, report.py) calls `run_job_warm_or_here`
  with its entry point: with a server listening it sends the pickled Snakemake job object,
  its working directory, environment and its stdin/stdout/stderr file descriptors
  (SCM_RIGHTS); the forked child takes them over and runs the entry point
  (`lifelearn.studies.run_snakemake_job`, `lifelearn.report.writer.run_snakemake_report`)
  exactly as the glue would, then returns its exit status. Without a server (none started, a cluster node, `warm_jobs:
  false`) the glue runs the job in its own process: the same code, only slower to start.
- If the glue goes away (Snakemake cancels the job), the child kills itself.

What is and is not shared with the server: only imported third-party modules. No project
module but this one and lifelearn.phases (the names of the variables below) is imported
before the fork (an edited source file reaches the next job, as in a fresh process), no MLflow store is opened (each child opens its own), no torch thread pool
or CUDA context exists (`serve` refuses to start if its imports initialised CUDA). Every
job seeds its own generators, so its results equal a fresh process's (tests/test_warm.py
runs one study job both ways). Snakemake's benchmark file measures the glue process only:
the child writes its own CPU time and max RSS into its phases file (lifelearn.phases),
which lifelearn.pipeline_cost adds in.

Light imports only (stdlib): the glue imports this module before it knows which path it takes.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from lifelearn.phases import CREATED_ENV, WARM_ENV  # what a child's phases file reads (light: stdlib)

ENV = "LIFELEARN_WARM_SOCKET"
# third-party packages only (see the module docstring), heaviest first
PRELOAD = ("torch", "pytorch_lightning", "mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
           "sqlalchemy", "alembic", "numpy", "pandas", "scipy.stats", "matplotlib", "seaborn", "psutil", "yaml",
           "snakemake.script")
STUDY_JOB = "lifelearn.studies:run_snakemake_job"  # what a job's glue runs: "<module>:<function>(smk)"
_HEADER = struct.Struct("!Q")  # payload length


# ------------------------------------------------------------------------------ server
def serve(path: str | os.PathLike, parent_pid: int, preload=PRELOAD) -> None:
    """Import `preload`, then accept job requests on the UNIX socket `path`, forking a
    child for each, until the parent process `parent_pid` is gone or SIGTERM arrives."""
    for name in preload:
        importlib.import_module(name)
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("lifelearn.warm: importing the preload initialised CUDA; a forked child could not use it")
    path = Path(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = path.with_name(path.name + ".binding")
    listener.bind(str(partial))
    listener.listen(64)
    os.replace(partial, path)  # clients see the socket only once it accepts
    listener.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set() and os.getppid() == parent_pid:
            try:
                conn, _ = listener.accept()
            except (socket.timeout, InterruptedError):
                continue
            if os.fork() == 0:
                listener.close()
                os._exit(_child(conn))
            conn.close()
    finally:
        listener.close()
        path.unlink(missing_ok=True)


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = conn.recv(min(n, 1 << 20))
        if not chunk:
            raise ConnectionError("lifelearn.warm: the job's glue closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _child(conn: socket.socket) -> int:
    """Run one job in this forked process: take over the glue's stdio, directory and
    environment, run it, send its exit status. Returns the status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    conn.settimeout(None)
    header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    for fd, target in zip(fds, (0, 1, 2)):
        os.dup2(fd, target)
        os.close(fd)
    request = pickle.loads(_recv_exact(conn, _HEADER.unpack(header)[0]))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ[WARM_ENV] = "1"
    sys.path[:0] = [p for p in request["path"] if p not in sys.path]
    done = threading.Event()
    threading.Thread(target=_watch, args=(conn, done), daemon=True).start()
    status = 1
    try:
        smk = pickle.loads(request["job"])
        entry_point(request["entry"])(smk)
        status = 0
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        done.set()
        with contextlib.suppress(OSError):
            conn.sendall(bytes([status & 0xFF]))
    return status


def _watch(conn: socket.socket, done: threading.Event) -> None:
    """Kill this child when its glue disconnects before the job has ended."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    if not done.is_set():
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------ client
def entry_point(entry: str):
    """The function `<module>:<name>` names."""
    module, name = entry.split(":")
    return getattr(importlib.import_module(module), name)


def run_remote(path: str | os.PathLike, smk, entry: str = STUDY_JOB) -> int | None:
    """Run `entry`(smk) for job `smk` in a child of the server at `path`; its exit status,
    or None when no server accepts (the caller then runs the job itself)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    with conn:
        import psutil

        # the glue's own start counts as the job's start-up (lifelearn.phases.startup_seconds)
        env = {**os.environ, CREATED_ENV: repr(psutil.Process().create_time())}
        payload = pickle.dumps({"cwd": os.getcwd(), "env": env, "path": list(sys.path), "entry": entry,
                                "job": pickle.dumps(smk)})
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        socket.send_fds(conn, [_HEADER.pack(len(payload))], [0, 1, 2])
        conn.sendall(payload)
        status = conn.recv(1)
    return status[0] if status else 1  # no status: the child died (killed, crashed)


def run_job_warm_or_here(smk, entry: str = STUDY_JOB) -> None:
    """The glue of a job: `entry`(smk) in a warm child when a server listens (exit with
    its status), else in this process."""
    path = os.environ.get(ENV)
    if path and os.path.exists(path):
        status = run_remote(path, smk, entry)
        if status is not None:
            sys.exit(status)
    entry_point(entry)(smk)


# ------------------------------------------------------------------------ life cycle
def start(python: str = sys.executable) -> tuple[subprocess.Popen, str]:
    """Start a server for this process's jobs (its socket in a private temp directory, in
    the environment jobs inherit); returns it and the socket path. It binds the socket when
    its imports are done: jobs starting before then run in their own process."""
    directory = tempfile.mkdtemp(prefix="lifelearn-warm-")  # mode 700: only this user connects
    path = os.path.join(directory, "socket")
    env = {k: v for k, v in os.environ.items() if k != ENV}
    server = subprocess.Popen([python, "-m", "lifelearn.warm", path, str(os.getpid())], env=env,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    os.environ[ENV] = path
    return server, path


def stop(server: subprocess.Popen | None, path: str | None, timeout: float = 10.0) -> None:
    """Stop a server `start` started (running children finish on their own)."""
    os.environ.pop(ENV, None)
    if server is not None and server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout)
        except subprocess.TimeoutExpired:
            server.kill()
    if path:
        Path(path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))


def wait_ready(path: str | os.PathLike, timeout: float = 120.0) -> bool:
    """Whether the server's socket appeared within `timeout` seconds (tests, benchmarks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
