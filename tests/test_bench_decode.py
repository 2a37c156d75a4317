"""The decoded-streaming benchmark's peer does the work pixmo-stream does: its Python Molmo
preprocessing (PIL, torch resize, numpy crops, as Molmo's loader) gives the crops of
`pixmo_stream.image.molmo_preprocess`, so the benchmark compares equal work."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benches/ is a folder of the repository, not of the package

from benches.decode_stream import molmo_in_python  # noqa: E402
from PIL import Image  # noqa: E402

from pixmo_stream import image  # noqa: E402


@pytest.mark.parametrize("shape", [(480, 640), (300, 2000), (50, 50)])
def test_the_python_molmo_peer_makes_the_same_crops(shape):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    px = np.stack([xx * 255 // shape[1], yy * 255 // shape[0], (xx + yy) % 256], -1)
    buf = io.BytesIO()
    Image.fromarray(px.astype(np.uint8)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    ours = image.molmo_preprocess(data).crops
    peer = molmo_in_python(data)
    n = peer.shape[0]
    assert ours.shape == (n, 576, 588)
    patches = peer.reshape(n, 24, 14, 24, 14, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, 576, 588)
    # JPEG decoders (libjpeg-turbo in PIL, zune-jpeg here) differ by a level or two.
    diff = np.abs(patches - ours)
    assert diff.mean() < 0.01 and np.quantile(diff, 0.99) < 0.05, (diff.mean(), diff.max())
