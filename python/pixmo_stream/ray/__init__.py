"""Ray Data integration (``pip install 'pixmo-stream[ray]'``); see docs/RAY.md.

    import ray
    from pixmo_stream.ray import read_pixmo, write_pixmo

    ds = read_pixmo("data/", columns=["image_url", "captions"])   # a ray.data.Dataset
    write_pixmo(ds.filter(lambda r: len(r["captions"]) > 1), "filtered/")

`import pixmo_stream` never imports Ray; importing this package does.
"""

from __future__ import annotations

try:
    import ray.data  # noqa: F401
except ModuleNotFoundError as e:  # pragma: no cover - depends on the install
    if not (e.name or "").startswith("ray"):
        raise
    raise ModuleNotFoundError(
        "pixmo_stream.ray needs Ray Data, which is not installed: pip install 'pixmo-stream[ray]'",
        name=e.name,
    ) from e

from .arrow import arrow_schema, schema_of_arrow
from .errors import RayWriteError
from .sink import PixmoDatasink, write_pixmo
from .source import PixmoDatasource, read_pixmo

__all__ = [
    "PixmoDatasink",
    "PixmoDatasource",
    "RayWriteError",
    "arrow_schema",
    "read_pixmo",
    "schema_of_arrow",
    "write_pixmo",
]
