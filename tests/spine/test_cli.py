"""The command line: --help everywhere, and bad input that fails clearly without writing anything."""

from __future__ import annotations

import pytest

from triad.cli import build_parser, main

COMMANDS = [
    [],
    ["pipeline"],
    ["train"],
    ["stage"],
    ["config"],
    ["dag"],
    ["schedule"],
    ["ui"],
    ["predict"],
    ["predict", "translator"],
    ["predict", "diffusion"],
    ["predict", "transfer"],
    ["predict", "spread"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "triad")
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: triad" in capsys.readouterr().out


def test_every_subcommand_has_help_text():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {c.dest for c in sub._choices_actions} == set(sub.choices)
    assert all(c.help for c in sub._choices_actions)


def test_bad_config_value_exits_2_with_the_key(capsys):
    assert main(["config", "trainer.precision=fp8"]) == 2
    err = capsys.readouterr().err
    assert "triad: error: invalid config" in err and "trainer.precision" in err


def test_unknown_head_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "gpt5"])
    assert exit_.value.code == 2
    assert "invalid choice: 'gpt5'" in capsys.readouterr().err


def test_training_without_prepared_data_says_what_to_run(project, capsys):
    assert main(["config", "--write-params"]) == 0
    assert main(["stage", "train", "translator"]) == 3
    assert "triad stage prepare translator" in capsys.readouterr().err
    assert not (project / "artifacts").exists()


def test_schedule_serves_the_configured_cron_one_run_at_a_time():
    import sys

    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    from triad.config import project_root

    sys.path.insert(0, str(project_root()))
    from flows.pipeline import scheduled_deployment

    deployment = scheduled_deployment(
        ["pipeline.schedule.cron=*/30 * * * *", "pipeline.schedule.timezone=Europe/Berlin"]
    )
    assert deployment.name == "nightly"
    assert deployment.schedules[0].schedule.cron == "*/30 * * * *"
    assert deployment.schedules[0].schedule.timezone == "Europe/Berlin"
    assert deployment.parameters == {
        "overrides": ["pipeline.schedule.cron=*/30 * * * *", "pipeline.schedule.timezone=Europe/Berlin"]
    }
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
    every = scheduled_deployment(["pipeline.schedule.interval=90"])
    assert every.schedules[0].schedule.interval.total_seconds() == 90


def test_prefect_yaml_uses_the_configured_cron_one_run_at_a_time():
    import yaml

    from triad.config import compose, project_root

    deployments = yaml.safe_load((project_root() / "prefect.yaml").read_text())["deployments"]
    cron = compose([]).pipeline.schedule.cron
    assert {d["schedules"][0]["cron"] for d in deployments} == {cron}
    assert all(d["entrypoint"] == "flows/pipeline.py:pipeline" for d in deployments)
    assert all(d["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"} for d in deployments)


@pytest.mark.slow
def test_corrupt_data_file_fails_clearly_and_keeps_the_previous_data(project, tmp_path, monkeypatch, capsys):
    """A corrupt download/mirror file: exit 3, the file and the fix named, data/ left as it was."""
    import gzip
    import json

    assert (
        main(["config", "--write-params", "data.translator.max_train_pairs=200", "data.translator.vocab_size=200"]) == 0
    )
    assert main(["stage", "prepare", "translator"]) == 0
    before = (project / "data/translator/summary.json").read_text()

    mirror = tmp_path / "mirror" / "multi30k"
    mirror.mkdir(parents=True)
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("de", "en"):
            (mirror / f"{split}.{lang}.gz").write_bytes(gzip.compress(b"Ein Hund rennt.\n"))
    monkeypatch.setenv("TRIAD_DATA_MIRROR", str(mirror.parent))
    assert main(["config", "--write-params", "data/translator=multi30k_de_en"]) == 0
    assert main(["stage", "prepare", "translator"]) == 3
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and ".gz" in err
    assert (project / "data/translator/summary.json").read_text() == before
    assert json.loads(before)["head"] == "translator"
    assert not [p for p in (project / "data").iterdir() if p.name.startswith(".")]  # no half-written temp dir
