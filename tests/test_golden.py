"""The checked-in files of each released format version must keep reading the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import pixmo_stream as ps

GOLDEN = Path(__file__).parent / "golden"
VERSIONS = sorted(p.name for p in GOLDEN.iterdir() if (p / "manifest.json").exists())


def from_jsonable(v):
    if isinstance(v, dict) and set(v) == {"bytes"}:
        return bytes.fromhex(v["bytes"])
    if isinstance(v, dict) and set(v) == {"ndarray", "dtype", "shape"}:
        return np.array(v["ndarray"], dtype=v["dtype"]).reshape(v["shape"])
    if isinstance(v, dict):
        return {k: from_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_jsonable(x) for x in v]
    return v


def test_there_is_a_golden_file_of_the_current_version():
    assert f"v{ps.FORMAT_VERSION[0]}.{ps.FORMAT_VERSION[1]}" in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_reads_back_exactly(version):
    from test_core import assert_same

    expected = from_jsonable(json.loads((GOLDEN / version / "expected.json").read_text()))
    ds = ps.Dataset(GOLDEN / version)
    assert len(ds) == len(expected)
    for i, rec in enumerate(ds):
        assert_same(rec, expected[i], f"{version} row {i}")
    assert ds.verify().ok
