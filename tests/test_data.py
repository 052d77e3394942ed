"""fetal_core.data: every bad input raises one DatasetError naming what to fix; the split is the notebook's."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OrdinalEncoder

from fetal_core.data import (
    CLASS_NAMES,
    FEATURES,
    LABEL,
    MAX_COLUMNS,
    MAX_FILE_BYTES,
    MAX_ROWS,
    MIN_ROWS_PER_CLASS,
    Dataset,
    DatasetError,
    fetch_dataset,
    load_dataset,
    split_dataset,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00" + bytes(64)


@pytest.fixture(scope="module")
def table(data_path) -> pd.DataFrame:
    return pd.read_csv(data_path)


def csv_bytes(frame: pd.DataFrame, **kwargs) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode()


def dataset_error(source) -> str:
    with pytest.raises(DatasetError) as caught:
        load_dataset(source)
    return str(caught.value)


# --- the real file -----------------------------------------------------------------------------------


def test_real_file_class_counts_and_null_accuracy(dataset):
    assert dataset.rows == 2126
    assert dataset.features.shape == (2126, len(FEATURES)) == (2126, 21)
    assert dataset.class_counts == {"normal": 1655, "suspect": 295, "pathological": 176}
    assert dataset.null_accuracy == pytest.approx(100 * 1655 / 2126)
    assert round(dataset.null_accuracy, 2) == 77.85
    assert set(np.unique(dataset.labels)) == {0, 1, 2}


def test_bytes_input_equals_path_input(data_path, dataset):
    uploaded = load_dataset(data_path.read_bytes())
    assert uploaded.source == "uploaded file"
    assert dataset.source == "fetal_health.csv"
    np.testing.assert_array_equal(uploaded.features, dataset.features)
    np.testing.assert_array_equal(uploaded.labels, dataset.labels)


def test_utf8_bom_from_a_spreadsheet_export_is_accepted(data_path, dataset):
    uploaded = load_dataset(b"\xef\xbb\xbf" + data_path.read_bytes())
    np.testing.assert_array_equal(uploaded.features, dataset.features)


def test_default_path_comes_from_the_environment(monkeypatch, tmp_path, table):
    subset = pd.concat([table[table[LABEL] == label].head(20) for label in (1.0, 2.0, 3.0)])
    path = tmp_path / "subset.csv"
    path.write_bytes(csv_bytes(subset))
    monkeypatch.setenv("FETAL_HPO_DATA", str(path))
    data = load_dataset()
    assert data.rows == 60
    assert data.source == "subset.csv"


# --- every bad input ---------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "fetal_health.csv"
    message = dataset_error(path)
    assert str(path) in message
    assert "No data file" in message


def test_folder_instead_of_file(tmp_path):
    assert "folder" in dataset_error(tmp_path)


@pytest.mark.parametrize("content", [b"", b"   \n\n  \n"], ids=["zero-bytes", "whitespace"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    message = dataset_error(path)
    assert "'empty.csv' is empty" in message


def test_empty_upload():
    assert "is empty" in dataset_error(b"")


def test_header_without_rows():
    header = ",".join((*FEATURES, LABEL)).encode() + b"\n"
    assert "no data rows" in dataset_error(header)


def test_png_image_is_not_a_csv(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(PNG_BYTES)
    message = dataset_error(path)
    assert "'scan.png' is not a CSV file" in message
    assert "not a CSV" in dataset_error(PNG_BYTES)


def test_non_utf8_text_names_the_byte():
    message = dataset_error(b"baseline value,accelerations\n\xff\xfe,1\n")
    assert "not a CSV text file" in message
    assert "byte 29" in message


def test_semicolon_separated_file(table):
    message = dataset_error(csv_bytes(table, sep=";"))
    assert "not a comma-separated file" in message
    assert "baseline value;accelerations" in message


def test_missing_column_is_named(table):
    message = dataset_error(csv_bytes(table.drop(columns=["histogram_mode"])))
    assert "missing column(s): 'histogram_mode'" in message
    assert "unexpected" not in message


def test_missing_label_column_is_named(table):
    assert f"missing column(s): '{LABEL}'" in dataset_error(csv_bytes(table.drop(columns=[LABEL])))


def test_extra_column_is_named(table):
    frame = table.assign(patient_id=np.arange(len(table)))
    message = dataset_error(csv_bytes(frame))
    assert "unexpected column(s): 'patient_id'" in message
    assert "missing" not in message


def test_renamed_column_reports_both_sides(table):
    message = dataset_error(csv_bytes(table.rename(columns={"accelerations": "Accelerations"})))
    assert "missing column(s): 'accelerations'" in message
    assert "unexpected column(s): 'Accelerations'" in message


def test_non_numeric_value_names_column_row_and_value(table):
    frame = table.astype({"accelerations": object})
    frame.loc[6, "accelerations"] = "abc"  # 7th data row: line 8 in a spreadsheet (header is line 1)
    message = dataset_error(csv_bytes(frame))
    assert "column 'accelerations'" in message
    assert "row 8" in message
    assert "'abc' is not a number" in message


@pytest.mark.parametrize("text", ["n/a", "NA", "null", "NaN", "-"])
def test_missing_value_markers_are_reported_with_their_text(table, text):
    frame = table.astype({"histogram_mode": object})
    frame.loc[4, "histogram_mode"] = text
    assert f"column 'histogram_mode', row 6: '{text}' is not a number" in dataset_error(csv_bytes(frame))


def test_decimal_comma_value_is_reported(table):
    raw = csv_bytes(table).decode().splitlines()
    fields = raw[1].split(",")
    fields[0] = '"120,5"'  # a European spreadsheet's decimal comma, quoted
    raw[1] = ",".join(fields)
    message = dataset_error("\n".join(raw).encode())
    assert "column 'baseline value', row 2: '120,5' is not a number" in message


def test_nan_value_names_column_and_row(table):
    frame = table.copy()
    frame.loc[9, "histogram_width"] = np.nan
    message = dataset_error(csv_bytes(frame))
    assert "column 'histogram_width', row 11" in message
    assert "NaN" in message


def test_short_row_is_reported_as_an_empty_value(table):
    lines = csv_bytes(table).decode().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0]  # data row 3 (line 4) lost its label
    message = dataset_error("\n".join(lines).encode())
    assert f"column '{LABEL}', row 4" in message


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_value_names_column_row_and_value(table, value):
    frame = table.copy()
    frame.loc[11, "histogram_max"] = value
    message = dataset_error(csv_bytes(frame))
    assert "column 'histogram_max', row 13" in message
    assert f"is {value}" in message
    assert "infinite" in message


@pytest.mark.parametrize("label", [0.0, 4.0, 1.5, -1.0])
def test_label_outside_1_2_3_names_row_and_value(table, label):
    frame = table.copy()
    frame.loc[3, LABEL] = label
    message = dataset_error(csv_bytes(frame))
    assert f"column '{LABEL}', row 5 is {label:g}" in message
    assert "1 (normal), 2 (suspect) or 3 (pathological)" in message


def test_too_few_rows_of_a_class_to_stratify(table):
    few = MIN_ROWS_PER_CLASS - 1
    frame = pd.concat([table[table[LABEL] != 3.0], table[table[LABEL] == 3.0].head(few)])
    message = dataset_error(csv_bytes(frame))
    assert f"class 3 (pathological) has {few} row(s)" in message
    assert "stratified" in message


def test_the_smallest_accepted_file_splits_with_every_class_on_both_sides(table):
    frame = pd.concat([table[table[LABEL] == label].head(MIN_ROWS_PER_CLASS) for label in (1.0, 2.0, 3.0)])
    split = split_dataset(load_dataset(csv_bytes(frame)))
    assert set(split.y_train) == set(split.y_val) == {0, 1, 2}
    assert len(split.y_train) + len(split.y_val) == 3 * MIN_ROWS_PER_CLASS


def test_file_over_50_mb_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.csv"
    with open(path, "wb") as sparse:
        sparse.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk space, no time
    message = dataset_error(path)
    assert "'huge.csv' is 50 MB; the limit is 50 MB" in message


def test_upload_over_50_mb_is_refused():
    message = dataset_error(b"1" * (MAX_FILE_BYTES + 1))
    assert "the limit is 50 MB" in message


# --- hostile input: bounded reads, short one-line messages -------------------------------------------


def one_line_error(source, limit: int = 400, **kwargs) -> str:
    with pytest.raises(DatasetError) as caught:
        load_dataset(source, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and len(message) < limit, message[:1000]
    return message


def test_a_device_is_refused_without_reading_it():
    assert "'/dev/zero' is not a regular file" in one_line_error("/dev/zero")


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    """If the loader ever blocks on the pipe, the test opens it for writing so the thread ends (and fails)."""
    fifo = tmp_path / "fetal_health.csv"
    os.mkfifo(fifo)
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(one_line_error(fifo)), daemon=True)
    reader.start()
    reader.join(60)
    if reader.is_alive():
        os.close(os.open(fifo, os.O_WRONLY))  # unblocks the reader's open()
        reader.join(60)
        pytest.fail("load_dataset waited on a named pipe")
    assert found and "is not a regular file" in found[0]


def test_an_unreadable_file_is_one_clear_line(tmp_path, data_path, monkeypatch):
    path = tmp_path / "fetal_health.csv"
    path.write_bytes(data_path.read_bytes())
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file: let the open fail as it does for any other user
        real_open = os.open

        def refusing_open(file, flags, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    message = one_line_error(path)
    assert f"'{path}' cannot be read: the app's user has no permission to read it." == message


def test_a_huge_cell_is_refused_and_quoted_briefly(table):
    frame = table.head(30).astype(object)
    frame.iloc[7, 3] = "x" * 10_000_000  # a 10 MB cell
    message = one_line_error(csv_bytes(frame))
    assert f"column '{FEATURES[3]}', row 9 holds 10,000,000 characters ('{'x' * 79}…')" in message
    assert "at most 100" in message


def test_a_value_is_quoted_with_at_most_80_characters(table):
    frame = table.head(30).astype(object)
    frame.iloc[2, 0] = "ab" * 45
    assert f"row 4: '{'ab' * 39}a…' is not a number" in one_line_error(csv_bytes(frame))
    frame.iloc[2, 0] = "two\nlines"  # a quoted cell may hold a line break; the message stays one line
    assert "row 4: 'two lines' is not a number" in one_line_error(csv_bytes(frame))


def test_a_long_header_name_and_many_columns_are_reported_briefly(table):
    long_name = one_line_error(csv_bytes(table.head(30).rename(columns={"accelerations": "a" * 5000})))
    assert f"missing column(s): 'accelerations'; unexpected column(s): '{'a' * 79}…'." in long_name
    extra = pd.DataFrame(0, index=range(30), columns=[f"extra_{k}" for k in range(MAX_COLUMNS - 22)])
    many = one_line_error(csv_bytes(pd.concat([table.head(30), extra], axis=1)))
    assert "unexpected column(s): 'extra_0', 'extra_1', 'extra_2', 'extra_3', 'extra_4' and 173 more" in many


def test_a_wide_file_is_refused_from_its_header_before_the_table_is_parsed(table, monkeypatch):
    """60,000 columns (0.5 MB) once cost ~30 s of server CPU in a quadratic check of repeated names."""

    def no_parsing(*args, **kwargs):
        raise AssertionError("pandas.read_csv was called on a file whose header is over the limit")

    monkeypatch.setattr(pd, "read_csv", no_parsing)
    header = ",".join(["x"] * 60_000)
    wide = one_line_error(f"{header}\n{','.join(['1'] * 60_000)}\n".encode(), name="wide.csv")
    assert wide == f"'wide.csv' has 60,000 columns; the limit is {MAX_COLUMNS} (the fetal health data set has 22)."
    over = ",".join((*FEATURES, LABEL, *(f"extra_{k}" for k in range(MAX_COLUMNS - 21))))
    assert f"has {MAX_COLUMNS + 1} columns; the limit is {MAX_COLUMNS}" in one_line_error(f"\n\n{over}\n".encode())


def test_a_wrong_header_is_refused_before_the_table_is_parsed(table, monkeypatch):
    monkeypatch.setattr(pd, "read_csv", lambda *args, **kwargs: pytest.fail("read_csv was called"))
    assert "missing column(s): 'histogram_mode'" in one_line_error(
        csv_bytes(table.head(30).drop(columns=["histogram_mode"]))
    )


def test_a_repeated_column_name_is_named_once(table):
    names = [*FEATURES, LABEL, "accelerations", "accelerations", "patient_id", "patient_id", ""]
    rows = "\n".join(",".join(["1"] * len(names)) for _ in range(3))
    message = one_line_error((",".join(names) + "\n" + rows + "\n").encode())
    assert "unexpected column(s): 'patient_id', (a column without a name)" in message
    assert "repeated column(s): 'accelerations', 'patient_id'." in message


def test_a_long_file_name_is_quoted_briefly():
    assert "'" + "n" * 79 + "…' is empty" in one_line_error(b"", name="n" * 5000)


def test_more_rows_than_the_limit_are_refused(data_path):
    header, row = data_path.read_text().splitlines()[:2]
    raw = (header + "\n" + (row + "\n") * (MAX_ROWS + 1)).encode()
    assert "has more than 100,000 rows; the limit is 100,000" in one_line_error(raw)


def test_fetch_dataset_copies_the_shared_file_and_keeps_a_valid_one(tmp_path, data_path):
    destination = tmp_path / "data" / "fetal_health.csv"
    assert fetch_dataset(destination) == destination
    assert load_dataset(destination).rows == 2126
    before = destination.stat().st_mtime_ns
    fetch_dataset(destination)
    assert destination.stat().st_mtime_ns == before


def test_fetch_dataset_refuses_a_broken_file_in_place(tmp_path):
    destination = tmp_path / "fetal_health.csv"
    destination.write_bytes(PNG_BYTES)
    with pytest.raises(DatasetError, match="not a CSV"):
        fetch_dataset(destination)


# --- the split ---------------------------------------------------------------------------------------


def notebook_split(data_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The notebook's own steps: read, ordinal-encode the label, split the DataFrame."""
    data = pd.read_csv(data_path)
    encoder = OrdinalEncoder()
    encoder.fit(data[[LABEL]])
    data[[LABEL]] = encoder.transform(data[[LABEL]])
    return train_test_split(data, test_size=0.2, random_state=42, stratify=data.fetal_health)


def test_split_equals_the_notebooks(data_path, dataset):
    training, testing = notebook_split(data_path)
    split = split_dataset(dataset)
    np.testing.assert_array_equal(split.train_index, training.index.to_numpy())
    np.testing.assert_array_equal(split.val_index, testing.index.to_numpy())
    assert (len(split.y_train), len(split.y_val)) == (1700, 426)
    np.testing.assert_array_equal(split.y_train, training[LABEL].to_numpy().astype(np.int64))
    np.testing.assert_array_equal(split.y_val, testing[LABEL].to_numpy().astype(np.int64))
    features = list(FEATURES)
    np.testing.assert_array_equal(split.x_train, training[features].to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(split.x_val, testing[features].to_numpy(dtype=np.float32))
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert not split.standardized
    assert split.null_accuracy == pytest.approx(100 * 1655 / 2126)


def test_split_is_stratified(dataset):
    split = split_dataset(dataset)
    assert np.bincount(split.y_val).tolist() == [332, 59, 35]
    assert np.bincount(split.y_train).tolist() == [1323, 236, 141]
    assert not set(split.train_index) & set(split.val_index)


def test_standardisation_uses_training_statistics_only(dataset):
    raw = split_dataset(dataset)
    scaled = split_dataset(dataset, standardize=True)
    assert scaled.standardized
    np.testing.assert_array_equal(scaled.train_index, raw.train_index)
    mean = raw.x_train.astype(np.float64).mean(axis=0)
    std = raw.x_train.astype(np.float64).std(axis=0)
    assert (std > 0).all()
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(scaled.x_train.std(axis=0), 1, rtol=1e-4)
    np.testing.assert_allclose(scaled.x_val, (raw.x_val - mean) / std, rtol=1e-4, atol=1e-4)
    # Statistics of the whole table would scale the validation rows differently.
    whole = dataset.features
    assert not np.allclose(scaled.x_val, (raw.x_val - whole.mean(axis=0)) / whole.std(axis=0), atol=1e-3)


def test_changing_validation_rows_does_not_change_the_training_part(dataset):
    split = split_dataset(dataset)
    features = dataset.features.copy()
    features[split.val_index] *= 1000.0
    altered = split_dataset(Dataset(features=features, labels=dataset.labels, source="altered"), standardize=True)
    original = split_dataset(dataset, standardize=True)
    np.testing.assert_array_equal(altered.x_train, original.x_train)
    assert not np.allclose(altered.x_val, original.x_val)


def test_constant_column_standardises_without_dividing_by_zero(dataset):
    features = dataset.features.copy()
    features[:, 5] = 3.0
    split = split_dataset(Dataset(features=features, labels=dataset.labels, source="constant"), standardize=True)
    assert np.isfinite(split.x_train).all() and np.isfinite(split.x_val).all()
    assert (split.x_train[:, 5] == 0).all()


def test_labels_are_encoded_like_the_notebooks_ordinal_encoder():
    header = ",".join((*FEATURES, LABEL))
    rows = [",".join(["1"] * len(FEATURES) + [str(label)]) for label in [3] * 7 + [1] * 5 + [2] * 6]
    data = load_dataset("\n".join([header, *rows]).encode())
    assert CLASS_NAMES == ("normal", "suspect", "pathological")
    assert data.class_counts == {"normal": 5, "suspect": 6, "pathological": 7}
    assert data.labels.tolist() == [2] * 7 + [0] * 5 + [1] * 6
    assert data.labels.dtype == np.int64
