"""``python -m fetal_core``: train one config, run (or join) a study, write a report, fetch the data set.

Bad arguments and bad data end with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Sequence

from . import records
from .config import DEFAULT_STUDY_NAME, settings, time_budget
from .data import DatasetError, fetch_dataset, load_dataset, split_dataset
from .limits import finite_or_none
from .pool import SCHEDULER_ENV, PoolError
from .pruning import PRUNERS
from .search import SAMPLERS, SearchSpace, StudyPlan, parse_depth, run_study
from .storage import StorageError, open_storage
from .text import clip
from .training import OPTIMIZERS, ConfigError, TrainConfig, train


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own code for usage errors)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _print_json(payload: dict) -> None:
    print(json.dumps(finite_or_none(payload), allow_nan=False))  # JSON has no NaN: a diverged loss is null


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # argparse would otherwise name this function: "invalid _positive_int value"
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fetal_core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = commands.add_parser("train", help="train one configuration and print its curve")
    t.add_argument("--data", help="CSV path (default: $FETAL_HPO_DATA or data/fetal_health.csv)")
    t.add_argument("--layers", type=_positive_int, nargs="+", default=[15, 10], help="hidden layer widths")
    t.add_argument("--batch-size", type=_positive_int, default=100)
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="Adam")
    t.add_argument("--lr", type=_positive_float, default=1.0, help="learning rate")
    t.add_argument("--weight-decay", type=_positive_float, default=1.0)
    t.add_argument("--scheduler", action=argparse.BooleanOptionalAction, default=True, help="cosine annealing")
    t.add_argument("--epochs", type=_positive_int, default=50)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--standardize", action="store_true", help="scale features (fitted on the training part)")
    t.add_argument("--json", action="store_true", help="print one JSON object instead of the table")

    s = commands.add_parser("study", help="run N trials of an Optuna study (several processes cooperate)")
    s.add_argument("--storage", help="Optuna storage URL (default: $FETAL_HPO_STORAGE or the SQLite file)")
    s.add_argument("--study-name", default=DEFAULT_STUDY_NAME)
    s.add_argument("--trials", type=_positive_int, default=30, help="trials this process runs")
    s.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    s.add_argument("--pruner", choices=PRUNERS, default="median")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--epochs", type=_positive_int, default=50)
    s.add_argument("--depth", default="nas", help="'nas' (define-by-run 2-4 layers) or a fixed 2, 3, 4")
    s.add_argument("--standardize", action="store_true")
    s.add_argument("--data", help="CSV path")
    s.add_argument("--heartbeat", type=_positive_int, help="seconds between heartbeats ($FETAL_HPO_HEARTBEAT or 10)")
    s.add_argument(
        "--scheduler",
        default=os.environ.get(SCHEDULER_ENV) or None,
        help="train the trials on the Dask cluster at tcp://host:port ($FETAL_HPO_SCHEDULER); default: here",
    )
    s.add_argument("--json", action="store_true")

    r = commands.add_parser("race", help="race search strategies over seeds (resumes a race of the same name)")
    r.add_argument("--name", required=True, help="race name (its studies are race:<name>:...)")
    r.add_argument("--strategies", nargs="+", choices=SAMPLERS, default=["tpe", "random"])
    r.add_argument("--pruning", nargs="+", choices=["on", "off"], default=["on"], help="median pruning on, off or both")
    r.add_argument("--seeds", type=_positive_int, default=3, help="repeats of every (strategy, pruning) run")
    r.add_argument("--trials", type=_positive_int, default=20, help="trials per run")
    r.add_argument("--epochs", type=_positive_int, default=20, help="epochs per trial")
    r.add_argument("--reduced", action="store_true", help="lesson-sized space: 2 fixed layers, Adam (needed by grid)")
    r.add_argument("--grid-points", type=_positive_int, default=3, help="grid values per searched range")
    r.add_argument("--workers", type=_positive_int, help="local pool worker processes (default: one per core)")
    r.add_argument(
        "--scheduler",
        default=os.environ.get(SCHEDULER_ENV) or None,
        help="run on the Dask cluster at tcp://host:port ($FETAL_HPO_SCHEDULER) instead of a local pool",
    )
    r.add_argument("--target", type=float, help="accuracy %% for 'who got there first' (default: computed)")
    r.add_argument("--storage", help="Optuna storage URL")
    r.add_argument("--data", help="CSV path")
    r.add_argument("--json", action="store_true")

    p = commands.add_parser("report", help="write one self-contained HTML report of a study or of a lesson")
    p.add_argument("--storage", help="Optuna storage URL (default: $FETAL_HPO_STORAGE or the SQLite file)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study-name", help="the study to report on")
    which.add_argument("--lesson", help="the class-mode lesson to report on (its leaderboard and class study)")
    p.add_argument("--out", required=True, help="the HTML file to write")

    f = commands.add_parser("fetch-data", help="copy ../shared/data or download the Kaggle data set into data/")
    f.add_argument("--data", help="destination path")
    return parser


def _train(args: argparse.Namespace) -> int:
    data = load_dataset(settings(args.data).data_path)
    config = TrainConfig(
        hidden_layers=tuple(args.layers),
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        scheduler=args.scheduler,
        epochs=args.epochs,
        seed=args.seed,
        standardize=args.standardize,
    )
    split = split_dataset(data, standardize=args.standardize)

    def show(m) -> None:
        print(
            f"epoch {m.epoch:4d}  train loss {m.train_loss:9.4f}  val loss {m.val_loss:9.4f}  "
            f"val acc {m.val_accuracy:6.2f}%  balanced {m.balanced_accuracy:6.2f}%  {m.seconds:6.2f}s"
        )

    budget = time_budget(defaults=False).run_seconds  # the user's own machine: only when FETAL_HPO_RUN_SECONDS is set
    result = train(config, split, None if args.json else show, time_budget=budget)
    if args.json:
        _print_json(result.to_dict())
    else:
        if result.stopped_by_budget:
            print(f"stopped by the time budget of {result.stopped_by_budget:g} s per run ($FETAL_HPO_RUN_SECONDS)")
        print(
            f"final validation accuracy {result.final_val_accuracy:.2f}% (null accuracy "
            f"{result.null_accuracy:.2f}%), best {result.best_val_accuracy:.2f}%, {result.seconds:.2f}s"
        )
    return 0


def _study(args: argparse.Namespace) -> int:
    config = settings(args.data, args.storage)
    plan = StudyPlan(
        storage_url=config.storage_url,
        study_name=args.study_name,
        trials=args.trials,
        sampler=args.sampler,
        pruner=args.pruner,
        seed=args.seed,
        epochs=args.epochs,
        space=SearchSpace(depth=parse_depth(args.depth)),
        standardize=args.standardize,
    )  # a refused setting (a class-mode study name) is said before the data set is read
    data = load_dataset(config.data_path)
    heartbeat = args.heartbeat or config.heartbeat_seconds
    storage = open_storage(plan.storage_url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat)

    def progress(study, trial) -> None:
        if not args.json:
            value = "-" if trial.value is None else f"{trial.value:.2f}%"
            worker = records.trial_worker(trial) or ""
            reason = records.trial_fail_reason(trial) if trial.state.name == "FAIL" else None
            line = f"trial {trial.number:4d}  {trial.state.name:8s}  {value:>7s}  {worker}  {trial.params}"
            print(f"{line}  ({clip(reason, 120)})" if isinstance(reason, str) else line, flush=True)

    if args.scheduler:  # the pool applies the server's time budget (defaults included)
        summary = _study_on_cluster(args.scheduler, plan, data, storage, progress)
    else:  # the user's own machine: a time budget only when FETAL_HPO_TRIAL_SECONDS asks for one
        budget = time_budget(defaults=False).trial_seconds
        summary = run_study(plan, data, storage, on_trial_end=progress, time_budget=budget)
    if args.json:
        _print_json(summary.to_dict())
    else:
        best = "-" if summary.best_value is None else f"{summary.best_value:.2f}%"
        print(
            f"study '{summary.study}': {summary.trials} trials ({summary.complete} complete, {summary.pruned} "
            f"pruned, {summary.failed} failed); best {best} {summary.best_params}; {summary.seconds:.1f}s"
        )
    return 0


def _study_on_cluster(address: str, plan: StudyPlan, data, storage, progress):
    """Run the plan's trials on the Dask cluster at ``address``, one at a time, printing each as it ends."""
    import time

    import optuna
    from optuna.trial import TrialState

    from .pool import open_pool

    pool = open_pool(address)
    started = time.perf_counter()
    study = optuna.load_study(study_name=plan.study_name, storage=storage) if _exists(storage, plan) else None
    seen = {t.number for t in study.get_trials(deepcopy=False)} if study else set()
    ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    job = pool.run_studies(plan, data)
    try:
        while True:
            job.renew()
            pool.wait(job, 0.5)
            if study is None and _exists(storage, plan):
                study = optuna.load_study(study_name=plan.study_name, storage=storage)
            for trial in study.get_trials(deepcopy=False, states=ended) if study else []:
                if trial.number not in seen:
                    seen.add(trial.number)
                    progress(study, trial)
            if not job.alive():
                break
    except (KeyboardInterrupt, SystemExit):
        job.stop()
        raise
    finally:
        pool.close()
    if job.error:
        raise PoolError(f"the study stopped with an error: {job.error}")
    summary = job.summaries[-1]
    summary.seconds = time.perf_counter() - started
    return summary


def _exists(storage, plan: StudyPlan) -> bool:
    try:
        storage.get_study_id_from_name(plan.study_name)
    except KeyError:
        return False
    return True


def _race(args: argparse.Namespace) -> int:
    import time

    from .pool import open_pool
    from .race import RacePlan, prepare_race, race_progress, start_race
    from .race_analysis import analyze_race, table_rows

    config = settings(args.data, args.storage)
    data = load_dataset(config.data_path)  # a bad data set is one error line here, not one per worker
    plan = RacePlan(
        name=args.name,
        strategies=tuple(args.strategies),
        pruning=tuple(p == "on" for p in args.pruning),
        seeds=args.seeds,
        trials=args.trials,
        epochs=args.epochs,
        reduced=args.reduced,
        grid_points=args.grid_points,
    )
    storage = open_storage(config.storage_url)
    started = time.perf_counter()
    workers, slots = [], 0
    if prepare_race(plan, config.storage_url, storage):  # a finished race is read, not run: no pool needed
        pool = open_pool(args.scheduler, args.workers, interactive=0)  # no Part I runs here to reserve a worker for
        slots = pool.slots()
        try:
            workers = start_race(plan, config.storage_url, data, storage, pool)
        except BaseException:
            pool.close()
            raise
    reported = -1
    try:
        while any(w.alive() for w in workers):
            for w in workers:
                w.renew()
            pool.wait(workers[0], 0.5)
            progress = race_progress(plan, storage)
            if not args.json and progress.finished_trials != reported:
                reported = progress.finished_trials
                print(
                    f"race '{plan.name}': {progress.finished_trials}/{progress.target_trials} trials, "
                    f"{progress.epochs_spent:,}/{progress.estimated_epochs:,} epochs, "
                    f"{time.perf_counter() - started:.0f}s",
                    flush=True,
                )
    except (KeyboardInterrupt, SystemExit):
        for w in workers:
            w.stop()
        print(f"stopped; run the same command again to resume race '{plan.name}'", file=sys.stderr)
        return 130
    finally:
        if workers:
            workers[0].pool.close()
    seconds = time.perf_counter() - started
    errors = [w.error for w in workers if w.error]
    if errors:
        print(f"error: a race worker failed: {errors[0]}", file=sys.stderr)
        return 1
    analysis = analyze_race(plan, storage, target=args.target)
    rows = table_rows(analysis)
    if args.json:
        _print_json(
            {
                "race": plan.to_dict(),
                "seconds": seconds,
                "target": analysis.target,
                "table": rows,
                "runs": analysis.runs.to_dict(orient="records"),
                "summary": analysis.text,
            }
        )
        return 0
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(row[c])) for row in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths)))
    print("\n".join(analysis.text))
    print(f"{seconds:.1f}s on {slots} pool worker(s)" if workers else "already complete: read from the storage")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import lesson_report, study_report

    storage = open_storage(settings(storage_url=args.storage).storage_url)
    page = lesson_report(storage, args.lesson) if args.lesson else study_report(storage, args.study_name)
    try:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(page)
    except OSError as err:
        raise ConfigError(f"cannot write --out {args.out}: {err.strerror or err}") from None
    print(f"report written to {args.out} ({len(page.encode()) / 1e6:.1f} MB)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    path = fetch_dataset(settings(args.data).data_path)
    print(f"data set ready at {path}")
    return 0


def _terminate(signum, _frame) -> None:
    # SIGTERM (Stop button, `kill`) unwinds like Ctrl-C, so the running trial is told FAIL first.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        commands = {"train": _train, "study": _study, "race": _race, "report": _report, "fetch-data": _fetch}
        code = commands[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe raises here, not at exit
        return code
    except BrokenPipeError:  # the reader left early (`... | head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (DatasetError, ConfigError, StorageError, PoolError) as err:
        print(f"error: {clip(err, 300)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the last resort: one line, never a traceback
        print(f"error: {type(err).__name__}: {clip(err, 300)}", file=sys.stderr)
        return 2
