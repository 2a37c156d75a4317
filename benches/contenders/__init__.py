"""The contenders, in table order: ours first, then the peers."""

from __future__ import annotations

from benches.contenders.base import Contender
from benches.contenders.hf import HFDatasetsContender
from benches.contenders.lit import LitDataContender
from benches.contenders.mds import MDSContender, MDSZstdContender
from benches.contenders.parquet import ParquetContender
from benches.contenders.pixmo import PixmoContender
from benches.contenders.wds import WebDatasetContender

ALL: list[Contender] = [
    PixmoContender(),
    WebDatasetContender(),
    MDSContender(),
    MDSZstdContender(),
    LitDataContender(),
    HFDatasetsContender(),
    ParquetContender(),
]
BY_NAME = {c.name: c for c in ALL}

__all__ = ["ALL", "BY_NAME", "Contender"]
