"""The registry gate on a real SQLite MLflow backend: a worse model never takes `champion`."""

from __future__ import annotations

import math

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from triad.gate import CHAMPION, current_champion, gate


class Echo(mlflow.pyfunc.PythonModel):
    """A real (tiny) pyfunc model: returns the length of each input string."""

    def predict(self, context, model_input, params=None):
        return [len(s) for s in model_input["text"]]


def _register(name: str) -> str:
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), input_example=pd.DataFrame({"text": ["a b"]}))
    return str(mlflow.register_model(info.model_uri, name).version)


@pytest.fixture
def client(sqlite_uri, tmp_path):
    mlflow.set_tracking_uri(sqlite_uri)
    mlflow.set_experiment("gate-test")
    yield MlflowClient()
    mlflow.set_tracking_uri(None)


def test_gate_promotes_only_improvements(client):
    name = "triad-test"
    ok = (True, "fine")
    v1 = _register(name)
    first = gate(client, name, v1, "test_bleu", 10.0, "max", ok)
    assert first["promoted"] and str(current_champion(client, name).version) == v1

    v2 = _register(name)
    worse = gate(client, name, v2, "test_bleu", 9.0, "max", ok)
    assert not worse["promoted"] and str(current_champion(client, name).version) == v1
    tags = client.get_model_version(name, v2).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.champion_before"] == v1
    assert "does not beat champion" in client.get_model_version(name, v2).description

    v3 = _register(name)
    assert gate(client, name, v3, "test_bleu", 12.5, "max", ok)["promoted"]
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == v3


def test_gate_never_promotes_nan_or_a_failed_bar(client):
    name = "triad-test-min"
    v1 = _register(name)
    assert gate(client, name, v1, "fid", 50.0, "min", (True, "fine"))["promoted"]
    v2 = _register(name)
    assert not gate(client, name, v2, "fid", math.nan, "min", (True, "fine"))["promoted"]
    v3 = _register(name)
    rejected = gate(client, name, v3, "fid", 1.0, "min", (False, "did not beat the copy baseline"))
    assert not rejected["promoted"] and "copy baseline" in rejected["reason"]
    assert str(current_champion(client, name).version) == v1
    v4 = _register(name)
    assert gate(client, name, v4, "fid", 40.0, "min", (True, "fine"))["promoted"]


class StaleChampionRead(MlflowClient):
    """A real client whose first read of the alias sees the registry as it was before a racing gate wrote."""

    def __init__(self, tracking_uri: str):
        super().__init__(tracking_uri)
        self.stale = True

    def get_model_version_by_alias(self, name, alias):
        if self.stale:
            self.stale = False
            raise mlflow.exceptions.MlflowException(f"alias {alias} not found (as read before the other gate wrote)")
        return super().get_model_version_by_alias(name, alias)


def test_racing_gates_leave_champion_on_the_best(client):
    """Two gates both read "no champion"; the better finishes first, the worse writes last."""
    name = "triad-race"
    ok = (True, "fine")
    worse, better = _register(name), _register(name)
    assert gate(client, name, better, "test_bleu", 12.0, "max", ok)["promoted"]
    late = gate(StaleChampionRead(mlflow.get_tracking_uri()), name, worse, "test_bleu", 10.0, "max", ok)
    # It decided on a stale read (promoted, "first version"), but the alias settled on the best.
    assert late["promoted"] and late["reason"] == "first version to clear the bar"
    assert str(current_champion(client, name).version) == better
    assert late["champion_after"] == better
    assert client.get_model_version(name, worse).tags["gate.superseded_by"] == better


def test_a_champion_on_other_data_is_rescored_before_the_comparison(client):
    """Like with like: v1 scored 10.0 on data A; on data B it scores 5.0, so v2's 8.0 on B beats it
    (against the recorded 10.0 it would have lost), and both data versions are on the decision."""
    name, ok = "triad-test-data", (True, "fine")
    v1 = _register(name)
    assert gate(client, name, v1, "test_bleu", 10.0, "max", ok, data_version_tag="md5:aaaa")["promoted"]
    asked = []

    def rescore(champion):
        asked.append(str(champion.version))
        return 5.0

    v2 = _register(name)
    decision = gate(client, name, v2, "test_bleu", 8.0, "max", ok, data_version_tag="md5:bbbb", rescore=rescore)
    assert asked == [v1] and decision["promoted"] and decision["champion_before"]["value"] == 5.0
    tags = client.get_model_version(name, v2).tags
    assert tags["gate.champion_before_data_version"] == "md5:aaaa" and tags["triad.data_version"] == "md5:bbbb"
    assert (
        float(tags["gate.champion_before_recorded_value"]) == 10.0 and float(tags["gate.champion_before_value"]) == 5.0
    )
    assert "rescored on this data md5:bbbb" in tags["gate.reason"]
    # The alias settles among versions scored on this data only: v1's 10.0 on data A does not win it back.
    assert str(current_champion(client, name).version) == v2

    v3 = _register(name)  # same data as the champion: no rescoring, the recorded values compare
    assert not gate(client, name, v3, "test_bleu", 7.0, "max", ok, data_version_tag="md5:bbbb", rescore=rescore)[
        "promoted"
    ]
    assert asked == [v1]


def test_a_champion_that_cannot_be_rescored_is_not_compared(client):
    from triad.errors import NotComparable

    name, ok = "triad-test-arch", (True, "beats the copy baseline")
    v1 = _register(name)
    assert gate(client, name, v1, "test_bleu", 30.0, "max", ok, data_version_tag="md5:aaaa")["promoted"]

    def cannot(champion):
        raise NotComparable("its vocabulary is not this data's")

    v2 = _register(name)
    decision = gate(client, name, v2, "test_bleu", 3.0, "max", ok, data_version_tag="md5:bbbb", rescore=cannot)
    assert decision["promoted"] and str(current_champion(client, name).version) == v2
    assert (
        "cannot be scored on this data (its vocabulary is not this data's): judged by the bar alone"
        in decision["reason"]
    )
    v3 = _register(name)  # a bar failure still fails, whatever the champion
    assert not gate(
        client,
        name,
        v3,
        "test_bleu",
        50.0,
        "max",
        (False, "copies the source"),
        data_version_tag="md5:cccc",
        rescore=cannot,
    )["promoted"]
