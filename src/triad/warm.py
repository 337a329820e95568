"""Warm stages: a pipeline's ``triad stage`` commands run in forks of one process that has already
imported torch, Lightning, MLflow and the heads.

Every ``triad stage`` is a new Python process, and on 2 cores one spends 8-10 s importing torch,
Lightning (which imports torch's compiler and torchmetrics) and MLflow before it does anything: a
prepare stage whose work takes 0.6 s took 9.9 s. A pipeline runs a dozen or more stages, and the tests
run many small pipelines.

So the flow starts one *warm server* per run (``start``), which imports all of that once and then
waits on a Unix socket. The stage commands in ``dvc.yaml`` do not change: ``triad stage ...`` looks for
``$TRIAD_WARM_SOCKET`` and, when a server answers there, hands it the stage (``delegate``):

- the client sends its arguments, working directory, environment, ``sys.path``, and its own standard
  input, output and error as file descriptors (``SCM_RIGHTS``), so the stage writes straight into the
  pipe or terminal that the flow reads, exactly as the client would have;
- the server forks; the child takes those descriptors as 0, 1 and 2, that directory and environment,
  and runs ``triad.cli.main`` on the arguments; the server sends the child's pid, then its exit status;
- the client exits with the child's status, and dies of the same signal when the child did (so a killed
  stage still counts as killed: ``StageFailed.transient``). A SIGINT or SIGTERM sent to the client is
  passed on to the child; if the client dies outright, the server kills the child.

Anything that cannot be trusted to be the same as a fresh process is not sent to the server: the client
runs the stage itself when the socket is not there or does not answer, when the server was started under
another interpreter or another import-time environment (``PYTHONPATH``, ``TRIAD_HEADS``, thread counts:
``FINGERPRINT_KEYS``), or when ``fork`` is not available. A stage's outputs are the same either way
(``tests/spine/test_warm.py`` compares them byte for byte). ``pipeline.warm_stages: false`` turns it off.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ENV = "TRIAD_WARM_SOCKET"
# Read at import time by the interpreter, torch or the head registry: a stage run under other values
# than the server's must start fresh.
FINGERPRINT_KEYS = ("PYTHONPATH", "PYTHONHASHSEED", "TRIAD_HEADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
FINGERPRINT_PREFIXES = ("CUDA_", "PYTORCH_", "TORCH_")
_HEADER = struct.Struct("!I")  # the length of the JSON request that follows the descriptors
forked_from: int | None = None  # in a stage run by a warm server: the server's pid


def fingerprint(env: dict[str, str] | os._Environ) -> dict[str, str]:
    """What a process's imports depend on: its interpreter and the import-time environment variables."""
    keys = [k for k in env if k in FINGERPRINT_KEYS or k.startswith(FINGERPRINT_PREFIXES)]
    return {"executable": sys.executable, **{k: env[k] for k in sorted(keys)}}


# --- the client: `triad stage` -------------------------------------------------------------------


def delegate(argv: list[str]) -> int | None:
    """Run ``triad <argv>`` on the warm server named by ``$TRIAD_WARM_SOCKET``; its exit code, or None
    when there is no usable server (the caller then runs the stage itself). A child killed by a signal
    kills this process with the same signal."""
    path = os.environ.get(ENV)
    if not path or not hasattr(os, "fork"):
        return None
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        return None
    with conn:
        request = json.dumps(
            {
                "argv": argv,
                "argv0": sys.argv[0],
                "cwd": os.getcwd(),
                "env": {k: v for k, v in os.environ.items() if k != ENV},
                "sys_path": sys.path,
                "fingerprint": fingerprint(os.environ),
            }
        ).encode()
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            socket.send_fds(conn, [_HEADER.pack(len(request))], [0, 1, 2])
            conn.sendall(request)
            reader = conn.makefile("r")
            first = reader.readline().split()
        except OSError:
            return None
        if first[:1] != ["pid"]:  # refused ("no <reason>"): run it here
            return None
        child = int(first[1])
        previous = {sig: signal.signal(sig, lambda s, _f: _pass_on(child, s)) for sig in _PASSED_ON}
        try:
            last = reader.readline().split()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if last[:1] == ["signal"]:
        signum = int(last[1])
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum  # not reached unless the signal is blocked
    if last[:1] == ["exit"]:
        return int(last[1])
    print(f"triad: error: the warm stage server at {path} stopped before the stage ended", file=sys.stderr)
    return 1


_PASSED_ON = (signal.SIGINT, signal.SIGTERM)


def _pass_on(child: int, signum: int) -> None:
    """Pass a signal the client got on to its stage; not a terminal's Ctrl-C, which reaches the stage
    itself (the server, and so the stage, is in the flow's process group), so that it gets it once."""
    try:
        if signum == signal.SIGINT and os.getpgid(child) == os.getpgrp():
            return
        os.kill(child, signum)
    except ProcessLookupError:
        pass


# --- the server ----------------------------------------------------------------------------------


def preload() -> None:
    """Import what stages import: torch, Lightning, MLflow, the spine's steps and every head's modules."""
    from importlib import import_module

    for name in ("torch", "lightning", "mlflow", "mlflow.pyfunc", "triad.prepare", "triad.train", "triad.evaluate"):
        import_module(name)
    from triad.heads import registry

    for spec in registry().values():
        for part in ("head", "cli"):
            try:
                import_module(f"{spec.package}.{part}")
            except ImportError:  # a stage that needs it will say so itself
                pass


@dataclass
class _Running:
    conn: socket.socket
    pid: int


@dataclass
class Stage:
    """What a forked child runs: the client's descriptors and request."""

    fds: list[int]
    request: dict
    imports_set: dict[str, str]  # what the server's imports set in its environment


def serve(path: str, parent: int) -> Stage | None:
    """Listen on ``path`` and fork a child per request, until ``parent`` is gone or SIGTERM arrives; then
    terminate children still running (their clients see the server go) and return None. In a child it
    returns the ``Stage`` to run (``run_stage``), so that the child ends as a fresh process would:
    through the interpreter's own exit, which joins threads and runs ``atexit`` hooks (MLflow's among them)."""
    server = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)  # requests made while the imports below run wait here
    own, before = fingerprint(os.environ), dict(os.environ)
    preload()
    # what the imports set in the environment (torch's KMP_INIT_AT_FORK, say): a fresh process would
    # have it too, so the child gets it on top of the client's environment
    own["imports_set"] = {k: v for k, v in os.environ.items() if before.get(k) != v}
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the stages; the flow stops us
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    running: dict[int, _Running] = {}
    try:
        while not stopping and os.getppid() == parent:
            for key, _ in selector.select(timeout=0.1):
                if key.fileobj is not listener:  # a client hung up while its stage ran: it died, so the stage goes
                    _kill(key.data, signal.SIGKILL)
                    continue
                conn, _ = listener.accept()
                started = _start(conn, own)
                if isinstance(started, Stage):  # in the child: leave the server behind
                    selector.close()
                    listener.close()
                    for other in running.values():
                        other.conn.close()
                    return started
                if started is None:
                    conn.close()
                else:
                    running[started.pid] = started
                    selector.register(conn, selectors.EVENT_READ, started.pid)
            _reap(running, selector)
    finally:
        if os.getpid() == server:
            for child in running.values():
                _kill(child.pid, signal.SIGTERM)
            listener.close()
            Path(path).unlink(missing_ok=True)
    return None


def _start(conn: socket.socket, own: dict) -> _Running | Stage | None:
    """Read a request and fork its child: the child's ``_Running`` in the server, the ``Stage`` in the
    child, None when the request was refused or broken."""
    try:
        conn.settimeout(10)
        header, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
        (length,) = _HEADER.unpack(header)
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                raise OSError("short request")
            body += chunk
        request = json.loads(body)
    except (OSError, ValueError, struct.error):
        return None
    if len(fds) != 3 or {**request.get("fingerprint", {}), "imports_set": own["imports_set"]} != own:
        _close(fds)
        try:
            conn.sendall(b"no: another interpreter or import-time environment\n")
        except OSError:
            pass
        return None
    pid = os.fork()
    if pid == 0:
        conn.close()
        return Stage(fds, request, own["imports_set"])
    _close(fds)  # the child has its own copies: the client's pipes must close when the stage ends
    try:
        conn.sendall(f"pid {pid}\n".encode())
        conn.settimeout(None)
    except OSError:  # the client is gone already
        _kill(pid, signal.SIGKILL)
    return _Running(conn, pid)


def run_stage(stage: Stage) -> int:
    """In the forked child: become the client (its streams, directory, environment, ``sys.path`` and
    arguments) and run ``triad.cli.main``; its exit code."""
    for sig in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(stage.fds):
        os.dup2(fd, target)
    _close(stage.fds)
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    request = stage.request
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.update(stage.imports_set)
    sys.path[:] = request["sys_path"]
    sys.argv = [request["argv0"], *request["argv"]]
    global forked_from
    forked_from = os.getppid()
    from triad.cli import main

    return main(request["argv"])


def _reap(running: dict[int, _Running], selector: selectors.BaseSelector) -> None:
    """Tell the client of each child that ended how it ended: ``exit N`` or ``signal N``."""
    for pid in list(running):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 1 << 8
        if done == 0:
            continue
        child = running.pop(pid)
        selector.unregister(child.conn)
        if os.WIFSIGNALED(status):
            message = f"signal {os.WTERMSIG(status)}\n"
        else:
            message = f"exit {os.waitstatus_to_exitcode(status)}\n"
        try:
            child.conn.sendall(message.encode())
        except OSError:
            pass
        child.conn.close()


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# --- the flow's side -----------------------------------------------------------------------------


class WarmServer:
    """A warm server for one pipeline run: ``env()`` is what its stages need in their environment."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.folder = tempfile.mkdtemp(prefix="triad-warm-")  # short: a socket path is at most 107 bytes
        self.path = os.path.join(self.folder, "stages.sock")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "triad.warm", self.path, str(os.getpid())],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30  # the socket is bound before the imports, so this is quick
        while not os.path.exists(self.path) and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def env(self) -> dict[str, str]:
        return {ENV: self.path} if self.process.poll() is None else {}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        Path(self.path).unlink(missing_ok=True)
        try:
            os.rmdir(self.folder)
        except OSError:
            pass

    def __enter__(self) -> WarmServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class OnFirstUse:
    """A pipeline run's warm server, started when its first stage runs (a run with nothing to do starts
    none) and shared by its stages, which run in threads of the flow's process."""

    def __init__(self, root: Path, enabled: bool = True):
        self.root, self.enabled = root, enabled
        self.server: WarmServer | None = None
        self._lock = threading.Lock()

    def env(self) -> dict[str, str]:
        """What a stage about to run adds to its environment: the server's socket, if there is one."""
        with self._lock:
            if self.enabled and self.server is None:
                from triad.dag import stage_environment

                self.server = start(self.root, stage_environment())
                self.enabled = self.server is not None
            return self.server.env() if self.server else {}

    def stop(self) -> None:
        with self._lock:
            if self.server is not None:
                self.server.stop()
            self.server, self.enabled = None, False


def start(root: Path, env: dict[str, str]) -> WarmServer | None:
    """A warm server for the stages run from ``root`` with ``env``, or None where ``fork`` is missing."""
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        return None
    return WarmServer(root, env)


if __name__ == "__main__":  # python -m triad.warm SOCKET PARENT_PID
    from triad import warm  # the module itself, not this __main__ copy: stages read triad.warm.forked_from

    stage = warm.serve(sys.argv[1], int(sys.argv[2]))
    if stage is not None:
        sys.exit(warm.run_stage(stage))
