"""The spread head on a user's own edge lists: reading, every defect by its message and line, folders, on_bad,
the user's node ids in every output, the networks in the evaluation, and `triad predict spread` on a file."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.heads import own_spread
from tests.tiny import TINY
from triad.config import compose
from triad.data.own import Problems
from triad.errors import ConfigError, DataError, TriadError
from triad.heads.spread import cli, simulate
from triad.heads.spread.own_data import components, read_edge_list, read_networks

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _read(path: Path) -> tuple:
    problems = Problems()
    return read_edge_list(path, problems), problems


def test_separators_comments_header_and_weights(tmp_path):
    spaced = _write(
        tmp_path / "spaced.txt", "# a triangle and a tail\n\n1 2\n2\t3   # tab\n  3 1\n% konect comment\n3 4\n"
    )
    commas = _write(tmp_path / "commas.csv", "\ufeffsource,target,weight\n1,2,0.5\n2, 3,1\n3 ,1,2\n3,4,0.1\n")
    read = {}
    for path in (spaced, commas):
        network, problems = _read(path)
        assert not problems, problems.listing()
        read[path.name] = network
        assert network.ids == [1, 2, 3, 4] and network.pairs() == [[1, 2], [2, 3], [3, 1], [3, 4]]
    assert read["commas.csv"].header == "source,target,weight" and read["commas.csv"].weights_ignored == 4
    assert read["spaced.txt"].header is None and read["spaced.txt"].weights_ignored == 0


def test_each_defect_is_named_with_its_file_and_line(tmp_path):
    bad = _write(
        tmp_path / "bad.txt",
        "# header comment\n10 20\n20 30\n30 30\n30 20\n10 x7\n40 50 0.5 9\n20 10\n1.5 2\n",
    )
    with pytest.raises(DataError) as info:
        read_networks(bad, "fail", "my networks")
    message = str(info.value)
    assert "6 problem(s) in my networks" in message
    assert "bad.txt:4: self-loop: node 30 is linked to itself" in message
    assert "bad.txt:5: duplicate edge: 30-20 is already on line 3" in message  # reversed is the same edge
    assert "bad.txt:8: duplicate edge: 20-10 is already on line 2" in message
    assert "bad.txt:6: non-integer node id: 'x7'" in message
    assert "bad.txt:9: non-integer node id: '1.5'" in message
    assert "bad.txt:7: wrong number of columns: expected 'u v' or 'u v weight', got 4" in message
    assert "data.spread.on_bad=skip" in message

    one = _write(tmp_path / "one.txt", "# a node and nothing else\n7 7\n")
    with pytest.raises(DataError) as info:
        read_networks(one, "fail", "x")
    assert "one.txt:2: self-loop: node 7" in str(info.value)
    assert "one.txt: one node: only node 7 (a network needs at least two nodes joined by an edge)" in str(info.value)
    empty = _write(tmp_path / "empty.txt", "# nothing\n\n")
    with pytest.raises(DataError, match=r"empty.txt: no edges: no usable 'u v' line"):
        read_networks(empty, "fail", "x")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"1 2\n2 3 # caf\xe9\n")
    with pytest.raises(DataError, match=r"latin.txt:2: not UTF-8 text: byte 0xe9"):
        read_networks(latin, "fail", "x")


def test_on_bad_skip_drops_bad_lines_and_unusable_files_and_counts_them(tmp_path):
    folder = tmp_path / "nets"
    _write(folder / "a.txt", "1 2\n2 1\n2 3\n3 3\nq 4\n")
    _write(folder / "b.edges", "5 5\n")  # one node: the whole file is left out
    networks, problems, ignored = read_networks(folder, "skip", "x")
    assert [n.name for n in networks] == ["a.txt"] and networks[0].pairs() == [[1, 2], [2, 3]]
    assert networks[0].dropped == 3 and problems.skipped == 1 and ignored == []
    assert problems.counts() == {"duplicate edge": 1, "self-loop": 2, "non-integer node id": 1, "one node": 1}


def test_a_folder_of_networks(tmp_path):
    folder = tmp_path / "nets"
    _write(folder / "b.csv", "1,2\n2,3\n")
    _write(folder / "sub" / "a.edgelist", "10 11\n")
    _write(folder / "c.EDGES", "5 6\n6 7\n")
    _write(folder / "README.md", "about these networks\n")
    _write(folder / ".hidden" / "x.txt", "1 1\n")  # hidden: not read (it would be a one-node error)
    networks, problems, ignored = read_networks(folder, "fail", "x")
    assert [n.name for n in networks] == ["b.csv", "c.EDGES", "sub/a.edgelist"]
    assert ignored == ["README.md"] and not problems
    _write(tmp_path / "none" / "notes.md", "no edge lists here")
    with pytest.raises(DataError, match=r"holds no edge-list files\. Expected one network a file"):
        read_networks(tmp_path / "none", "fail", "x")


def test_arbitrary_ids_are_relabelled_and_kept(tmp_path):
    big = 2**62 + 5
    network, problems = _read(_write(tmp_path / "ids.txt", f"-7 {big}\n{big} 0\n900 901\n"))
    assert not problems and network.ids == [-7, big, 0, 900, 901]
    assert network.edges.tolist() == [[0, 1], [1, 2], [3, 4]]
    assert network.pairs() == [[-7, big], [big, 0], [900, 901]]
    assert components(network.n, network.edges).tolist() == [0, 0, 0, 1, 1]  # two components: fine
    _, problems = _read(_write(tmp_path / "huge.txt", f"1 {2**64}\n1 2\n"))
    assert "huge.txt:1: node id out of range" in problems.listing()


def test_the_config_group_adds_the_users_networks_to_the_built_in_training_graphs():
    cfg = compose(["data/spread=edge_list", "data.spread.path=/data/nets"]).data.spread
    default = compose([]).data.spread
    assert (cfg.path, cfg.raw, cfg.name, cfg.on_bad) == ("/data/nets", "/data/nets", "own-spread", "fail")
    assert cfg.model_dump(exclude={"path", "raw", "name"}) == default.model_dump(exclude={"path", "raw", "name"})
    with pytest.raises(ConfigError, match=r"data.spread.raw: Value error, data.spread.path is not set"):
        compose(["data/spread=edge_list"])


def test_prepare_puts_the_users_networks_into_the_evaluation(tmp_path):
    from triad.heads.spread import evaluate as ev
    from triad.heads.spread.data import SpreadDataModule, load_split, prepare
    from triad.heads.spread.model import SpreadGNN

    folder = tmp_path / "nets"
    own_spread.make(folder)
    _write(folder / "pair.txt", "# disconnected: two separate edges\n-1 -2\n-3 -4\n")
    base = [*TINY["spread"], "data.spread.train_graphs=2", "data.spread.val_graphs=1"]
    cfg = compose([*base, "data/spread=edge_list", f"data.spread.path={folder}"])
    out = tmp_path / "prepared"
    out.mkdir()
    missing = compose([*base, "data/spread=edge_list", f"data.spread.path={tmp_path / 'nope'}"]).data.spread
    with pytest.raises(DataError, match=r"data.spread.path=.*nope does not exist\. Expected one network a file"):
        prepare(missing, out)
    summary = prepare(cfg.data.spread, out)
    assert summary["user_networks"] == 3 and summary["test"]["graphs"] == 2 + 3

    report = json.loads((out / "data_report.json").read_text())
    assert report["counts"]["your networks"] == {"train": 0, "val": 0, "test": 3}
    assert report["counts"]["generated graphs"] == {"train": 2, "val": 1, "test": 1}
    grid = report["networks"]["grid.txt"]
    assert (grid["nodes"], grid["edges"], grid["max_degree"], grid["components"]) == (36, 60, 4, 1)
    assert report["networks"]["ring.csv"]["weights_ignored"] == 30 and report["networks"]["pair.txt"]["components"] == 2
    assert "pair.txt: more than one component, which is fine" in report["note"]
    markdown = (out / "data_report.md").read_text()
    assert "| your networks | 0 | 0 | 3 | 3 |" in markdown and "| grid.txt | 36 | 60 | 3.333 | 4 | 1 | 36 |" in markdown

    questions, _ = load_split(out, "test")
    user = [q for q in questions if q.graph.name.startswith("user:")]
    assert len(user) == 3 * cfg.data.spread.examples_per_graph
    grid_graph = next(q.graph for q in user if q.graph.name == "user:grid.txt")
    assert sorted(map(int, grid_graph.names)) == sorted(own_spread.grid_ids())

    # The built-in part of the test split is the same with or without the user's networks.
    plain = tmp_path / "plain"
    plain.mkdir()
    prepare(compose(base).data.spread, plain)
    built_in, _ = load_split(plain, "test")
    for a, b in zip(built_in, questions):
        assert a.graph.name == b.graph.name and np.array_equal(a.target, b.target)

    datamodule = SpreadDataModule(out, batch_size=8)
    network = SpreadGNN(cfg.model.spread).eval()
    evaluation = ev.evaluate(network, datamodule.test, cfg.model.spread, 20, 0, tmp_path)
    metrics, table = evaluation.metrics, evaluation.tables["user_networks"]
    assert {"test_user_grid.txt_mae", "test_user_ring.csv_size_model", "test_user_pair.txt_size_mc"} <= set(metrics)
    assert "test_ic_user_mae" in metrics and "test_mae" in metrics
    assert list(table.network.unique()) == ["grid.txt", "pair.txt", "ring.csv"]
    seeds = {int(s) for text in table[table.network == "grid.txt"].seeds for s in text.split()}
    assert seeds <= set(own_spread.grid_ids())  # seeds named by the user's ids
    rows = table[table.network == "ring.csv"]
    assert metrics["test_user_ring.csv_size_mc"] == pytest.approx(rows.size_mc.mean())
    # the user's networks count in the gate metric: it is the per-node MAE over every test node
    answers = ev.predict(network, datamodule.test)
    every = np.concatenate([np.abs(a - q.target) for a, q in zip(answers, datamodule.test)])
    assert metrics["test_mae"] == pytest.approx(every.mean(), rel=1e-5)


def _args(edges: Path, **given) -> argparse.Namespace:
    values = {"seeds": [1], "process": "ic", "p": 0.3, "beta": None, "gamma": None, "t": None, "top": 3}
    values |= {"out": None, "on_bad": "fail"} | given
    return argparse.Namespace(head="spread", edges=edges, **values)


def test_check_refuses_a_bad_request_before_the_model_loads(tmp_path):
    good = _write(tmp_path / "g.txt", "1 2\n2 3\n")
    cli.check(_args(good))
    with pytest.raises(DataError, match="no such edge-list file"):
        cli.check(_args(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match=r"(?s)dup.txt:2: duplicate edge: 2-1 is already on line 1.*--on-bad skip"):
        cli.check(_args(_write(tmp_path / "dup.txt", "1 2\n2 1\n2 3\n")))
    cli.check(_args(tmp_path / "dup.txt", on_bad="skip"))
    with pytest.raises(TriadError, match=r"seed\(s\) 9 not in .*g.txt: its 3 nodes are 1, 2, 3"):
        cli.check(_args(good, seeds=[1, 9]))
    with pytest.raises(TriadError, match="--process sir needs --beta, --gamma; give --gamma"):
        cli.check(_args(good, process="sir", beta=0.2))
    with pytest.raises(TriadError, match=r"--p is a probability: give a value in \[0, 1\], not 1.5"):
        cli.check(_args(good, p=1.5))
    with pytest.raises(TriadError, match="--out .* is a folder"):
        cli.check(_args(good, out=tmp_path))
    assert cli.NEEDS == simulate.USES


def test_predict_refuses_a_bad_file_in_a_process_that_imports_nothing_heavy(tmp_path):
    bad = _write(tmp_path / "bad.txt", "1 2\n3 3\n")
    code = (
        "import sys\n"
        "from triad.cli import main\n"
        f"code = main(['predict', 'spread', {str(bad)!r}, '--seeds', '1', '--p', '0.3'])\n"
        "heavy = sorted({'torch', 'mlflow', 'pandas', 'networkx', 'lightning'} & set(sys.modules))\n"
        "print(code, heavy)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.stdout.strip() == "3 []", run.stdout + run.stderr
    assert "bad.txt:2: self-loop: node 3" in run.stderr


def test_predict_writes_every_node_with_the_users_ids(tmp_path, capsys):
    """`triad predict spread FILE --out`: the served model (a real, untrained network) answers; the CSV has
    one row per node of the file, named by the file's ids, and the summary the expected size."""
    import torch

    from tests.profile import section
    from triad.heads.spread.model import SpreadGNN
    from triad.heads.spread.pyfunc import SpreadPyfunc
    from triad.predict import show

    served = SpreadPyfunc()
    served.cfg = section("model", "spread", hidden=8, iterations=2)
    torch.manual_seed(0)
    served.network = SpreadGNN(served.cfg).eval()
    served.validated = None  # no validated range: the answer is simulated, and says so

    class Loaded:  # what mlflow.pyfunc.load_model returns: predict(model_input)
        def predict(self, model_input):
            return served.predict(None, model_input)

    edges = _write(tmp_path / "net.csv", "node_a,node_b\n-40,77\n77,123456789\n# a second component\n5,6\n")
    out = tmp_path / "results" / "result.csv"
    args = _args(edges, seeds=[77], out=out)
    cli.check(args)
    show(args, Loaded())
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["node"]) for r in rows] == [-40, 77, 123456789, 5, 6]
    probability = {int(r["node"]): float(r["probability"]) for r in rows}
    assert probability[77] == 1.0 and all(0.0 <= p <= 1.0 for p in probability.values())
    summary = json.loads((tmp_path / "results" / "result.summary.json").read_text())
    assert summary["seeds"] == [77] and summary["nodes"] == 5 and summary["edges"] == 3
    assert summary["expected_size"] == pytest.approx(sum(probability.values()), abs=1e-5)
    assert summary["method"] == "simulated" and "stores no validated range" in summary["reason"]
    assert f"wrote 5 nodes to {out}" in capsys.readouterr().out
