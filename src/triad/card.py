"""Model cards: what a registered version was trained on, how it scored, why the gate decided as it did,
what it is for and what it must not be used for.

The evaluation (``triad.evaluate``) publishes one for every version it registers, right after the gate's
decision: the markdown card is an artifact of the run that trained the version, ``card/v<version>/card.md``
(one run can register several versions, each evaluation its own), named by the version's tag ``triad.card``;
the version's description (shown in the registry's lists) is a short summary of it. ``triad card`` prints it.

The card is assembled from what the tracking store holds (the version's ``gate.*`` tags, its run's tags,
dataset input, data report, metrics and plots) and from the head's own sections (``Head.card``: intended
use, known limits, the baselines its metrics are read against) and config. A version registered without a
card (before cards existed, or by hand) still gets what the store holds: ``build`` without the head's parts.
"""

from __future__ import annotations

import json
import math
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triad.errors import TriadError
from triad.gate import CHAMPION

if TYPE_CHECKING:
    from triad.heads.base import Baseline, CardSections, Head

CARD_TAG = "triad.card"  # on the model version: the card's artifact path in its run
MAX_COUNT_ROWS = 12  # classes shown in the data report's table; the rest are summed in one row
PLOT_FOLDERS = ("plots", "data")  # where the evaluation's and the data report's pictures are logged
PICTURES = (".png", ".jpg", ".jpeg", ".svg")


def card_path(version: str | int) -> str:
    """The card's artifact path in the version's run."""
    return f"card/v{version}/card.md"


# --- finding a version ------------------------------------------------------------------------------
def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION`` (a ``models:/`` prefix is allowed) -> (name, alias, version).

    A bare name means its ``champion``.
    """
    ref = ref.removeprefix("models:/").strip()
    if "@" in ref:
        name, _, alias = ref.partition("@")
        version = None
    elif "/" in ref:
        name, _, version = ref.partition("/")
        alias = None
        if not version.isdigit():
            raise TriadError(f"{ref!r}: the version after '/' is a number, e.g. {name}/3 (or {name}@{CHAMPION})")
    else:
        name, alias, version = ref, CHAMPION, None
    if not name or (alias is not None and not alias):
        raise TriadError(f"{ref!r} names no model: give NAME, NAME@ALIAS or NAME/VERSION, e.g. my-model@{CHAMPION}")
    return name, alias, version


def resolve(client, name: str, alias: str | None, version: str | None, store: str = ""):
    """The registered model version ``name@alias`` or ``name/version``; a ``TriadError`` that lists what
    exists when there is no such version (``store``: the tracking URI, named in the message)."""
    from mlflow.exceptions import MlflowException

    try:
        if version is not None:
            return client.get_model_version(name, version)
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        pass
    try:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    except MlflowException:
        versions = []
    wanted = f"{name}/{version}" if version is not None else f"{name}@{alias}"
    if not versions:
        raise TriadError(
            f"the registry{' at ' + store if store else ''} has no model {name!r}; "
            "run `triad pipeline` (or `triad train HEAD`) first, or name a registered model"
        ) from None
    aliases = sorted(client.get_registered_model(name).aliases or {})
    raise TriadError(
        f"{wanted} does not exist: {name} has version(s) {', '.join(map(str, versions))}"
        + (f" and alias(es) {', '.join(aliases)}" if aliases else " and no alias")
        + f"; e.g. `triad card {name}/{versions[-1]}`"
    ) from None


def read_card(client, model_version) -> str | None:
    """The card a version's evaluation published (its ``triad.card`` tag), or None when it has none."""
    from mlflow.exceptions import MlflowException

    path = model_version.tags.get(CARD_TAG)
    if not path or not model_version.run_id:
        return None
    with tempfile.TemporaryDirectory() as work:
        try:
            return Path(client.download_artifacts(model_version.run_id, path, work)).read_text(encoding="utf-8")
        except (MlflowException, OSError):
            return None


def registry_now(client, model_version) -> str:
    """One line on where the version stands now (aliases move after the card was written)."""
    latest = client.get_model_version(model_version.name, model_version.version)
    aliases = sorted(latest.aliases or [])
    line = f"Registry now: {model_version.name} v{model_version.version}"
    line += f" holds {', '.join('@' + a for a in aliases)}" if aliases else " holds no alias"
    if later := latest.tags.get("gate.superseded_by"):
        line += f"; superseded as {CHAMPION} by v{later}"
    return line + "."


# --- building the card ------------------------------------------------------------------------------
def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _when(ms: int | None) -> str:
    if not ms:
        return "unknown"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _reference_value(baseline: Baseline, metrics: dict[str, float]) -> float | None:
    if isinstance(baseline.reference, str):
        return metrics.get(baseline.reference)
    return float(baseline.reference)


def baseline_rows(baselines: list[Baseline], metrics: dict[str, float]) -> list[dict[str, Any]]:
    """Each baseline whose metric and reference the evaluation reported: the values and whether it beats it."""
    rows = []
    for b in baselines:
        value, reference = metrics.get(b.metric), _reference_value(b, metrics)
        if value is None or reference is None:
            continue
        beats = None
        if b.mode is not None and math.isfinite(value) and math.isfinite(reference):
            beats = value > reference if b.mode == "max" else value < reference
        name = b.reference if isinstance(b.reference, str) else "fixed"
        rows.append(
            {"metric": b.metric, "value": value, "meaning": b.meaning, "name": name, "reference": reference}
            | {"beats": beats}
        )
    return rows


def _dataset(run) -> dict[str, Any] | None:
    """The run's training dataset input (``tracking.log_data``): name, digest, source and profile."""
    inputs = getattr(run.inputs, "dataset_inputs", None) or []
    training = [i for i in inputs if any(t.key == "mlflow.data.context" and t.value == "training" for t in i.tags)]
    chosen = (training or inputs or [None])[0]
    if chosen is None:
        return None
    dataset = chosen.dataset
    try:
        source = json.loads(dataset.source)
        source = source.get("uri") or source.get("path") or dataset.source
    except (TypeError, ValueError, AttributeError):
        source = dataset.source
    try:
        profile = json.loads(dataset.profile) if dataset.profile else {}
    except ValueError:
        profile = {}
    return {"name": dataset.name, "digest": dataset.digest, "source": source, "profile": profile}


def _artifacts(client, run_id: str) -> list[str]:
    """The paths of the run's files in ``PLOT_FOLDERS`` and ``config/`` (one level deep)."""
    from mlflow.exceptions import MlflowException

    paths = []
    for folder in (*PLOT_FOLDERS, "config"):
        try:
            paths += [f.path for f in client.list_artifacts(run_id, folder) if not f.is_dir]
        except (MlflowException, OSError):
            continue
    return paths


def _data_report(client, run_id: str, artifacts: list[str]) -> dict[str, Any] | None:
    from mlflow.exceptions import MlflowException

    from triad.data.own import REPORT_JSON

    path = f"data/{REPORT_JSON}"
    if path not in artifacts:
        return None
    with tempfile.TemporaryDirectory() as work:
        try:
            return json.loads(Path(client.download_artifacts(run_id, path, work)).read_text())
        except (MlflowException, OSError, ValueError):
            return None


def _counts_table(counts: dict[str, dict[str, int]]) -> list[str]:
    splits = ("train", "val", "test")
    lines = ["| class | train | val | test |", "|---|---:|---:|---:|"]
    names = list(counts)
    for name in names[:MAX_COUNT_ROWS]:
        lines.append(f"| {name} | " + " | ".join(str(counts[name].get(s, 0)) for s in splits) + " |")
    if rest := names[MAX_COUNT_ROWS:]:
        sums = [sum(counts[n].get(s, 0) for n in rest) for s in splits]
        lines.append(f"| {len(rest)} more classes | " + " | ".join(map(str, sums)) + " |")
    return lines


def _config_block(config: dict[str, Any]) -> list[str]:
    import yaml

    text = yaml.safe_dump(config, default_flow_style=None, sort_keys=False, width=120, allow_unicode=True)
    return ["```yaml", text.rstrip(), "```"]


def _gate_lines(tags: dict[str, str]) -> list[str]:
    if "gate.decision" not in tags:
        return ["No gate decision is recorded on this version (registered outside `triad`'s evaluation)."]
    lines = [
        f"- decision: **{tags['gate.decision']}**",
        f"- reason: {tags.get('gate.reason', 'not recorded')}",
        f"- gate metric: `{tags.get('gate.metric')}` = {_fmt(float(tags.get('gate.value', 'nan')))} "
        f"({'higher' if tags.get('gate.mode') == 'max' else 'lower'} is better)",
    ]
    before = tags.get("gate.champion_before", "none")
    if before != "none":
        line = f"- {CHAMPION} before: v{before} ({_fmt(float(tags.get('gate.champion_before_value', 'nan')))}"
        if "gate.champion_before_recorded_value" in tags:
            line += (
                f" on this data; {_fmt(float(tags['gate.champion_before_recorded_value']))} on its own data "
                f"`{tags.get('gate.champion_before_data_version', 'unknown')}`"
            )
        lines.append(line + ")")
    else:
        lines.append(f"- {CHAMPION} before: none")
    return lines


def build(
    client,
    model_version,
    sections: CardSections | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> str:
    """The markdown card of ``model_version`` from the tracking store, with the head's ``sections`` and
    ``config`` (its data and model sections) where the caller has them (the evaluation does).

    ``metrics`` are the evaluation's (default: the run's latest metrics, which include training's).
    """
    from mlflow.exceptions import MlflowException

    name, version, tags = model_version.name, str(model_version.version), dict(model_version.tags)
    run = None
    if model_version.run_id:
        try:
            run = client.get_run(model_version.run_id)
        except MlflowException:
            run = None
    run_tags = dict(run.data.tags) if run else {}
    metrics = dict(metrics if metrics is not None else (run.data.metrics if run else {}))
    artifacts = _artifacts(client, run.info.run_id) if run else []
    head = run_tags.get("triad.head", "unknown")

    lines = [f"# Model card: {name} v{version}", ""]
    if "gate.decision" in tags:
        lines += [f"**{tags['gate.decision'].upper()}**: {tags.get('gate.reason', '')}", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| model | `models:/{name}/{version}` (logged as `{model_version.source}`) |",
        f"| head | {head} |",
        f"| registered | {_when(model_version.creation_timestamp)} |",
    ]
    if run:
        lines.append(f"| run | `{run.info.run_id}` (experiment {run.info.experiment_id}, `{run.info.run_name}`) |")
        code = run_tags.get("mlflow.source.git.commit", "unknown")
        lines.append(f"| code | git `{code}`, triad {run_tags.get('triad.version', 'unknown')} |")
        if flow := run_tags.get("prefect.flow_run_id"):
            lines.append(f"| Prefect flow run | `{flow}` |")
    else:
        lines.append("| run | none in the tracking store (deleted, or the version was registered from elsewhere) |")
    lines.append("")

    # data
    lines += ["## Data", ""]
    dataset = _dataset(run) if run else None
    data_version = tags.get("triad.data_version") or run_tags.get("triad.data_version")
    if dataset:
        profile = dataset["profile"]
        lines += [f"- dataset: `{dataset['name']}`, source `{dataset['source']}`", f"- digest: `{dataset['digest']}`"]
        for raw, digest in (profile.get("dvc_digests") or {}).items():
            lines.append(f"- DVC digest of `{raw}`: `{digest or 'not in dvc.lock'}`")
        if profile.get("prepared_data_version"):
            lines.append(f"- prepared data version: `{profile['prepared_data_version']}`")
        if rows := profile.get("rows"):
            lines.append("- rows: " + ", ".join(f"{split} {n}" for split, n in rows.items()))
    else:
        lines.append("- the run records no dataset input")
    lines.append(f"- data version (tag `triad.data_version`, what the gate compares on): `{data_version or 'unknown'}`")
    report = _data_report(client, run.info.run_id, artifacts) if run else None
    if report:
        problems, skipped = len(report.get("problems") or []), report.get("skipped") or 0
        lines += [f"- data report: `data/data_report.md` ({problems} problem(s), {skipped} file(s) skipped)", ""]
        if report.get("counts"):
            lines += [*_counts_table(report["counts"]), ""]
    lines.append("")

    # config
    lines += ["## Config", ""]
    if config:
        lines += _config_block(config)
    else:
        lines.append("Not on this card.")
    if "config/config.yaml" in artifacts:
        lines.append("")
        lines.append("The whole composed config: `config/config.yaml` in the run.")
    lines.append("")

    # metrics
    lines += ["## Metrics", ""]
    rows = baseline_rows(sections.baselines, metrics) if sections else []
    if rows:
        lines += ["| metric | value | baseline | baseline value | beats it |", "|---|---:|---|---:|---|"]
        for r in rows:
            verdict = {True: "yes", False: "**no**", None: "(reference)"}[r["beats"]]
            reference = f"{r['meaning']} (`{r['name']}`)" if r["name"] != "fixed" else r["meaning"]
            lines.append(f"| `{r['metric']}` | {_fmt(r['value'])} | {reference} | {_fmt(r['reference'])} | {verdict} |")
        lines.append("")
    if metrics:
        lines += [
            "All metrics: " + ", ".join(f"`{k}` {_fmt(float(v))}" for k, v in sorted(metrics.items())),
            "",
        ]
    else:
        lines += ["No metrics recorded.", ""]

    # gate
    lines += ["## Gate decision", "", *_gate_lines(tags), ""]

    # the head's parts
    if sections:
        lines += ["## Intended use", "", *(f"- {line}" for line in sections.intended_use), ""]
        lines += ["## Known limits", "", *(f"- {line}" for line in sections.limits), ""]
    else:
        lines += [
            "## Intended use and known limits",
            "",
            "Not recorded: this version was registered without a card.",
            "",
        ]

    # evidence
    lines += ["## Evidence", ""]
    pictures = [p for p in artifacts if p.lower().endswith(PICTURES)]
    if pictures and run:
        up = "../" * card_path(version).count("/")  # from the card's folder back to the run's artifact root
        lines += [f"- [{p}]({up}{p}): `runs:/{run.info.run_id}/{p}`" for p in pictures]
    else:
        lines.append("No pictures were logged with the run.")
    return "\n".join(lines).rstrip() + "\n"


def summary(model_version, sections: CardSections | None, metrics: dict[str, float]) -> str:
    """The version's description: the decision, the gate metric against its first baseline, the data, and
    where the whole card is. Short, as the registry shows descriptions in its lists."""
    tags = model_version.tags
    decision = tags.get("gate.decision", "registered").upper()
    head = f"{decision}: {tags.get('gate.reason', 'no gate decision recorded')}"
    metric = tags.get("gate.metric")
    facts = []
    if metric and metric in metrics:
        score = f"{metric} {_fmt(metrics[metric])}"
        rows = [r for r in baseline_rows(sections.baselines if sections else [], metrics) if r["metric"] == metric]
        if rows:
            score += f" ({rows[0]['meaning']}: {_fmt(rows[0]['reference'])})"
        facts.append(score)
    if data := tags.get("triad.data_version"):
        facts.append(f"data {data[:16]}")
    facts.append(f"card: `triad card {model_version.name}/{model_version.version}`")
    return head + "\n\n" + "; ".join(facts)


def publish(
    client,
    head: Head,
    version: str,
    metrics: dict[str, float],
    data_summary: dict[str, Any],
) -> str:
    """Write version ``version``'s card: build it, log it to the version's run, tag the version with its
    path and set the version's description to its summary. Returns the card's artifact path."""
    name = head.registered_model_name
    sections = head.card(metrics, data_summary)
    config = {
        f"data.{head.name}": head.data_cfg.model_dump(mode="json"),
        f"model.{head.name}": head.model_cfg.model_dump(mode="json"),
    }
    model_version = client.get_model_version(name, version)
    text = build(client, model_version, sections, config, metrics)
    path = card_path(version)
    client.log_text(model_version.run_id, text, path)
    client.set_model_version_tag(name, version, CARD_TAG, path)
    client.update_model_version(name, version, description=summary(model_version, sections, metrics))
    return path
