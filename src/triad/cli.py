"""The ``triad`` command line. ``triad --help`` and ``triad COMMAND --help`` describe every command.

Overrides are Hydra's: ``key=value`` to change, ``group=option`` to swap a config group,
``experiment=NAME`` to apply an experiment config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from triad.errors import TriadError
from triad.heads import head_names, registry

STEPS = ("prepare", "train", "evaluate")


def _overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help=f"Hydra overrides, e.g. model.{head_names()[0]}.max_epochs=2 trainer=gpu "
        "experiment=NAME (conf/experiment/NAME.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    heads = head_names()
    example = heads[0]
    parser = argparse.ArgumentParser(
        prog="triad",
        description="Train families of deep-learning models reproducibly "
        "(Prefect + DVC + Lightning + MLflow, configured by Hydra). Heads: " + ", ".join(heads) + ".",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('triad').__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "pipeline",
        help="run the whole pipeline (Prefect flow over dvc.yaml)",
        description="Compose the config, write params.yaml and run every changed DVC stage "
        "as a Prefect flow; unchanged stages are skipped. Ends with where the results are. "
        "One pipeline runs at a time in a project: a second one waits for the first.",
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="if another pipeline is running in this project, refuse at once instead of waiting for it",
    )
    _overrides(p)

    p = sub.add_parser(
        "train",
        help="prepare (if needed), train, evaluate and register one head",
        description="Run one head outside DVC with a config composed from conf/ and overrides.",
    )
    p.add_argument("head", choices=heads)
    p.add_argument("--no-register", action="store_true", help="evaluate without registering in MLflow")
    _overrides(p)

    p = sub.add_parser(
        "sweep",
        help="tune one head's parameters with Optuna; write the best config back",
        description="Run Optuna trials over a search space in Hydra's sweep syntax; each trial trains "
        "and evaluates (no registration) as a child MLflow run of one parent run. The best trial's config "
        "is written to conf/experiment/best_<head>.yaml and params.yaml (so `dvc repro` reproduces it).",
        epilog=f"example: triad sweep {example} --trials 4 "
        f"'model.{example}.lr=tag(log,interval(1e-3,3e-2))' 'model.{example}.batch_size=choice(16,32)'",
    )
    p.add_argument("head", choices=heads)
    p.add_argument("--trials", type=int, default=10, help="number of trials (default 10)")
    p.add_argument("--study", help="Optuna study name (default <head>-sweep)")
    p.add_argument("--storage", help="Optuna storage URL shared by several sweep processes, e.g. sqlite:///sweep.db")
    p.add_argument("--metric", help="objective (default: the head's gate metric on the validation split)")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="OVERRIDE",
        help="key=interval(a,b) | key=tag(log,interval(a,b)) | key=range(a,b) | key=choice(a,b) | key=value",
    )

    p = sub.add_parser(
        "stage",
        help="run one DVC stage's work (what dvc.yaml calls)",
        description="Run one step of one head with the config in params.yaml. "
        "`prepare`, `train` and `evaluate` exist for every head; other steps are the head's own "
        "(`triad dag` lists every stage: <step>_<head>).",
    )
    p.add_argument("step", help="prepare, train, evaluate, or a head's own step")
    p.add_argument("head", choices=heads)
    p.add_argument("--params", type=Path, default=None, help="params file (default: <project>/params.yaml)")

    p = sub.add_parser(
        "config",
        help="print the composed config, or write params.yaml",
        description="Compose conf/ with overrides, validate it and print it as YAML.",
    )
    p.add_argument("--write-params", action="store_true", help="write it to params.yaml for `dvc repro`")
    _overrides(p)

    p = sub.add_parser(
        "dag",
        help="list the pipeline's stages in order with their upstream stages",
        description="Read dvc.yaml (the one definition of the DAG) and print it.",
    )

    p = sub.add_parser(
        "schedule",
        help="run the pipeline on a schedule (cron or interval) until stopped",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the pipeline as a Prefect deployment on pipeline.schedule (a long-running process; "
        "Ctrl-C or SIGTERM stops it).",
        epilog=f"""\
server:     PREFECT_API_URL when set (e.g. after `eval "$(triad services up)"`); otherwise the
            project's own Prefect server, scheduler included, on SQLite in .triad/scheduler,
            started here and stopped on exit. The dashboard's URL is printed at start.
overlap:    one run at a time. A run due while another is going is skipped (cancelled, shown in
            the dashboard): the pipeline is idempotent, so the next due run does the work.
            A second `triad schedule` in the same project refuses to start.
downtime:   pipeline.schedule.missed=run_once (default) runs once at start if any run fell due
            while nothing served the schedule; =skip waits for the next due time.
failures:   a run whose stage fails ends Failed in the dashboard; its summary artifact names
            the stage and its error.

examples:
  triad schedule                                     # conf/pipeline/default.yaml: 0 3 * * * UTC
  triad schedule --cron "*/30 * * * *" 'pipeline.heads=[{example}]'
  triad schedule --interval 600 pipeline.schedule.missed=skip""",
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", help="cron expression (sets pipeline.schedule.cron)")
    when.add_argument(
        "--interval",
        type=int,
        metavar="SECONDS",
        help="run every SECONDS instead of on a cron (sets pipeline.schedule.interval)",
    )
    _overrides(p)

    p = sub.add_parser(
        "ui",
        help="open the MLflow dashboard on localhost",
        description="Start `mlflow ui` on the project's tracking backend.",
    )
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")

    p = sub.add_parser(
        "services",
        help="start, stop or check the shared PostgreSQL, MLflow and Prefect services",
        description="Shared tracking and orchestration on this machine, on 127.0.0.1 only: "
        "PostgreSQL (Debian's package), an MLflow tracking server on it, a Prefect server on it, "
        "and a Prefect worker on the process work pool triad-process. State, logs and data live in "
        "<project>/.triad/services (or --dir, or $TRIAD_SERVICES_DIR). See docs/shared-services.md.",
    )
    services = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("up", "start whatever is not running (idempotent); print the variables to export on stdout"),
        ("down", "stop the worker, the servers and PostgreSQL (data is kept)"),
        ("status", "report each service; exit 0 only if all are running and healthy, else 1"),
        ("env", 'print the export lines for MLFLOW_TRACKING_URI and PREFECT_API_URL (eval "$(triad services env)")'),
    ):
        a = services.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        a.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="services home (default: $TRIAD_SERVICES_DIR or <project>/.triad/services)",
        )

    width = max(len(f"triad-{example}/3"), len("my-xrays@champion"))  # the card examples' column
    p = sub.add_parser(
        "card",
        help="print the model card of a registered version (its data, metrics, gate decision, intended use)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the model card the evaluation wrote for a registered version: the data it was\n"
        "trained on and its digest, the config, the metrics against their baselines, the gate's decision,\n"
        "intended use and known limits, and the evidence plots in its run (card/v<version>/card.md; the\n"
        "version's description is its summary). A version registered without a card gets what the registry\n"
        "and its run hold. Ends with where the version stands in the registry now.",
        epilog=f"""\
examples:
  triad card {example:<{width}}  # the champion of the model the current config's data trains
  triad card {f"triad-{example}/3":<{width}}  # version 3
  triad card {"my-xrays@champion":<{width}}  # an alias of a model trained on your own data (data.<head>.name)

exit codes: 0 printed (also for a version without a card, said on stderr); 2 no such model, version
or alias.""",
    )
    p.add_argument(
        "model",
        metavar="HEAD|NAME[@ALIAS|/VERSION]",
        help=f"a head ({', '.join(heads)}: the champion of the model its configured data trains) or a "
        "registered model, e.g. my-xrays (its champion), my-xrays@champion or my-xrays/3",
    )

    p = sub.add_parser(
        "predict",
        help="predict with a head's champion model from the registry",
        description=(
            "Load a registered model (by default the champion of triad-<head>, or of the model the configured "
            "data names) and predict. The request is checked before the model loads."
        ),
    )
    p.add_argument(
        "--model",
        metavar="NAME[@ALIAS|/VERSION]",
        help="a registered model, e.g. my-xrays, my-xrays@champion or my-xrays/3 "
        "(default: the champion of the model the current config's data trains, triad-<head> for a built-in task)",
    )
    p.add_argument("--model-uri", help="any MLflow model URI instead (runs:/..., models:/..., a local path)")
    predict = p.add_subparsers(dest="head", required=True, metavar="HEAD")
    for name, spec in registry().items():  # each head's flags live in its own cli.py
        head_cli = spec.cli
        head_cli.add_arguments(predict.add_parser(name, help=head_cli.SUMMARY, description=head_cli.DESCRIPTION))
    return parser


def _params(path: Path | None):
    from triad.config import load_params, project_root

    return load_params(path or project_root() / "params.yaml")


def cmd_pipeline(args) -> int:
    from flows.pipeline import busy_message, pipeline, pipeline_lock
    from triad import locks
    from triad.config import compose, project_root

    cfg = compose(args.overrides)  # fail on a bad config before Prefect starts
    if args.no_wait and (theirs := locks.holder(pipeline_lock(project_root(), cfg))):
        raise locks.Busy(busy_message(theirs))  # at once, before a Prefect server starts for nothing
    result = pipeline(overrides=args.overrides, wait=not args.no_wait)
    ran = [s["stage"] for s in result["stages"] if s["status"] == "ran"]
    print()
    print(f"stages run: {', '.join(ran) if ran else 'none: everything was up to date, nothing was trained'}")
    _print_where(cfg)
    return 0


def _print_where(cfg) -> None:
    from triad import gate, tracking

    uri = tracking.tracking_uri(cfg)
    print(f"MLflow tracking URI: {uri}")
    for row in gate.registry_summary(cfg, list(cfg.pipeline.head_names)):
        champion = (
            f"@champion -> v{row['champion']} ({row['metric']}={float(row['champion_value']):.4f})"
            if row["champion"]
            else "no champion"
        )
        print(f"  {row['model']}: {row['versions']} version(s), latest v{row['latest']}, {champion}")
    if uri.startswith(("http://", "https://")):
        print(f"Dashboard: {uri}")
    else:
        print(f"Dashboard: triad ui   (or: mlflow ui --backend-store-uri {uri})")


def cmd_train(args) -> int:
    """Prepare, train, evaluate. Under torchrun or srun every rank runs this: rank zero prepares,
    evaluates and registers; the other ranks wait for the data and only train."""
    from triad import distributed
    from triad.config import compose
    from triad.evaluate import evaluate
    from triad.heads import get_head
    from triad.prepare import is_prepared_for, prepare, run_step
    from triad.train import train

    cfg = compose(args.overrides)
    head = get_head(args.head, cfg)
    prepared = head.dir("data") / "summary.json"
    if not distributed.is_global_zero():
        distributed.wait_for_file(prepared, f"the prepared {args.head} data")
        train(cfg, args.head)
        return 0
    if not is_prepared_for(cfg, args.head, head.dir("data")):  # missing, or made from other data settings
        prepare(cfg, args.head)
    for step in head.steps():
        run_step(cfg, args.head, step)
    train(cfg, args.head)
    result = evaluate(cfg, args.head, register=not args.no_register)
    for key, value in sorted(result["metrics"].items()):
        print(f"{key}: {value:.4f}")
    return 0


def cmd_sweep(args) -> int:
    from triad.sweep import sweep

    if args.trials < 1:
        raise TriadError(f"--trials must be at least 1 (got {args.trials})")
    result = sweep(args.head, args.overrides, args.trials, args.study, args.storage, args.metric)
    print(
        f"{result['trials']} trial(s); best: trial {result['best_trial']}, "
        f"{result['metric']}={result['best_value']:.4f}"
    )
    print(f"  overrides: {' '.join(result['best_overrides'])}")
    print(
        f"  written: {result['experiment_file']} and params.yaml (reproduce: dvc repro, "
        f"or triad pipeline experiment=best_{args.head})"
    )
    print(f"  MLflow parent run: {result['parent_run_id']}")
    return 0


def cmd_stage(args) -> int:
    cfg = _params(args.params)
    if args.step == "prepare":
        from triad.prepare import prepare

        prepare(cfg, args.head)
    elif args.step == "train":
        from triad.train import train

        train(cfg, args.head)
    elif args.step == "evaluate":
        from triad.evaluate import evaluate

        evaluate(cfg, args.head)
    else:
        from triad.prepare import run_step

        run_step(cfg, args.head, args.step)
    return 0


def cmd_config(args) -> int:
    from triad.config import compose, project_root, to_yaml, write_params

    cfg = compose(args.overrides)
    if args.write_params:
        changed = write_params(cfg, project_root() / "params.yaml")
        print("params.yaml " + ("written" if changed else "already up to date"))
    else:
        print(to_yaml(cfg), end="")
    return 0


def cmd_dag(args) -> int:
    from triad.config import project_root
    from triad.dag import load_stages

    for stage in load_stages(project_root()):
        after = f"  <- {', '.join(stage.upstream)}" if stage.upstream else ""
        print(f"{stage.name:24s} {stage.cmd}{after}")
    return 0


def cmd_schedule(args) -> int:
    from triad.schedule import serve

    overrides = list(args.overrides)
    if args.cron:
        overrides += [f"pipeline.schedule.cron='{args.cron}'", "pipeline.schedule.interval=null"]
    if args.interval is not None:
        overrides.append(f"pipeline.schedule.interval={args.interval}")
    return serve(overrides)


def cmd_ui(args) -> int:
    from triad import tracking
    from triad.config import compose, project_root

    cfg = compose([])
    uri = tracking.tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        print(f"The tracking server serves its own dashboard: {uri}")
        return 0
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    if uri.startswith("sqlite:"):
        command += ["--default-artifact-root", (project_root() / cfg.logger.artifact_dir).as_uri()]
    print(f"MLflow dashboard on http://{args.host}:{args.port} (Ctrl-C stops it)")
    os.execv(command[0], command)
    return 0


def model_uri(model: str | None, default_name: str) -> str:
    """``models:/...`` for ``--model NAME[@ALIAS|/VERSION]``: the champion when neither is given."""
    from triad.gate import CHAMPION

    model = model or default_name
    if model.startswith("models:/"):
        return model
    return f"models:/{model}" if ("@" in model or "/" in model) else f"models:/{model}@{CHAMPION}"


def cmd_predict(args) -> int:
    from triad.heads import head_spec

    head_cli = head_spec(args.head).cli
    if hasattr(head_cli, "check"):  # the request's files and options, before anything heavy is imported
        head_cli.check(args)
    if args.model and args.model_uri:
        raise TriadError("give --model or --model-uri, not both")
    import mlflow

    from triad import tracking
    from triad.config import compose
    from triad.heads import registered_model_name

    cfg = compose([])
    mlflow.set_tracking_uri(tracking.tracking_uri(cfg))
    uri = args.model_uri or model_uri(args.model, registered_model_name(cfg, args.head))
    try:
        model = mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as exc:
        from triad.predict import first_line

        raise TriadError(
            f"cannot load {uri}: {first_line(exc)}. Run `triad pipeline` (or `triad train {args.head}`) first, "
            "or name a registered model with --model NAME[@alias|/version]."
        ) from None
    from triad.predict import show

    show(args, model)
    return 0


def cmd_card(args) -> int:
    """Print a registered version's model card (``triad.card``); one without a card gets what the store holds."""
    from mlflow.tracking import MlflowClient

    from triad import card, tracking
    from triad.config import compose
    from triad.heads import registered_model_name

    name, alias, version = card.parse_ref(args.model)
    cfg = compose([])
    if name in head_names():
        name = registered_model_name(cfg, name)
    uri = tracking.tracking_uri(cfg)
    client = MlflowClient(tracking_uri=uri)
    model_version = card.resolve(client, name, alias, version, store=uri)
    text = card.read_card(client, model_version)
    if text is None:
        lost = model_version.tags.get(card.CARD_TAG)
        why = (
            f"its card {lost} is not in run {model_version.run_id} (deleted, or the artifact store moved)"
            if lost
            else "no model card (registered before cards, or not by `triad`'s evaluation)"
        )
        print(f"triad: {name} v{model_version.version}: {why}; what the registry and its run hold:", file=sys.stderr)
        text = card.build(client, model_version)
    print(text, end="")
    print()
    print(card.registry_now(client, model_version))
    return 0


def cmd_services(args) -> int:
    from triad import services

    if args.action == "up":
        env = services.up(args.dir)
        print(services.exports(env), end="")
        return 0
    if args.action == "down":
        stopped = services.down(args.dir)
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
        return 0
    if args.action == "env":
        home = args.dir or services.default_home()
        print(services.exports(services.client_env(services.load_state(services.Layout(home.resolve())))), end="")
        return 0
    report = services.status(args.dir)
    for name, row in report.items():
        state = "healthy" if row["healthy"] else ("running, not answering" if row["running"] else "stopped")
        print(f"{name:9s} {state:24s} {row['url']}")
    return 0 if all(row["running"] and row["healthy"] for row in report.values()) else 1


COMMANDS = {
    "pipeline": cmd_pipeline,
    "train": cmd_train,
    "sweep": cmd_sweep,
    "stage": cmd_stage,
    "config": cmd_config,
    "dag": cmd_dag,
    "schedule": cmd_schedule,
    "ui": cmd_ui,
    "predict": cmd_predict,
    "card": cmd_card,
    "services": cmd_services,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Overrides may follow options (`triad train HEAD --no-register a=1`), which argparse
    # alone would refuse: collect the key=value words it did not place into the overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in word or word.startswith("-") for word in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    if args.command == "stage" and os.environ.get("TRIAD_WARM_SOCKET"):
        from triad import warm  # a pipeline's warm server runs the stage, if it can (triad.warm)

        code = warm.delegate(sys.argv[1:] if argv is None else list(argv))
        if code is not None:
            return code
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("httpx", "httpcore", "alembic", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not sys.stderr.isatty():
        # a log that is a file gets no MLflow download bars (each a line of carriage-return frames);
        # stage subprocesses inherit it. A value the user set is kept.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warm = sys.modules.get("triad.warm")
    if warm is not None and warm.forked_from:
        logging.getLogger("triad.warm").debug("running in a fork of the warm server %d", warm.forked_from)
    # The ephemeral Prefect server would try to send usage telemetry; triad does not phone home
    # unless the user opts in by setting this variable.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        return COMMANDS[args.command](args)
    except TriadError as exc:
        print(f"triad: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
