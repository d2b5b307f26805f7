"""Row <-> token codec: exact round trips, clipping/UNK, and errors that name the column."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from assay.generative.tabular.data import AB_LOGS_SCHEMA, ab_logs
from assay.generative.tabular.schema import (
    BOS,
    EOS,
    UNK,
    NumericColumn,
    RowCodec,
    TableSchema,
)
from assay.platform.errors import ValidationError

SMALL = {
    "columns": [
        {"name": "arm", "type": "categorical", "values": ["control", "treatment"]},
        {"name": "clicks", "type": "numeric", "lower": 0, "upper": 9, "bins": 10, "integer": True},
        {"name": "country", "type": "categorical", "values": ["US", "DE"]},
    ]
}


def test_exact_columns_round_trip_rows_exactly():
    codec = RowCodec(TableSchema.from_dict(SMALL))
    rows = [
        {"arm": "treatment", "clicks": 0, "country": "DE"},
        {"arm": "control", "clicks": 9, "country": "US"},
        {"arm": "control", "clicks": 4, "country": "US"},
    ]
    tokens = codec.encode(rows)
    assert tokens.shape == (3, codec.seq_len) == (3, 8)
    assert codec.decode(tokens) == rows
    assert (tokens[:, 0] == BOS).all() and (tokens[:, -1] == EOS).all()
    # each value token lies in its own column's range
    for j, pos in enumerate(codec.value_positions):
        lo = codec.offsets[j]
        assert ((tokens[:, pos] >= lo) & (tokens[:, pos] < lo + codec.sizes[j])).all()


def test_binned_rows_round_trip_to_their_canonical_form_and_tokens_are_stable():
    schema, table = ab_logs(500, seed=3)
    codec = RowCodec(schema)
    tokens = codec.encode(table)
    canon = codec.canonical(table)
    assert codec.decode(tokens) == canon
    assert torch.equal(codec.encode(canon), tokens)
    # the exact columns keep their values
    for name in ("segment", "device", "country", "arm"):
        assert [r[name] for r in canon] == list(table[name])
    # a uniform draw inside each bin re-encodes to the same tokens
    rows = codec.decode(tokens, np.random.default_rng(0))
    assert torch.equal(codec.encode(rows), tokens)


def test_every_valid_code_array_survives_tokens_and_back():
    codec = RowCodec(TableSchema.from_dict(AB_LOGS_SCHEMA))
    rng = np.random.default_rng(1)
    codes = np.stack([rng.integers(0, s, 200) for s in codec.sizes], axis=1)
    tokens = codec.codes_to_tokens(codes)
    assert np.array_equal(codec.tokens_to_codes(tokens), codes)
    assert torch.equal(codec.encode(codec.decode(tokens)), tokens)


def test_out_of_range_numbers_clip_and_undeclared_categories_become_unk():
    codec = RowCodec(TableSchema.from_dict(SMALL))
    rows = codec.decode(codec.encode([{"arm": "holdout", "clicks": 250, "country": "US"}]))
    assert rows == [{"arm": UNK, "clicks": 9, "country": "US"}]
    strict = TableSchema.from_dict(
        {"columns": [{"name": "arm", "type": "categorical", "values": ["a"], "unk": False}]}
    )
    with pytest.raises(ValidationError, match="'arm'") as e:
        RowCodec(strict).encode([{"arm": "b"}])
    assert e.value.field == "columns.arm"


def test_integer_log_bins_never_hold_zero_integers():
    col = NumericColumn("revenue", 0, 1000, bins=16, scale="log", integer=True)
    x = np.arange(0, 1001)
    codes = col.encode(x)
    assert set(np.unique(codes)) == set(range(col.size))  # every bin is reachable
    assert np.array_equal(col.encode(col.decode(codes)), codes)


def test_invalid_token_sequences_are_rejected():
    codec = RowCodec(TableSchema.from_dict(SMALL))
    tokens = codec.encode([{"arm": "control", "clicks": 1, "country": "US"}])
    bad = tokens.clone()
    bad[0, 2] = codec.offsets[1]  # a clicks token where the arm value belongs
    with pytest.raises(ValidationError, match="position 2"):
        codec.tokens_to_codes(bad)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "x", "type": "numeric", "lower": 1, "upper": 1}, "columns.x"),
        ({"name": "x", "type": "numeric", "lower": 0, "upper": 1, "scale": "cube"}, "columns.x"),
        ({"name": "x", "type": "numeric", "lower": "a", "upper": 1}, "columns.x"),
        ({"name": "x", "type": "numeric", "lower": 0, "upper": 1, "bin": 3}, "columns.x"),
        ({"name": "x", "type": "categorical", "values": ["a", "a"]}, "columns.x"),
        ({"name": "x", "type": "date"}, "columns[0].type"),
    ],
)
def test_schema_errors_name_the_column(spec, field):
    with pytest.raises(ValidationError) as e:
        TableSchema.from_dict({"columns": [spec]})
    assert e.value.field == field


def test_schema_json_round_trip_and_missing_columns():
    schema = TableSchema.from_dict(AB_LOGS_SCHEMA)
    assert TableSchema.from_dict(schema.to_dict()).to_dict() == schema.to_dict()
    with pytest.raises(ValidationError, match="'revenue'"):
        RowCodec(schema).encode({k: [1] for k in schema.names if k != "revenue"})
