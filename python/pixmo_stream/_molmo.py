"""Molmo's multi-crop preprocessing (``overlap-and-resize-c2``), re-exported by
``pixmo_stream.image``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _native
from ._native import DEFAULT_MAX_PIXELS, ImageDecodeError

#: OpenAI CLIP's mean and std, as float32, with which Molmo normalises.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


class MolmoTokenIds(NamedTuple):
    """Ids written into ``MolmoImage.image_tokens``. The defaults are negative placeholders;
    give your tokenizer's ids of ``<im_start>``, ``<im_end>``, ``<im_patch>``, ``<im_col>``."""

    start: int = -2
    end: int = -3
    patch: int = -1
    col: int = -4


@dataclass(frozen=True)
class MolmoConfig:
    """Molmo's released settings by default: up to 12 crops of 336 px, 14 px patches,
    4+4-patch overlap margins, 2x2 pooling.

    ``exact=False`` decodes JPEGs at reduced scale and resizes with a SIMD uint8 kernel: the
    same shapes, tilings and indices, pixel values within a small tolerance of exact mode
    (see docs/IMAGES.md). ``normalize=False`` returns uint8 crops (0 where padded), to be
    normalised later (on the GPU) as ``(x / 255 - CLIP_MEAN) / CLIP_STD``.
    """

    max_crops: int = 12
    crop_size: int = 336
    patch_size: int = 14
    overlap_margins: tuple[int, int] = (4, 4)
    pooling: int = 2
    exact: bool = True
    normalize: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    token_ids: MolmoTokenIds = field(default_factory=MolmoTokenIds)

    def _native_args(self) -> tuple[Any, ...]:
        return astuple(self)[:8] + (tuple(self.token_ids),)


class Placement(NamedTuple):
    """Scaled content (``height`` x ``width``) at ``(top, left)`` on a zero-padded canvas."""

    height: int
    width: int
    top: int
    left: int
    canvas_height: int
    canvas_width: int

    def map_percent(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Points ``[..., 2]`` as ``(x, y)`` percent (0-100) of the original image, as pixel
        positions ``(x, y)`` on this canvas. Pixel ``i`` spans ``[i, i + 1)``, the convention of
        the resize, so the mapping is exact: 0% is the content's left/top edge and 100% its
        right/bottom edge."""
        p = np.asarray(points, dtype=np.float64)
        if p.shape[-1:] != (2,):
            raise ValueError(f"points must have shape [..., 2] (x, y), not {p.shape}")
        scale = np.array([self.width, self.height], dtype=np.float64) / 100.0
        return p * scale + np.array([self.left, self.top], dtype=np.float64)


@dataclass(frozen=True)
class MolmoGeometry:
    """Where an image of ``height`` x ``width`` (upright) goes under Molmo's preprocessing."""

    height: int
    width: int
    tiling: tuple[int, int]
    canvas: Placement
    global_view: Placement
    crop_size: int
    crop_stride: int

    @classmethod
    def _from_native(cls, d: dict[str, Any]) -> MolmoGeometry:
        return cls(
            height=d["height"],
            width=d["width"],
            tiling=tuple(d["tiling"]),  # type: ignore[arg-type]
            canvas=Placement(*d["canvas"]),
            global_view=Placement(*d["global_view"]),
            crop_size=d["crop_size"],
            crop_stride=d["crop_stride"],
        )

    @property
    def n_crops(self) -> int:
        """Crops including the global view."""
        return self.tiling[0] * self.tiling[1] + 1

    def crop_origins(self) -> npt.NDArray[np.int64]:
        """``[n_crops - 1, 2]``: each tile's ``(x, y)`` top-left corner on the canvas."""
        rows, cols = self.tiling
        k = np.arange(rows * cols)
        return np.stack([k % cols, k // cols], axis=1) * self.crop_stride

    def locate(self, points: npt.ArrayLike) -> dict[str, npt.NDArray[Any]]:
        """Maps points ``[n, 2]`` given as ``(x, y)`` percent of the original image to pixel
        positions: ``"global"`` ``[n, 2]`` on the 336x336 global view (crop 0), ``"canvas"``
        ``[n, 2]`` on the high-resolution canvas, and ``"crops"`` ``[n, n_crops, 2]`` on every
        crop (crop 0 is the global view) with ``"on_crop"`` ``[n, n_crops]`` saying which
        crops contain each point. Divide by ``patch_size`` for patch coordinates."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        canvas = self.canvas.map_percent(p)
        glob = self.global_view.map_percent(p)
        on_tiles = canvas[:, None, :] - self.crop_origins()[None, :, :]
        crops = np.concatenate([glob[:, None, :], on_tiles], axis=1)
        on_crop = np.all((crops >= 0) & (crops < self.crop_size), axis=-1)
        return {"global": glob, "canvas": canvas, "crops": crops, "on_crop": np.asarray(on_crop)}


@dataclass(frozen=True)
class MolmoImage:
    """One image preprocessed for Molmo.

    - ``crops``: ``float32 [n_crops, 576, 588]`` (``uint8`` with ``normalize=False``), the
      global view first, each crop's 24x24 patches row-major, each patch 14x14x3 row-major;
    - ``patch_mask``: ``float32 [n_crops, 576]``, Molmo's ``image_masks``: per tile the
      fraction of each patch that is image, then a row of -1 (Molmo appends it last although
      the global view is crop 0; the model was trained with this layout);
    - ``image_input_idx``: ``int32 [n_crops, 144]``, where in ``image_tokens`` each crop's
      2x2-pooled patch goes, -100 for patches in discarded overlap margins;
    - ``image_tokens``: ``int32`` token sequence of the image (``config.token_ids``);
    - ``geometry``: the tiling, canvas and global view placements, and the point helper.
    """

    crops: npt.NDArray[Any]
    patch_mask: npt.NDArray[np.float32]
    image_input_idx: npt.NDArray[np.int32]
    image_tokens: npt.NDArray[np.int32]
    geometry: MolmoGeometry

    @property
    def n_crops(self) -> int:
        return int(self.crops.shape[0])

    @property
    def tiling(self) -> tuple[int, int]:
        return self.geometry.tiling

    @classmethod
    def _from_native(cls, d: dict[str, Any]) -> MolmoImage:
        return cls(
            crops=d["crops"],
            patch_mask=d["patch_mask"],
            image_input_idx=d["image_input_idx"],
            image_tokens=d["image_tokens"],
            geometry=MolmoGeometry._from_native(d["geometry"]),
        )


def molmo_preprocess(data: Any, config: MolmoConfig | None = None) -> MolmoImage:
    """Decodes one encoded image and preprocesses it as Molmo's ``overlap-and-resize-c2``.

    Raises ``ImageDecodeError`` for a broken image, ``ValueError`` for bad settings."""
    cfg = config or MolmoConfig()
    return MolmoImage._from_native(_native.image_molmo(data, cfg._native_args()))


def molmo_preprocess_many(
    items: Sequence[Any],
    config: MolmoConfig | None = None,
    *,
    threads: int = 1,
    errors: Literal["raise", "return"] = "raise",
) -> list[MolmoImage | ImageDecodeError]:
    """``molmo_preprocess`` over many images on up to ``threads`` threads (started for this
    call only). ``errors="return"`` puts a broken image's ``ImageDecodeError`` in its place."""
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', not {errors!r}")
    if int(threads) < 1:
        raise ValueError(f"threads must be at least 1, not {threads!r}")
    cfg = config or MolmoConfig()
    raw = _native.image_molmo_many(items, cfg._native_args(), int(threads))
    out: list[MolmoImage | ImageDecodeError] = []
    for r in raw:
        if isinstance(r, ImageDecodeError):
            if errors == "raise":
                raise r
            out.append(r)
        else:
            out.append(MolmoImage._from_native(r))
    return out


def molmo_geometry(height: int, width: int, config: MolmoConfig | None = None) -> MolmoGeometry:
    """Molmo's tiling and placements for an upright image of ``height`` x ``width``, without
    decoding anything (e.g. to map points before the image is read)."""
    cfg = config or MolmoConfig()
    return MolmoGeometry._from_native(
        _native.image_molmo_geometry(int(height), int(width), cfg._native_args())
    )
