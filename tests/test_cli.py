"""`python -m fetal_core` as instructors and scripts run it: JSON output, one-line errors, environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from fetal_core.data import LABEL

ROOT = Path(__file__).resolve().parent.parent
NULL_ACCURACY = 100 * 1655 / 2126
FLAGS = (
    "--layers 32 16 8 --batch-size 32 --optimizer SGD --lr 0.01 --weight-decay 0 --no-scheduler --epochs 3 --seed 5 "
    "--standardize --json"
)


def run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the CLI from the project root with the venv's Python, without the caller's FETAL_HPO_* settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FETAL_HPO_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fetal_core", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def strict_json(text: str) -> dict:
    """Exactly one JSON object, with no NaN/Infinity (which other JSON readers reject)."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text[:500]

    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(lines[0], parse_constant=refuse)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory, data_path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    table = pd.read_csv(data_path)
    # A valid but different data set: 100 normal, 50 suspect, 50 pathological rows -> null accuracy 50 %.
    subset = pd.concat([table[table[LABEL] == 1.0].head(100), table[table[LABEL] != 1.0].groupby(LABEL).head(50)])
    bad_value = table.astype({"uterine_contractions": object})
    bad_value.loc[41, "uterine_contractions"] = "n/a"
    contents = {
        "subset.csv": subset.to_csv(index=False).encode(),
        "image.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40),
        "bad_value.csv": bad_value.to_csv(index=False).encode(),
    }
    paths = {name: folder / name for name in contents}
    for name, raw in contents.items():
        paths[name].write_bytes(raw)
    paths["missing"] = folder / "not_there" / "fetal_health.csv"
    paths["real"] = data_path
    return paths


def cases(files) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Every CLI run of this module: (arguments, environment). Few: each one pays ~1.5 s of imports."""
    short = ["--epochs", "1", "--json"]
    subset = {"FETAL_HPO_DATA": str(files["subset.csv"])}
    return {
        "defaults": (["train", "--json"], {}),
        "env data": (["train", *short], subset),
        "flags beat env": (["train", "--data", str(files["real"]), *FLAGS.split()], subset),
        "table": (["train", "--epochs", "2"], {}),
        "lr abc": (["train", "--lr", "abc"], {}),
        "layers 0": (["train", "--layers", "15", "0"], {}),
        "optimizer": (["train", "--optimizer", "Adagrad"], {}),
        "data missing": (["train", "--data", str(files["missing"]), *short], {}),
        "data png": (["train", "--data", str(files["image.png"]), *short], {}),
        "data bad value": (["train", "--data", str(files["bad_value.csv"]), *short], {}),
    }


@pytest.fixture(scope="module")
def runs(files) -> dict[str, subprocess.CompletedProcess]:
    """All runs at once, a few in parallel (each one mostly pays the interpreter's import time)."""
    todo = cases(files)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda case: run_cli(*case), todo.values())
        return dict(zip(todo, results))


def test_train_json_with_the_notebooks_defaults(runs):
    result = runs["defaults"]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = strict_json(result.stdout)
    assert {"config", "history", "final_val_accuracy", "null_accuracy", "seconds"} <= set(out)
    assert out["config"] == {
        "hidden_layers": [15, 10],
        "batch_size": 100,
        "optimizer": "Adam",
        "learning_rate": 1.0,
        "weight_decay": 1.0,
        "scheduler": True,
        "epochs": 50,
        "seed": 42,
        "standardize": False,
    }
    history = out["history"]
    assert [epoch["epoch"] for epoch in history] == list(range(1, 51))
    for epoch in history:
        assert {"train_loss", "val_loss", "val_accuracy", "balanced_accuracy", "seconds"} <= set(epoch)
        assert 0 <= epoch["val_accuracy"] <= 100
    assert out["final_val_accuracy"] == history[-1]["val_accuracy"]
    assert out["null_accuracy"] == pytest.approx(NULL_ACCURACY)
    assert abs(out["final_val_accuracy"] - out["null_accuracy"]) <= 2.0  # <= 1.02 on every CPU (test_training)
    assert isinstance(out["seconds"], float) and 0 < out["seconds"] < 60
    assert sum(map(sum, out["confusion_matrix"])) == 426


def test_train_flags_reach_the_config(runs):
    result = runs["flags beat env"]
    assert result.returncode == 0, result.stderr
    out = strict_json(result.stdout)
    assert out["config"] == {
        "hidden_layers": [32, 16, 8],
        "batch_size": 32,
        "optimizer": "SGD",
        "learning_rate": 0.01,
        "weight_decay": 0.0,
        "scheduler": False,
        "epochs": 3,
        "seed": 5,
        "standardize": True,
    }
    assert len(out["history"]) == 3


def test_train_without_json_prints_the_curve(runs):
    result = runs["table"]
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [["epoch", "1"], ["epoch", "2"]]
    assert all("val acc" in line for line in lines[:2])
    assert len(lines) == 3 and lines[2].startswith("final validation accuracy")
    assert "(null accuracy 77.85%)" in lines[2]


def test_fetal_hpo_data_is_honoured_and_data_flag_overrides_it(runs):
    from_env = runs["env data"]
    assert from_env.returncode == 0, from_env.stderr
    assert strict_json(from_env.stdout)["null_accuracy"] == pytest.approx(50.0)

    overridden = runs["flags beat env"]  # same environment, plus --data
    assert overridden.returncode == 0, overridden.stderr
    assert strict_json(overridden.stdout)["null_accuracy"] == pytest.approx(NULL_ACCURACY)


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("lr abc", ["--lr", "'abc' is not a number"]),
        ("layers 0", ["--layers", "0 must be at least 1"]),
        ("optimizer", ["--optimizer", "'Adagrad'", "'SGD', 'Adam', 'RMSprop'"]),
    ],
)
def test_bad_arguments_end_with_one_line_and_no_traceback(runs, case, fragments):
    assert_one_line_error(runs[case], *fragments)


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("data missing", ["No data file", "not_there"]),
        ("data png", ["'image.png' is not a CSV file"]),
        ("data bad value", ["column 'uterine_contractions', row 43: 'n/a' is not a number"]),
    ],
)
def test_bad_data_ends_with_one_line_and_no_traceback(runs, case, fragments):
    line = assert_one_line_error(runs[case], *fragments)
    assert runs[case].returncode == 1
    assert line.startswith("error: ")


def test_a_reader_that_leaves_early_gets_no_traceback():
    # `python -m fetal_core train --json | head -c 20`: the pipe closes before the CLI writes.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FETAL_HPO_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "fetal_core", "train", "--epochs", "2", "--json"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=180) == 1  # the broken pipe was met, and answered with a plain exit code
    assert stderr == ""
