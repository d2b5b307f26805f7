"""Table files shared by ``assay synth`` and the REST releases: CSV cells stay strings, writes
are atomic, Parquet without pyarrow is a typed error that leaves nothing behind."""

from __future__ import annotations

import importlib.util
import io

import pytest

from assay.generative.tabular.io import is_parquet, read_table, write_table
from assay.platform.errors import UnsupportedError

pytest.importorskip("pandas")


def test_csv_cells_are_read_as_strings_and_nothing_becomes_na(tmp_path) -> None:
    text = "arm,clicks,note\nA,007,NA\nB,,\n"
    for source in (io.StringIO(text), io.BytesIO(text.encode())):
        df = read_table(source, parquet=False)
        assert df.to_dict("records") == [
            {"arm": "A", "clicks": "007", "note": "NA"},
            {"arm": "B", "clicks": "", "note": ""},
        ]
    path = tmp_path / "t.csv"
    path.write_text(text)
    assert read_table(str(path)).equals(read_table(path, parquet=False))


def test_write_table_round_trips_and_leaves_no_temporary_file(tmp_path) -> None:
    target = tmp_path / "deep" / "out.csv"
    rows = [{"b": 2, "a": "x"}, {"a": "y", "b": 3}]
    write_table(rows, ["a", "b"], target)
    assert read_table(target).to_dict("records") == [{"a": "x", "b": "2"}, {"a": "y", "b": "3"}]
    write_table(rows[:1], ["a", "b"], str(target))  # overwrite in place
    assert len(read_table(target)) == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.csv"]


def test_parquet_is_chosen_by_suffix() -> None:
    assert is_parquet("x.parquet") and is_parquet("X.PQ") and not is_parquet("x.csv")


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow installed")
def test_parquet_without_pyarrow_is_unsupported_and_writes_nothing(tmp_path) -> None:
    with pytest.raises(UnsupportedError, match="pyarrow"):
        write_table([{"a": 1}], ["a"], tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UnsupportedError, match="pyarrow"):
        read_table(io.BytesIO(b"PAR1"), parquet=True)
