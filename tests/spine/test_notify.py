"""Alerts (``triad.notify``, ``pipeline.notify``): a real HTTP server on loopback receives what the pipeline posts.

The first tests post straight to the server (and to one that never answers, and to a closed port).
The flow tests run the real pipeline flow (Prefect test server, DVC, MLflow SQLite) on a project
whose DAG is one stage, ``flaky``: it opens an MLflow run tagged with the flow run, as a training
stage does, then exits 75 (transient: retried) when ``mode.txt`` says ``fail``, else writes its output.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO, enter_project, make_project
from triad import notify


class Webhook:
    """A loopback HTTP server that keeps every JSON body POSTed to it; ``delay`` holds each answer back."""

    def __init__(self, delay: float = 0.0):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
                time.sleep(delay)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving, then close the socket. Closing it while ``serve_forever`` still runs leaves that thread
        spinning on a dead socket at a full core for the rest of the suite (it did, for its last 10%)."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens there once the socket is closed


def test_a_message_is_posted_as_json(webhook):
    assert notify.post(webhook.url, {"event": "failed", "text": "x"}, timeout=5)
    (got,) = webhook.received
    assert got["path"] == "/hooks/secret-token" and got["type"] == "application/json"
    assert got["body"] == {"event": "failed", "text": "x"}


def test_a_post_never_raises_nor_waits_past_its_timeout(caplog):
    silent = Webhook(delay=30)  # accepts, reads, and does not answer for 30 s
    try:
        started = time.monotonic()
        assert notify.post(silent.url, {"event": "failed"}, timeout=1) is False
        assert time.monotonic() - started < 3
    finally:
        silent.close()  # its handler thread, still holding back its answer, is a daemon: it does not hold this up
    assert not silent.thread.is_alive()
    assert notify.post(closed_port_url(), {"event": "failed"}, timeout=1) is False
    assert "no answer within 1s" in caplog.text and "Connection refused" in caplog.text
    assert "secret-token" not in caplog.text  # a webhook's token stays out of the logs


def test_the_url_comes_from_the_environment_first(monkeypatch):
    monkeypatch.delenv(notify.ENV_URL, raising=False)
    assert notify.target_url(None) is None
    assert notify.target_url("https://example.org/hook") == "https://example.org/hook"
    monkeypatch.setenv(notify.ENV_URL, "https://hooks.example.org/T0/B0/abc")
    assert (
        notify.target_url(None)
        == notify.target_url("https://example.org/hook")
        == "https://hooks.example.org/T0/B0/abc"
    )
    monkeypatch.setenv(notify.ENV_URL, "hooks.example.org")  # no scheme: refused, not guessed
    assert notify.target_url("https://example.org/hook") is None


def test_an_errors_tail_is_its_last_lines():
    try:
        try:
            raise OSError("disk full")
        except OSError as cause:
            raise RuntimeError("stage train failed") from cause
    except RuntimeError as error:
        tail, whole = notify.error_tail(error, lines=4), notify.error_tail(error)
    assert len(tail) == 4 and tail[-1] == "RuntimeError: stage train failed"
    assert any("OSError: disk full" in line for line in whole)  # the cause is in the longer tail
    assert notify.error_tail("stage x failed\n\nexit code 3") == ["stage x failed", "exit code 3"]


def test_a_failed_stage_keeps_the_last_lines_it_wrote_and_still_shows_them(tmp_path, capfd):
    """A stage's stderr passes through as it comes and its last lines travel on ``StageFailed``
    (a progress bar's carriage-return frames reduced to what a terminal would show)."""
    import pickle

    from triad import dag

    script = tmp_path / "stage.py"
    script.write_text(
        "import sys\n"
        "for k in range(30):\n"
        "    print(f'line {k}', file=sys.stderr)\n"
        "sys.stderr.write('epoch 1: 10%\\repoch 1: 50%\\repoch 1: 100%\\n')\n"
        "print('ValueError: bad shard', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    stage = dag.Stage("broken", f"{sys.executable} {script}", None, (), ())
    with pytest.raises(dag.StageFailed) as failed:
        dag.run(tmp_path, stage)
    error = failed.value
    assert error.returncode == 3 and not error.transient
    assert error.output_tail[-2:] == ["epoch 1: 100%", "ValueError: bad shard"]
    assert len(error.output_tail) == dag.TAIL_LINES and error.output_tail[0] == "line 12"
    assert notify.error_tail(error, lines=1) == ["ValueError: bad shard"]
    assert "line 0\n" in capfd.readouterr().err  # passed through, not swallowed
    copy = pickle.loads(pickle.dumps(error))  # Prefect may keep a task's exception as a pickled result
    assert (copy.stage, copy.returncode, copy.output_tail) == ("broken", 3, error.output_tail)


def test_a_stage_run_from_a_terminal_still_sees_a_terminal(tmp_path, monkeypatch):
    """On a terminal a stage writes to a pseudo-terminal: it keeps its progress bars, and its tail is kept."""
    import io

    from triad import dag

    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    shown = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", Terminal(shown, write_through=True))
    script = "import sys; print('stderr is a terminal:', sys.stderr.isatty(), file=sys.stderr); sys.exit(1)"
    with pytest.raises(dag.StageFailed) as failed:
        dag.run(tmp_path, dag.Stage("bars", f"{sys.executable} -c {script!r}", None, (), ()))
    assert failed.value.output_tail == ["stderr is a terminal: True"]
    assert b"stderr is a terminal: True" in shown.getvalue()


def test_dvc_status_is_told_in_one_short_line():
    from triad.dag import describe_changes

    changed = [
        {"changed deps": {"src/a.py": "modified", "src/b.py": "modified", "src/c.py": "modified", "d": "new"}},
        {"changed outs": {"data/x": "deleted"}},
        "always changed",
    ]
    assert describe_changes(changed) == (
        "deps modified: src/a.py, src/b.py and 1 more; deps new: d; outs deleted: data/x; always changed"
    )


# --- the real flow ----------------------------------------------------------------------------------
FLAKY_STAGE = """\
import os, sys
from mlflow.tracking import MlflowClient

client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
experiment = client.get_experiment_by_name("triad-flaky") or client.create_experiment("triad-flaky")
experiment = getattr(experiment, "experiment_id", experiment)
run = client.create_run(experiment, tags={"prefect.flow_run_id": os.environ["TRIAD_FLOW_RUN_ID"]})
if open("mode.txt").read().strip() == "fail":
    client.set_terminated(run.info.run_id, "FAILED")
    print("loading shard 3 of 8", file=sys.stderr)
    print("OSError: [Errno 28] No space left on device: 'data/flaky'", file=sys.stderr)
    sys.exit(75)  # transient: the flow retries it
client.set_terminated(run.info.run_id, "FINISHED")
open("out.txt", "w").write("done")
"""


@pytest.fixture
def flaky(tmp_path, monkeypatch) -> Path:
    """A project whose pipeline is the one stage ``flaky``; ``mode.txt`` says whether it fails."""
    root = make_project(tmp_path / "project")
    (root / "flaky_stage.py").write_text(FLAKY_STAGE)
    (root / "dvc.yaml").write_text(
        "stages:\n  flaky:\n    cmd: python flaky_stage.py\n    deps: [flaky_stage.py, mode.txt]\n    outs: [out.txt]\n"
    )
    enter_project(root, monkeypatch, tmp_path / "cache")
    monkeypatch.delenv(notify.ENV_URL, raising=False)
    sys.path.insert(0, str(REPO))
    return root


@pytest.mark.slow
def test_a_failed_run_posts_one_alert_naming_the_stage(flaky, harness, webhook):
    from flows.pipeline import PipelineFailed, pipeline

    (flaky / "mode.txt").write_text("fail\n")
    with pytest.raises(PipelineFailed, match="flaky: stage flaky failed with exit code 75"):
        pipeline(overrides=[f"pipeline.notify.url={webhook.url}", "pipeline.retries=1"])

    (got,) = webhook.received  # one message for the run, sent once the stage had used its retry
    alert = got["body"]
    assert alert["schema"] == "triad.alert/1" and alert["event"] == "failed"
    run = alert["flow_run"]
    assert run["flow"] == "triad-pipeline" and run["name"] and run["id"] and run["scheduled"] is False
    assert run["api_url"].endswith(f"/flow_runs/{run['id']}") and run["api_url"].startswith("http://")
    (stage,) = alert["failed_stages"]
    assert stage["stage"] == "flaky" and stage["error"] == "stage flaky failed with exit code 75"
    # the stage's own last lines of error output, not the flow's traceback
    assert stage["error_tail"][-2:] == [
        "loading shard 3 of 8",
        "OSError: [Errno 28] No space left on device: 'data/flaky'",
    ]
    assert stage["api_url"].endswith(f"/task_runs/{stage['task_run_id']}")
    assert "flaky: stage flaky failed with exit code 75" in alert["text"] and run["name"] in alert["text"]
    # both attempts' MLflow runs, each with a link into the dashboard
    runs = alert["mlflow_runs"]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"FAILED"}
    assert all(r["url"] == f"http://127.0.0.1:5000/#/experiments/{r['experiment_id']}/runs/{r['run_id']}" for r in runs)
    assert "**FAILED**: `flaky`" in alert["summary"] and alert["project"] == str(flaky)


@pytest.mark.slow
def test_a_successful_run_posts_its_summary_only_when_asked(flaky, harness, webhook):
    from flows.pipeline import pipeline

    (flaky / "mode.txt").write_text("ok\n")
    pipeline(overrides=[f"pipeline.notify.url={webhook.url}"])
    assert webhook.received == []  # on_success is false by default: a good run is quiet

    (flaky / "mode.txt").write_text("ok again\n")
    result = pipeline(overrides=[f"pipeline.notify.url={webhook.url}", "pipeline.notify.on_success=true"])
    (got,) = webhook.received
    alert = got["body"]
    assert alert["event"] == "succeeded" and alert["failed_stages"] == [] and alert["error"] is None
    assert alert["summary"] == result["summary"] and "Stages run: flaky." in alert["summary"]
    assert [r["status"] for r in alert["mlflow_runs"]] == ["FINISHED"]


@pytest.mark.slow
def test_an_unreachable_webhook_does_not_change_how_a_run_ends(flaky, harness):
    from flows.pipeline import PipelineFailed, pipeline

    (flaky / "mode.txt").write_text("ok\n")
    overrides = [f"pipeline.notify.url={closed_port_url()}", "pipeline.notify.on_success=true"]
    assert [s["status"] for s in pipeline(overrides=overrides)["stages"]] == ["ran"]
    (flaky / "mode.txt").write_text("fail\n")
    with pytest.raises(PipelineFailed, match="stage flaky failed"):
        pipeline(overrides=[*overrides, "pipeline.retries=0"])
