"""The model registry's gate: a new version becomes ``champion`` only if it beats the current one.

``gate`` registers nothing itself: ``triad.evaluate`` registers a version and asks the gate whether it
takes the ``champion`` alias, comparing like with like (the champion is rescored on the new data
version when the two were scored on different data). ``settle_champion`` keeps the alias on the best
version when several evaluations race.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from triad.errors import NotComparable, TransientError
from triad.heads import registered_model_name
from triad.tracking import tracking_uri

if TYPE_CHECKING:
    from triad.config import TriadConfig

CHAMPION = "champion"


def current_champion(client, name: str):
    """The model version holding the ``champion`` alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def is_better(new: float, old: float, mode: str) -> bool:
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    return new > old if mode == "max" else new < old


def _short(data_version: str | None) -> str:
    return (data_version or "unknown")[:12]


def gate(
    client,
    name: str,
    version: str,
    metric: str,
    value: float,
    mode: str,
    passes: tuple[bool, str],
    data_version_tag: str | None = None,
    rescore: Callable[[Any], float] | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to ``version`` only if it clears the bar and beats the champion.

    Like with like: a champion scored on another data version than the new version's (its
    ``triad.data_version`` tag) is first scored again on the new version's test data by
    ``rescore(champion)``, and the comparison uses that score. A champion that cannot be (``rescore``
    missing or raising ``NotComparable``) is not compared at all: the new version is judged by the
    bar alone, and its reason says why. Both data versions, and the champion's recorded and rescored
    values, are tags on the new version.

    The decision, the compared values and the reason are recorded on the new version as tags and
    in its description, whichever way it goes. A promoted version then settles the alias
    (``settle_champion``), so that two gates racing on one registry end with the best version as
    champion whatever order their reads and writes interleaved in.
    """
    champion = current_champion(client, name)
    ok, bar_reason = passes
    before = None
    if champion is not None:
        before = {
            "version": str(champion.version),
            "value": float(champion.tags.get("gate.value", "nan")),
            "data_version": champion.tags.get("triad.data_version"),
        }
        if data_version_tag and before["data_version"] != data_version_tag:
            before["recorded_value"] = before["value"]
            try:
                if rescore is None:
                    raise NotComparable("no way to score it on other data was given")
                before["value"] = float(rescore(champion))
            except NotComparable as exc:
                before["value"], before["not_comparable"] = float("nan"), str(exc)
    on_data = ""
    if before and "recorded_value" in before and "not_comparable" not in before:
        on_data = (
            f", rescored on this data {_short(data_version_tag)}; it had {before['recorded_value']:.4f} "
            f"on its own data {_short(before['data_version'])}"
        )
    if not ok:
        promoted, reason = False, f"did not clear the bar: {bar_reason}"
    elif champion is None:
        promoted, reason = True, "first version to clear the bar"
    elif "not_comparable" in before:
        promoted = True
        reason = (
            f"champion v{before['version']} was scored on other data ({_short(before['data_version'])}) and "
            f"cannot be scored on this data ({before['not_comparable']}): judged by the bar alone, {bar_reason}"
        )
    elif is_better(value, before["value"], mode):
        promoted = True
        reason = f"{metric} {value:.4f} beats champion v{before['version']} ({before['value']:.4f}{on_data})"
    else:
        promoted = False
        reason = f"{metric} {value:.4f} does not beat champion v{before['version']} ({before['value']:.4f}{on_data})"
    tags = {
        "gate.metric": metric,
        "gate.mode": mode,
        "gate.value": repr(float(value)),
        "gate.decision": "promoted" if promoted else "rejected",
        "gate.reason": reason,
        "gate.champion_before": before["version"] if before else "none",
        "gate.champion_before_value": repr(before["value"]) if before else "none",
    }
    if data_version_tag:
        tags["triad.data_version"] = data_version_tag
    if before and "recorded_value" in before:
        tags["gate.champion_before_data_version"] = before["data_version"] or "unknown"
        tags["gate.champion_before_recorded_value"] = repr(before["recorded_value"])
    for key, tag_value in tags.items():
        client.set_model_version_tag(name, version, key, tag_value)
    client.update_model_version(name, version, description=f"{'PROMOTED' if promoted else 'REJECTED'}: {reason}")
    champion_after = (
        settle_champion(client, name, mode, data_version_tag) if promoted else (before or {}).get("version")
    )
    if promoted and champion_after != str(version):
        client.set_model_version_tag(name, version, "gate.superseded_by", champion_after)
    return {
        "model": name,
        "version": str(version),
        "promoted": promoted,
        "reason": reason,
        "champion_before": before,
        "champion_after": champion_after,
        "metric": metric,
        "value": float(value),
    }


def settle_champion(client, name: str, mode: str, data_version: str | None = None, max_rounds: int = 20) -> str:
    """Point ``champion`` at the best version the gate promoted; return that version.

    Run after a version's ``gate.*`` tags are written. Sequentially, the best promoted version is
    the one the gate just promoted (each promotion beats the champion before it). When two gates
    race (both read "no champion", or the same champion, before either wrote), both promote; each
    then loops here until it reads the alias on the best of all promoted versions, so whichever
    writes last has seen both sets of tags and the alias ends on the best one. Ties go to the
    lower version number, so racing processes agree. The version the alias leaves gets the tag
    ``gate.superseded_by``. To withdraw a champion, set its ``gate.decision`` tag to ``withdrawn``
    before moving the alias. With ``data_version``, only versions scored on that data compete: a
    value on other test data is not comparable.
    """
    for _ in range(max_rounds):
        promoted = [
            v
            for v in client.search_model_versions(f"name='{name}'")
            if v.tags.get("gate.decision") == "promoted"
            and (data_version is None or v.tags.get("triad.data_version") == data_version)
        ]
        if not promoted:
            raise TransientError(f"no promoted version of {name} is visible yet; run the evaluation again")
        best = promoted[0]
        for candidate in promoted[1:]:
            value, best_value = float(candidate.tags["gate.value"]), float(best.tags["gate.value"])
            if is_better(value, best_value, mode) or (
                value == best_value and int(candidate.version) < int(best.version)
            ):
                best = candidate
        holder = current_champion(client, name)
        if holder is not None and str(holder.version) == str(best.version):
            if "gate.superseded_by" in best.tags:  # written by a racing gate from a stale read
                client.delete_model_version_tag(name, best.version, "gate.superseded_by")
            return str(best.version)
        client.set_registered_model_alias(name, CHAMPION, best.version)
        if holder is not None:
            client.set_model_version_tag(name, holder.version, "gate.superseded_by", str(best.version))
    raise TransientError(
        f"the {CHAMPION} alias of {name} kept moving for {max_rounds} rounds; run the evaluation again"
    )


def registry_summary(cfg: TriadConfig, heads: list[str]) -> list[dict[str, Any]]:
    """Latest version and champion of each head's registered model (for the end-of-run printout)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri(cfg))
    client = MlflowClient()
    rows = []
    for head in heads:
        name = registered_model_name(cfg, head)
        try:
            versions = client.search_model_versions(f"name='{name}'")
        except MlflowException:
            versions = []
        champion = current_champion(client, name)
        latest = max((int(v.version) for v in versions), default=None)
        rows.append(
            {
                "model": name,
                "versions": len(versions),
                "latest": latest,
                "champion": champion.version if champion else None,
                "champion_value": champion.tags.get("gate.value") if champion else None,
                "metric": champion.tags.get("gate.metric") if champion else None,
            }
        )
    return rows
