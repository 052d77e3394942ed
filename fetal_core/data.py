"""The fetal health data: load, validate at the boundary, split like the notebook, fetch at set-up.

Every problem with an input file raises one ``DatasetError`` whose message (one line) names the column,
row or value, in words a student can act on. Rows are numbered as a spreadsheet shows them: the header
is line 1, so the first data row is line 2. Input is read within bounds: only a regular file, at most
``MAX_FILE_BYTES``, ``MAX_COLUMNS`` columns (counted on the header before the table is parsed), ``MAX_ROWS``
rows and ``MAX_CELL_CHARS`` per cell, every check in linear time, and a message quotes at most ``QUOTE_CHARS``
of any name or value.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import KAGGLE_DATASET, SHARED_DATA_PATH, settings

LABEL = "fetal_health"
FEATURES = (
    "baseline value", "accelerations", "fetal_movement", "uterine_contractions",
    "light_decelerations", "severe_decelerations", "prolongued_decelerations",
    "abnormal_short_term_variability", "mean_value_of_short_term_variability",
    "percentage_of_time_with_abnormal_long_term_variability", "mean_value_of_long_term_variability",
    "histogram_width", "histogram_min", "histogram_max", "histogram_number_of_peaks",
    "histogram_number_of_zeroes", "histogram_mode", "histogram_mean", "histogram_median",
    "histogram_variance", "histogram_tendency",
)  # fmt: skip
CLASS_NAMES = ("normal", "suspect", "pathological")  # labels 1, 2, 3 -> encoded 0, 1, 2
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_COLUMNS = 200  # the real data set has 22
MAX_ROWS = 100_000  # the real data set has 2,126
MAX_CELL_CHARS = 100  # a number in this file has at most ~20 characters
QUOTE_CHARS = 80  # of a name or value quoted in a message
MIN_ROWS_PER_CLASS = 5  # so the 20 % validation part still holds at least one row of each class
SPLIT_SEED = 42
VALIDATION_FRACTION = 0.2


class DatasetError(ValueError):
    """A data file that cannot be used, with a message saying what to fix."""


@dataclass(frozen=True)
class Dataset:
    """The validated table: float features, labels encoded 0..2 (the notebook's OrdinalEncoder)."""

    features: np.ndarray  # (rows, 21) float64
    labels: np.ndarray  # (rows,) int64 in {0, 1, 2}
    source: str

    @property
    def rows(self) -> int:
        return len(self.labels)

    @property
    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(CLASS_NAMES))
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts)}

    @property
    def null_accuracy(self) -> float:
        """Accuracy (%) of always predicting the most common class."""
        return 100.0 * max(self.class_counts.values()) / self.rows


@dataclass(frozen=True)
class Split:
    """The notebook's 80/20 stratified split (random_state 42) as whole float32 / int64 arrays."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    train_index: np.ndarray  # row positions in the file, in the notebook's order
    val_index: np.ndarray
    standardized: bool
    null_accuracy: float  # of the whole data set, as the notebook computes it

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]


def _line(row_position: int) -> int:
    return row_position + 2


def _quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``value`` as one line of at most ``limit`` characters, for a message (a file must not fill the page)."""
    text = " ".join(str(value).splitlines())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _names(names: list[str], shown: int = 5) -> str:
    quoted = ", ".join(f"'{_quote(n)}'" if n.strip() else "(a column without a name)" for n in names[:shown])
    return quoted + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def _read_file(path: Path, name: str) -> bytes:
    """The bytes of ``path`` if it is a regular file within ``MAX_FILE_BYTES`` (a pipe is never waited on)."""
    where = _quote(path, 240)  # a path is the server's setting, not a student's value: quoted more fully
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise DatasetError(f"No data file at '{where}'. Put fetal_health.csv there or upload it.") from None
    except PermissionError:
        raise DatasetError(f"'{where}' cannot be read: the app's user has no permission to read it.") from None
    except OSError as err:
        raise DatasetError(f"'{where}' cannot be opened: {err.strerror or type(err).__name__}.") from None
    try:
        info = os.fstat(handle)
        if stat.S_ISDIR(info.st_mode):
            raise DatasetError(f"'{where}' is a folder, not a CSV file.")
        if not stat.S_ISREG(info.st_mode):
            raise DatasetError(f"'{where}' is not a regular file (a device, pipe or socket?); it must be a CSV file.")
        if info.st_size > MAX_FILE_BYTES:
            raise DatasetError(
                f"'{name}' is {info.st_size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB "
                "(the real data set is about 0.2 MB)."
            )
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:  # at most one byte past the limit, even if the file grows meanwhile
            chunk = os.read(handle, min(2**20, MAX_FILE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise DatasetError(f"'{where}' cannot be read: {err.strerror or type(err).__name__}.") from None
    finally:
        os.close(handle)
    return b"".join(chunks)


def _header(text: str, name: str) -> list[str]:
    """The header's names, read as one CSV record without parsing the rest (blank lines before it are skipped,
    as pandas skips them); more than ``MAX_COLUMNS`` names are refused here, in time linear in the header."""
    try:
        for row in csv.reader(io.StringIO(text, newline="")):
            if len(row) > 1 or (row and row[0].strip()):
                break
        else:
            return []
    except csv.Error as err:
        raise DatasetError(
            f"'{name}' is not a valid CSV file: its header cannot be read ({_quote(err, 160)})."
        ) from None
    if len(row) > MAX_COLUMNS:
        raise DatasetError(
            f"'{name}' has {len(row):,} columns; the limit is {MAX_COLUMNS} (the fetal health data set has "
            f"{len(FEATURES) + 1})."
        )
    return row


def _read_table(source: str | os.PathLike | bytes, name: str) -> pd.DataFrame:
    raw = source if isinstance(source, bytes) else _read_file(Path(source), name)
    if len(raw) > MAX_FILE_BYTES:
        raise DatasetError(f"'{name}' is {len(raw) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB.")
    if not raw.strip():
        raise DatasetError(f"'{name}' is empty: it has no header and no rows.")
    if b"\x00" in raw[:8192]:
        raise DatasetError(f"'{name}' is not a CSV file: it looks like a binary file (a spreadsheet or an image?).")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DatasetError(f"'{name}' is not a CSV text file: byte {err.start} is not valid UTF-8 text.") from None
    _check_columns(_header(text, name), name)  # before the table is parsed: a wrong header costs no parsing
    try:
        # Only an empty cell is missing: a cell reading "n/a", "NA" or "null" is reported with its text.
        # One row past the limit is enough to refuse a file: the rest is never parsed.
        table = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""], nrows=MAX_ROWS + 1)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"'{name}' is empty: it has no header and no rows.") from None
    except (pd.errors.ParserError, ValueError) as err:
        raise DatasetError(f"'{name}' is not a valid CSV file: {_quote(str(err).strip(), 160)}") from None
    return table


def _check_size(table: pd.DataFrame, name: str) -> None:
    """Rows and cell lengths within bounds (the data set's cells are short numbers; it has ~2,000 rows)."""
    if len(table) > MAX_ROWS:  # read_csv stops one row past the limit
        raise DatasetError(
            f"'{name}' has more than {MAX_ROWS:,} rows; the limit is {MAX_ROWS:,} (the real data set: 2,126)."
        )
    for column in table.columns:
        values = table[column]
        if values.dtype.kind in "biuf":  # parsed as numbers: short by construction
            continue
        lengths = values.astype(object).map(lambda v: len(v) if isinstance(v, str) else 0).to_numpy()
        over = np.flatnonzero(lengths > MAX_CELL_CHARS)
        if len(over):
            i = int(over[0])
            raise DatasetError(
                f"'{name}': column '{_quote(column)}', row {_line(i)} holds {lengths[i]:,} characters "
                f"('{_quote(values.iloc[i])}'); a value may have at most {MAX_CELL_CHARS}."
            )


def _check_columns(columns: list[str], name: str) -> None:
    """The header's names (as written: pandas would rename a repeated name) against the expected ones, in
    time linear in the number of columns."""
    if not columns:
        raise DatasetError(f"'{name}' is empty: it has no header and no rows.")
    expected = (*FEATURES, LABEL)
    present, wanted = set(columns), set(expected)
    missing = [c for c in expected if c not in present]
    extra = list(dict.fromkeys(c for c in columns if c not in wanted))
    duplicated = sorted(c for c, count in Counter(columns).items() if count > 1)
    if len(columns) == 1 and len(missing) > 1:
        raise DatasetError(
            f"'{name}' is not a comma-separated file with the fetal health columns "
            f"(its header is a single column '{_quote(columns[0], 60)}')."
        )
    problems = []
    if missing:
        problems.append("missing column(s): " + _names(missing))
    if extra:
        problems.append("unexpected column(s): " + _names(extra))
    if duplicated:
        problems.append("repeated column(s): " + _names(duplicated))
    if problems:
        raise DatasetError(f"'{name}' does not have the fetal health columns: " + "; ".join(problems) + ".")


def _check_values(table: pd.DataFrame, name: str) -> np.ndarray:
    if len(table) == 0:
        raise DatasetError(f"'{name}' has a header but no data rows.")
    values = np.empty((len(table), len(FEATURES) + 1), dtype=np.float64)
    for j, column in enumerate((*FEATURES, LABEL)):
        raw = table[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() & raw.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"'{name}': column '{column}', row {_line(i)}: '{_quote(raw.iloc[i])}' is not a number.")
        column_values = numbers.to_numpy(dtype=np.float64)
        not_finite = ~np.isfinite(column_values)
        if not_finite.any():
            i = int(np.flatnonzero(not_finite)[0])
            what = "is empty (NaN)" if np.isnan(column_values[i]) else f"is {column_values[i]} (infinite)"
            raise DatasetError(f"'{name}': column '{column}', row {_line(i)} {what}; every value must be a number.")
        values[:, j] = column_values
    return values


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    outside = ~np.isin(labels, (1.0, 2.0, 3.0))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DatasetError(
            f"'{name}': column '{LABEL}', row {_line(i)} is {labels[i]:g}; labels must be 1 (normal), "
            "2 (suspect) or 3 (pathological)."
        )
    encoded = labels.astype(np.int64) - 1
    counts = np.bincount(encoded, minlength=3)
    for label, (class_name, count) in enumerate(zip(CLASS_NAMES, counts), start=1):
        if count < MIN_ROWS_PER_CLASS:
            raise DatasetError(
                f"'{name}': class {label} ({class_name}) has {count} row(s); a stratified 80/20 split needs "
                f"at least {MIN_ROWS_PER_CLASS} rows of every class."
            )
    return encoded


def load_dataset(source: str | os.PathLike | bytes | None = None, name: str | None = None) -> Dataset:
    """Read and validate the CSV (a path, raw bytes of an upload, or the configured default path).

    Raises ``DatasetError`` naming the file, column, row or value for anything unusable.
    """
    if source is None:
        source = settings().data_path
    if name is None:
        name = "uploaded file" if isinstance(source, bytes) else Path(source).name
    name = _quote(name)
    table = _read_table(source, name)  # checks the header's columns first
    _check_size(table, name)
    values = _check_values(table, name)
    labels = _check_labels(values[:, -1], name)
    return Dataset(features=values[:, :-1], labels=labels, source=name)


def split_dataset(data: Dataset, standardize: bool = False) -> Split:
    """80/20 stratified split with random_state 42: the same rows as the notebook's split.

    With ``standardize`` the features are scaled by the training part's mean and std only, so nothing
    about the validation rows leaks into training.
    """
    from sklearn.model_selection import train_test_split  # here: scikit-learn costs ~1 s to import

    positions = np.arange(data.rows)
    train_index, val_index = train_test_split(
        positions, test_size=VALIDATION_FRACTION, random_state=SPLIT_SEED, stratify=data.labels
    )
    x_train, x_val = data.features[train_index], data.features[val_index]
    if standardize:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    return Split(
        x_train=np.ascontiguousarray(x_train, dtype=np.float32),
        y_train=data.labels[train_index],
        x_val=np.ascontiguousarray(x_val, dtype=np.float32),
        y_val=data.labels[val_index],
        train_index=train_index,
        val_index=val_index,
        standardized=standardize,
        null_accuracy=data.null_accuracy,
    )


def fetch_dataset(destination: str | os.PathLike | None = None) -> Path:
    """Put the data set at ``destination``: keep a valid file, else copy ``../shared``, else Kaggle.

    Raises ``DatasetError`` when no source works (the app then offers an upload).
    """
    path = Path(destination or settings().data_path)
    if path.exists():
        load_dataset(path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if SHARED_DATA_PATH.exists():
        shutil.copyfile(SHARED_DATA_PATH, path)
    else:
        try:
            import kagglehub

            folder = Path(kagglehub.dataset_download(KAGGLE_DATASET))
            shutil.copyfile(folder / "fetal_health.csv", path)
        except Exception as err:  # any network/auth failure: the user can still upload the file
            raise DatasetError(
                f"Could not get the data set: no '{SHARED_DATA_PATH}' and the Kaggle download of "
                f"'{KAGGLE_DATASET}' failed ({type(err).__name__}). Upload fetal_health.csv in the app, "
                f"or copy it to '{path}'."
            ) from None
    load_dataset(path)
    return path
