"""Shared services for a team on one machine: PostgreSQL, an MLflow tracking server, a Prefect server and worker.

``triad services up`` starts, listening on 127.0.0.1 only:

==========  ==================================================================================
postgres    Debian's PostgreSQL (``initdb`` once, then ``pg_ctl start``); data and socket in
            ``<home>/postgres``; databases ``mlflow`` and ``prefect``; password auth (scram).
mlflow      ``mlflow server``: backend store ``postgresql://.../mlflow``, artifacts proxied by the
            server into ``<home>/mlartifacts``.
prefect     ``prefect server start``; its database is ``postgresql+asyncpg://.../prefect``.
worker      ``prefect worker start --pool triad-process`` (a process work pool). The pools in
            ``POOLS`` (``triad-process`` and the GPU pool ``triad-gpu``) are created on the server.
==========  ==================================================================================

``<home>`` is ``<project>/.triad/services`` unless ``TRIAD_SERVICES_DIR`` (or ``--dir``) says otherwise.
Each server is a detached process (its own session) with a pid file in ``<home>/pids`` and a log in
``<home>/logs``; PostgreSQL keeps its own ``postmaster.pid``. ``up`` starts only what is not already
running and healthy; ``down`` stops everything, worker first; ``status`` probes each one.

Ports are free ports picked on the first ``up`` and kept in ``<home>/services.json`` (mode 0600, with
the generated database password), so the URLs stay the same from one ``up`` to the next.

PostgreSQL refuses to run as root: when triad runs as root, PostgreSQL's commands run as the
``postgres`` user (Debian's package creates it), which must be able to reach ``<home>``.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from triad.errors import TriadError

DATABASES = ("mlflow", "prefect")
DB_USER = "triad"
WORKER_POOL = "triad-process"
# Work pools created on the Prefect server: name -> (description, concurrency limit or None).
POOLS = {
    "triad-process": ("CPU workers: any stage of the pipeline, as many runs at once as the worker allows.", None),
    "triad-gpu": (
        "GPU workers: the pipeline with trainer=gpu (prefect.yaml: nightly-gpu); one run per pool "
        "at a time so runs do not share a GPU. Start one worker per GPU machine.",
        1,
    ),
}
START_TIMEOUT_S = 180.0
# SIGTERM, then SIGKILL after this long (docker stop's default). Each service stopped in 0.3-1.8 s when it
# stopped on SIGTERM (2026-12-04); one that has not within 10 s is stuck.
STOP_TIMEOUT_S = 10.0


class ServiceError(TriadError):
    """A shared service could not be started, reached or stopped."""


# --- where things are --------------------------------------------------------------------------------
def default_home() -> Path:
    """``$TRIAD_SERVICES_DIR``, else ``<project>/.triad/services``."""
    if env := os.environ.get("TRIAD_SERVICES_DIR"):
        return Path(env).resolve()
    from triad.config import project_root

    return project_root() / ".triad" / "services"


@dataclass(frozen=True)
class Layout:
    """Every path under a services home."""

    home: Path

    @property
    def state(self) -> Path:
        return self.home / "services.json"

    @property
    def pg(self) -> Path:
        return self.home / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg / "run"

    @property
    def pg_log(self) -> Path:
        return self.pg / "postgres.log"

    @property
    def artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    def pid(self, name: str) -> Path:
        return self.home / "pids" / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def load_state(layout: Layout, create: bool = False) -> dict:
    """``services.json``: ``{"ports": {"postgres": int, "mlflow": int, "prefect": int}, "password": str}``."""
    if layout.state.is_file():
        return json.loads(layout.state.read_text())
    if not create:
        raise ServiceError(
            f"no services in {layout.home} (no {layout.state.name}): start them with `triad services up`"
        )
    state = {
        "ports": {name: free_port() for name in ("postgres", "mlflow", "prefect")},
        "password": secrets.token_urlsafe(24),
    }
    layout.home.mkdir(parents=True, exist_ok=True)
    layout.state.touch(mode=0o600)
    layout.state.write_text(json.dumps(state, indent=2) + "\n")
    return state


def database_url(state: dict, database: str, driver: str = "postgresql") -> str:
    """SQLAlchemy URL of one of the service databases (``driver`` e.g. ``postgresql+asyncpg``)."""
    return f"{driver}://{DB_USER}:{state['password']}@127.0.0.1:{state['ports']['postgres']}/{database}"


def client_env(state: dict) -> dict[str, str]:
    """What a client exports to use the services: the MLflow and Prefect API URLs."""
    return {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{state['ports']['mlflow']}",
        "PREFECT_API_URL": f"http://127.0.0.1:{state['ports']['prefect']}/api",
    }


# --- detached processes --------------------------------------------------------------------------------
def _pid(layout: Layout, name: str) -> int | None:
    """The pid in ``name``'s pid file if that process is alive (not a zombie), else None."""
    try:
        pid = int(layout.pid(name).read_text().split()[0])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, IndexError):
        return None
    return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid


def _spawn(layout: Layout, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> int:
    """Start ``argv`` detached (own session, stdout+stderr appended to its log), record its pid."""
    for folder in (layout.pid(name).parent, layout.log(name).parent):
        folder.mkdir(parents=True, exist_ok=True)
    with open(layout.log(name), "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    layout.pid(name).write_text(f"{process.pid}\n")
    return process.pid


def _stop(layout: Layout, name: str) -> bool:
    """SIGTERM ``name``'s process group, SIGKILL it after ``STOP_TIMEOUT_S``; True if it was running."""
    pid = _pid(layout, name)
    layout.pid(name).unlink(missing_ok=True)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        _say(f"{name}: did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM; killed")
        _signal_group(pid, signal.SIGKILL)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the process leads its own session: this reaches its children too
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child and has exited
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_ok(url: str, expect: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200 and expect in response.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return False


def _wait(
    what: str, healthy: Callable[[], bool], alive: Callable[[], bool], log: Path, timeout: float = START_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy():
            return
        if not alive():
            raise ServiceError(f"{what} exited while starting. The end of {log}:\n{_log_tail(log)}")
        time.sleep(0.5)
    raise ServiceError(f"{what} did not become healthy within {timeout:.0f}s. The end of {log}:\n{_log_tail(log)}")


# --- PostgreSQL ----------------------------------------------------------------------------------------
def pg_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: from PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    if found := shutil.which("initdb"):
        folder = Path(found).resolve().parent
        if (folder / "pg_ctl").exists():
            return folder
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")],
    )
    return candidates[-1].parent if candidates else None


def _require_pg_bin() -> Path:
    folder = pg_bin_dir()
    if folder is None:
        raise ServiceError(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin). "
            "Install Debian's package: apt-get install -y postgresql"
        )
    return folder


def _pg_user() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: ``postgres`` when we are root (it refuses root); None: ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceError(
            "running as root, PostgreSQL needs a `postgres` user to run as "
            "(Debian's postgresql package creates it), or run triad as a normal user"
        ) from None


def _check_reachable(path: Path, user: pwd.struct_passwd) -> None:
    """Every folder above ``path`` must let ``user`` through (search permission)."""
    for folder in reversed(path.parents):
        st = folder.stat()
        if st.st_uid == user.pw_uid or st.st_mode & 0o001:
            continue
        raise ServiceError(
            f"PostgreSQL runs as user {user.pw_name!r} (it refuses root) and cannot reach {path}: "
            f"{folder} is not searchable by others. Choose another --dir (e.g. /var/tmp/triad-services) "
            f"or `chmod o+x {folder}`"
        )


def _pg_run(args: list[str], layout: Layout, check: bool = True) -> subprocess.CompletedProcess:
    """Run a PostgreSQL command (as ``postgres`` when root) from ``<home>/postgres``."""
    user = _pg_user()
    extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    env = {**os.environ, "LC_ALL": "C.UTF-8", **({"HOME": user.pw_dir} if user else {})}
    result = subprocess.run(args, cwd=layout.pg, env=env, capture_output=True, text=True, **extra)
    if check and result.returncode != 0:
        raise ServiceError(
            f"`{shlex.join(args)}` failed ({result.returncode}):\n{result.stderr.strip()}\n"
            f"PostgreSQL's log: {layout.pg_log}\n{_log_tail(layout.pg_log, 10)}"
        )
    return result


def _pg_init(layout: Layout, state: dict, bin_dir: Path) -> None:
    """``initdb`` a new cluster owned by the triad user, password-protected (once)."""
    user = _pg_user()
    layout.pg.mkdir(parents=True, exist_ok=True)
    layout.pg_socket_dir.mkdir(exist_ok=True)
    if user:
        _check_reachable(layout.pg, user)
        for path in (layout.pg, layout.pg_socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
    pwfile = layout.pg / "initdb-password"
    pwfile.touch(mode=0o600)
    pwfile.write_text(state["password"] + "\n")
    if user:
        os.chown(pwfile, user.pw_uid, user.pw_gid)
    try:
        _pg_run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(layout.pg_data),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
            layout,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _pg_running(layout: Layout, bin_dir: Path | None) -> bool:
    if bin_dir is None or not (layout.pg_data / "PG_VERSION").is_file():
        return False
    return _pg_run([str(bin_dir / "pg_ctl"), "status", "-D", str(layout.pg_data)], layout, check=False).returncode == 0


def _pg_start(layout: Layout, state: dict, bin_dir: Path) -> None:
    port = state["ports"]["postgres"]
    socket_dir = layout.pg_socket_dir
    # A Unix socket path must fit in 107 bytes; PostgreSQL then listens on TCP only.
    socket_opt = shlex.quote(str(socket_dir)) if len(str(socket_dir)) + 20 < 107 else "''"
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {socket_opt}"
    _pg_run(
        [
            str(bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(layout.pg_data),
            "-l",
            str(layout.pg_log),
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "-o",
            options,
        ],
        layout,
    )


def _pg_create_databases(state: dict) -> None:
    import psycopg2

    connection = psycopg2.connect(database_url(state, "postgres"))
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for name in DATABASES:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def _pg_stop(layout: Layout, bin_dir: Path | None) -> bool:
    if not _pg_running(layout, bin_dir):
        return False
    _pg_run([str(bin_dir / "pg_ctl"), "stop", "-D", str(layout.pg_data), "-m", "fast", "-w"], layout)
    return True


# --- MLflow and Prefect --------------------------------------------------------------------------------
def _tool(name: str) -> str:
    """A console script of the running interpreter's environment (mlflow, prefect)."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


def _mlflow_healthy(state: dict) -> bool:
    return _http_ok(f"{client_env(state)['MLFLOW_TRACKING_URI']}/health", "OK")


def _prefect_healthy(state: dict) -> bool:
    return _http_ok(f"{client_env(state)['PREFECT_API_URL']}/health", "true")


def _pool_ready(state: dict, pool: str = WORKER_POOL) -> bool:
    """The work pool is READY: the Prefect server has heard a worker's heartbeat."""
    try:
        with urllib.request.urlopen(f"{client_env(state)['PREFECT_API_URL']}/work_pools/{pool}", timeout=3) as response:
            return json.loads(response.read()).get("status") == "READY"
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _base_env(layout: Layout) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(PREFECT_HOME=str(layout.prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def _mlflow_command(layout: Layout, state: dict) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the MLflow tracking server."""
    layout.artifacts.mkdir(parents=True, exist_ok=True)
    # psycopg2 named: SQLAlchemy 2.1 would otherwise pick psycopg 3. Passed in the environment, not argv.
    env = {
        **_base_env(layout),
        "MLFLOW_BACKEND_STORE_URI": database_url(state, "mlflow", "postgresql+psycopg2"),
        # The server's job runner (GenAI scorers, prompt optimisation) is not used by triad: it would
        # start about eight helper processes of 250 MB each.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    argv = [
        _tool("mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(state["ports"]["mlflow"]),
        "--artifacts-destination",
        str(layout.artifacts),
        "--workers",
        "1",
    ]
    return argv, env


def _prefect_command(layout: Layout, state: dict) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the Prefect server."""
    env = {
        **_base_env(layout),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url(state, "prefect", "postgresql+asyncpg"),
    }
    return _prefect_argv(state["ports"]["prefect"]), env


def _prefect_argv(port: int) -> list[str]:
    return [_tool("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


# name -> (what, command, health probe)
SERVERS = {
    "mlflow": ("the MLflow server", _mlflow_command, _mlflow_healthy),
    "prefect": ("the Prefect server", _prefect_command, _prefect_healthy),
}


def create_pools(api_url: str) -> None:
    """Create (or update) the work pools in ``POOLS`` on the Prefect server at ``api_url``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        for name, (description, limit) in POOLS.items():
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type="process",
                    description=description,
                    base_job_template=template,
                    concurrency_limit=limit,
                ),
                overwrite=True,
            )


def _start_worker(layout: Layout, state: dict, root: Path) -> None:
    urls = client_env(state)
    # Flow runs inherit the worker's environment: they track to the shared MLflow server and run
    # in ``root`` unless a deployment's pull step or job variables say otherwise.
    env = {**_base_env(layout), **urls, "TRIAD_ROOT": str(root)}
    for passthrough in ("PREFECT_WORKER_QUERY_SECONDS", "PREFECT_WORKER_PREFETCH_SECONDS"):
        if passthrough in os.environ:
            env[passthrough] = os.environ[passthrough]
    argv = [
        _tool("prefect"),
        "worker",
        "start",
        "--pool",
        WORKER_POOL,
        "--type",
        "process",
        "--name",
        f"triad-{socket.gethostname()}-{state['ports']['prefect']}",
        "--install-policy",
        "never",
    ]
    pid = _spawn(layout, "worker", argv, env, root)
    _wait("the Prefect worker", lambda: _pool_ready(state), lambda: _alive(pid), layout.log("worker"))


# --- a project's own Prefect server (``triad schedule`` without PREFECT_API_URL) -------------------------
# Prefect's temporary server (what a client starts when PREFECT_API_URL is unset) runs no scheduler
# service, so a served schedule never fires there. ``triad schedule`` starts this one instead: the
# full server, scheduler included, on a SQLite database in ``home`` (``<project>/.triad/scheduler``),
# so its runs' history survives restarts. Its port is kept in ``home/services.json``.
SCHEDULER_TUNING = ("PREFECT_SERVER_SERVICES_", "PREFECT_API_SERVICES_", "PREFECT_SERVER_LOGGING_LEVEL")


def _local_prefect_state(layout: Layout) -> dict:
    if layout.state.is_file():
        return json.loads(layout.state.read_text())
    state = {"ports": {"prefect": free_port()}}
    layout.home.mkdir(parents=True, exist_ok=True)
    layout.state.write_text(json.dumps(state, indent=2) + "\n")
    return state


def _local_prefect_api(state: dict) -> str:
    return f"http://127.0.0.1:{state['ports']['prefect']}/api"


def local_prefect_up(home: Path) -> tuple[str, bool]:
    """Start the project's own Prefect server in ``home`` unless it is running and healthy.

    Returns its API URL and whether this call started it. ``PREFECT_SERVER_SERVICES_*`` variables
    (the scheduler's loop, for example) are passed on to the server.
    """
    layout = Layout(home.resolve())
    state = _local_prefect_state(layout)

    def healthy() -> bool:
        return _http_ok(f"{_local_prefect_api(state)}/health", "true")

    if _pid(layout, "prefect") and healthy():
        return _local_prefect_api(state), False
    _stop(layout, "prefect")
    if _ensure_port_free(state, "prefect"):
        layout.state.write_text(json.dumps(state, indent=2) + "\n")
    layout.prefect_home.mkdir(parents=True, exist_ok=True)
    env = {
        **_base_env(layout),
        **{k: v for k, v in os.environ.items() if k.startswith(SCHEDULER_TUNING)},
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{layout.prefect_home / 'prefect.db'}",
    }
    pid = _spawn(layout, "prefect", _prefect_argv(state["ports"]["prefect"]), env, cwd=layout.home)
    _wait("the Prefect server", healthy, lambda: _alive(pid), layout.log("prefect"))
    return _local_prefect_api(state), True


def local_prefect_down(home: Path) -> bool:
    """Stop the project's own Prefect server in ``home``; True if it was running."""
    return _stop(Layout(home.resolve()), "prefect")


# --- the commands ---------------------------------------------------------------------------------------
def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def up(home: Path | None = None, root: Path | None = None) -> dict[str, str]:
    """Start whatever is not running and healthy; return the client environment (``client_env``).

    ``root`` is the project the worker's flow runs use (default: the current project).
    """
    from triad.config import project_root

    layout = Layout((home or default_home()).resolve())
    root = (root or project_root()).resolve()
    bin_dir = _require_pg_bin()
    state = load_state(layout, create=True)

    if not (layout.pg_data / "PG_VERSION").is_file():
        _say(f"postgres: initdb {layout.pg_data}")
        _pg_init(layout, state, bin_dir)
    if _pg_running(layout, bin_dir):
        _say("postgres: already running")
    else:
        if _ensure_port_free(state, "postgres"):
            for name in ("worker", "prefect", "mlflow"):  # they hold the old database URL
                _stop(layout, name)
        _pg_start(layout, state, bin_dir)
        _say(f"postgres: started on 127.0.0.1:{state['ports']['postgres']}")
    _pg_create_databases(state)

    started = {}
    for name, (_, command, healthy) in SERVERS.items():
        if _pid(layout, name) and healthy(state):
            _say(f"{name}: already running")
            continue
        _stop(layout, name)  # a stale or unhealthy one
        _ensure_port_free(state, name)
        started[name] = _spawn(layout, name, *command(layout, state), cwd=layout.home)
    for name, pid in started.items():  # both start at once: their start-ups (schema migrations) overlap
        what, _, healthy = SERVERS[name]
        _wait(what, lambda: healthy(state), lambda: _alive(pid), layout.log(name))
        _say(f"{name}: started on 127.0.0.1:{state['ports'][name]} (log: {layout.log(name)})")
    layout.state.write_text(json.dumps(state, indent=2) + "\n")  # ports may have moved

    create_pools(client_env(state)["PREFECT_API_URL"])
    if _pid(layout, "worker") and not started:
        _say(f"worker: already running (pool {WORKER_POOL})")
    else:
        _stop(layout, "worker")  # a server (re)started, perhaps on another port: the worker's URLs are stale
        _start_worker(layout, state, root)
        _say(f"worker: started on pool {WORKER_POOL} (log: {layout.log('worker')})")
    return client_env(state)


def _ensure_port_free(state: dict, name: str) -> bool:
    """Keep ``name``'s port if nothing listens there; else move it to a free one (True: it moved)."""
    if not port_in_use(state["ports"][name]):
        return False
    old, state["ports"][name] = state["ports"][name], free_port()
    _say(f"{name}: port {old} is taken by another program; using {state['ports'][name]}")
    return True


def down(home: Path | None = None) -> list[str]:
    """Stop the worker, the Prefect and MLflow servers, then PostgreSQL. Returns what was running."""
    layout = Layout((home or default_home()).resolve())
    stopped = [name for name in ("worker", "prefect", "mlflow") if _stop(layout, name)]
    if layout.pg.is_dir() and _pg_stop(layout, pg_bin_dir()):
        stopped.append("postgres")
    return stopped


def status(home: Path | None = None) -> dict[str, dict]:
    """Each service: ``{"running": bool, "healthy": bool, "url": str}`` (healthy = answers its probe)."""
    layout = Layout((home or default_home()).resolve())
    state = load_state(layout)
    urls = client_env(state)
    pg_up = _pg_running(layout, pg_bin_dir())
    report = {
        "postgres": {
            "running": pg_up,
            "healthy": pg_up and port_in_use(state["ports"]["postgres"]),
            "url": database_url({**state, "password": "***"}, "{" + ",".join(DATABASES) + "}"),
        },
        "mlflow": {
            "running": _pid(layout, "mlflow") is not None,
            "healthy": _mlflow_healthy(state),
            "url": urls["MLFLOW_TRACKING_URI"],
        },
        "prefect": {
            "running": _pid(layout, "prefect") is not None,
            "healthy": _prefect_healthy(state),
            "url": urls["PREFECT_API_URL"],
        },
        "worker": {
            "running": _pid(layout, "worker") is not None,
            "healthy": _pool_ready(state),
            "url": f"pool {WORKER_POOL}",
        },
    }
    return report


def exports(env: dict[str, str]) -> str:
    """Shell lines exporting ``env`` (``eval "$(triad services env)"``)."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
