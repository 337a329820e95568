"""Alerts: a JSON message POSTed to a webhook when a pipeline run fails (and, if asked, when it succeeds).

The flow (``flows/pipeline.py``) calls this from Prefect's own hooks: a stage's ``on_failure`` hook
(which Prefect runs only once the stage has exhausted its retries) records the stage and the last
lines of its error; the flow's ``on_failure``/``on_crashed`` hook posts one message for the run,
naming every failed stage; its ``on_completion`` hook posts the run's summary table when
``pipeline.notify.on_success`` is true.

Where to: ``pipeline.notify.url``, or ``$TRIAD_NOTIFY_URL``, which wins and keeps a secret URL (a
Slack or Teams webhook holds its token) out of ``conf/`` and ``params.yaml``. Neither set: no alert.

The message (``"schema": "triad.alert/1"``)::

    {"schema", "event": "failed" | "crashed" | "succeeded",
     "text":         one line for chat webhooks (Slack, Mattermost and Teams show this field),
     "flow_run":     {"flow", "name", "id", "state", "scheduled", "overrides", "url", "api_url"},
     "failed_stages": [{"stage", "task_run_id", "error", "error_tail": [last lines], "url", "api_url"}],
     "error":        {"message", "error_tail"} or null: what ended the flow run,
     "mlflow_runs":  [{"run_id", "experiment_id", "name", "status", "head", "url"}],
     "summary":      the run's summary table (markdown) or null,
     "project", "host"}

Posting never breaks or holds up the pipeline: it gives up after ``pipeline.notify.timeout_s``
(a name that does not resolve, a server that never answers, an error status), logs why, and returns.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

SCHEMA = "triad.alert/1"
ENV_URL = "TRIAD_NOTIFY_URL"
ERROR_LINES = 20  # the last lines of an error that a message carries
T = TypeVar("T")


def target_url(configured: str | None) -> str | None:
    """Where alerts go: ``$TRIAD_NOTIFY_URL`` if set (non-empty), else the configured URL; None: no alerts."""
    url = os.environ.get(ENV_URL, "").strip() or configured
    if url and not url.startswith(("http://", "https://")):
        log.warning("alerts are off: %s=%r is not an http(s) URL", ENV_URL, url)
        return None
    return url or None


def redact(url: str) -> str:
    """The URL as logs may show it: scheme and host only (a webhook's path or query often holds its token)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/..."


def error_tail(error: BaseException | str | None, lines: int = ERROR_LINES) -> list[str]:
    """The last ``lines`` lines of an error: a failed stage's own last lines of output (its
    ``output_tail``), or the traceback (chained causes included) of any other exception."""
    if error is None:
        return []
    if getattr(error, "output_tail", None):
        return list(error.output_tail)[-lines:]
    if isinstance(error, BaseException):
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    else:
        text = str(error)
    return [line for line in text.rstrip().splitlines() if line.strip()][-lines:]


def first_line(error: BaseException | str) -> str:
    """An error in one line: its message's first line, or its type when it has no message."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def within(seconds: float, what: str, work: Callable[[], T]) -> T | None:
    """``work()``'s result if it finishes within ``seconds`` without raising; else None, with the reason logged.

    The work runs in a daemon thread, so a call that hangs (a name lookup, a server that accepts but
    never answers) is left behind rather than waited for.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:  # an alert must never break the pipeline: every failure is logged instead
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"triad-notify: {what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        log.warning("%s: no answer within %.0fs, given up", what, seconds)
        return None
    if "error" in outcome:
        log.warning("%s failed: %s", what, outcome["error"])
        return None
    return outcome["value"]


def post(url: str, message: dict[str, Any], timeout: float) -> bool:
    """POST ``message`` as JSON to ``url``; True when the server answered 2xx. Never raises, and
    returns within about ``timeout`` seconds whatever the server does."""
    from triad import __version__

    body = json.dumps(message, default=str).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"triad/{__version__}"},
    )

    def send() -> int:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status

    status = within(timeout, f"alert to {redact(url)}", send)
    if status is None:
        return False
    log.info("alert (%s) posted to %s: HTTP %d", message.get("event"), redact(url), status)
    return True


def prefect_links(kind: str, obj_id: str) -> dict[str, str | None]:
    """The Prefect UI and API URLs of a flow run or task run (``kind`` ``flow-run`` or ``task-run``)
    on the server the flow runs against (the temporary one of a plain ``triad pipeline`` included).
    The UI URL is None where no UI is known (``PREFECT_UI_URL`` unset and no server URL)."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.settings import PREFECT_API_URL
    from prefect.utilities.urls import url_for

    clients = [getattr(context, "client", None) for context in (TaskRunContext.get(), FlowRunContext.get())]
    api = next((str(client.api_url) for client in clients if client is not None), None) or PREFECT_API_URL.value()
    path = {"flow-run": "flow_runs", "task-run": "task_runs"}[kind]
    return {
        "url": url_for(kind, obj_id=obj_id, url_type="ui"),
        "api_url": f"{api.rstrip('/')}/{path}/{obj_id}" if api else None,
    }


def mlflow_runs(tracking_uri: str, flow_run_id: str, ui: str, timeout: float) -> list[dict[str, Any]]:
    """The MLflow runs this flow run made (tagged ``prefect.flow_run_id``), with links into ``ui``;
    an empty list if the tracking store does not answer within ``timeout`` seconds."""

    if tracking_uri.startswith("sqlite:///") and not os.path.exists(tracking_uri.removeprefix("sqlite:///")):
        return []  # no store yet (the run failed before making one): do not create it here

    def search() -> list[dict[str, Any]]:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        if not experiments:
            return []
        runs = client.search_runs(experiments, filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
        return [
            {
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "name": run.info.run_name,
                "status": run.info.status,
                "head": run.data.tags.get("triad.head"),
                "url": f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}",
            }
            for run in runs
        ]

    return within(timeout, "finding the run's MLflow runs", search) or []


def message(
    event: str,
    flow_run: dict[str, Any],
    *,
    failed_stages: list[dict[str, Any]] | None = None,
    error: BaseException | str | None = None,
    mlflow: list[dict[str, Any]] | None = None,
    summary: str | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """The alert for one flow run (the module docstring lists its fields)."""
    failed_stages = failed_stages or []
    title = f"triad pipeline run {flow_run.get('name')!r} {event.upper()}"
    if failed_stages:
        text = f"{title}: " + "; ".join(f"{s['stage']}: {s['error']}" for s in failed_stages)
    elif error is not None:
        text = f"{title}: {first_line(error)}"
    else:
        text = title
    if flow_run.get("url") or flow_run.get("api_url"):
        text += f" ({flow_run.get('url') or flow_run.get('api_url')})"
    return {
        "schema": SCHEMA,
        "event": event,
        "text": text,
        "flow_run": flow_run,
        "failed_stages": failed_stages,
        "error": None if error is None else {"message": str(error), "error_tail": error_tail(error)},
        "mlflow_runs": mlflow or [],
        "summary": summary,
        "project": project,
        "host": socket.gethostname(),
    }
