"""Decoding images as part of the read-ahead (`StreamingDataset(..., decode=...)`).

With `decode` set, the read-ahead threads (Rust, GIL released) decode each row's image column
right after reading it, with `pixmo_stream.image`'s decoder: records hold `uint8 [H, W, 3]`
arrays over the Rust buffers instead of encoded `Blob`s, and when every image has one fixed
size (`resize` or `pad`) a batch's images are gathered by the read thread into one contiguous
`[B, H, W, 3]` buffer, which the default collate hands out as one tensor without copying.

`device="cuda"` decodes on the GPU instead (torchvision's nvJPEG batched decoder): the
read-ahead sends the encoded bytes on, and the process that iterates the DataLoader decodes
each batch on the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# PIL's default `Image.MAX_IMAGE_PIXELS` times two (where PIL refuses to open an image); the
# same limit as `pixmo_stream.image.DEFAULT_MAX_PIXELS`.
DEFAULT_MAX_PIXELS = 178_956_970


def _size(name: str, value: Any) -> tuple[int, int]:
    try:
        h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (height, width) pair, not {value!r}") from None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (h, w)) or h < 1 or w < 1:
        raise ValueError(f"{name} must be a (height, width) pair of positive ints, not {value!r}")
    return h, w


@dataclass(frozen=True)
class Decode:
    """How the read-ahead decodes images (`decode="rgb"` is `Decode()`).

    Args:
        column: the binary column holding the encoded images.
        resize: `(height, width)`: stretched to exactly this size.
        pad: `(height, width)`: scaled to fit keeping the aspect ratio, zero-padded, centred.
        max_side: shrunk (never enlarged) so that the longer side is at most this.
        fast: let a JPEG at least twice the target's size (four times without
            libjpeg-turbo's SIMD) decode at 1/2, 1/4 or 1/8 scale, as
            `pixmo_stream.image.decode` does by default: faster, pixels within a few levels
            of a full decode and resize; `False`: decode every image in full first.
        max_pixels: an image whose header declares more pixels is a bad sample (a
            decompression bomb); `None`: no limit.
        device: `"cpu"` (on the read-ahead threads) or `"cuda"` (nvJPEG, in the iterating
            process; JPEG only).
        molmo: a `pixmo_stream.image.MolmoConfig`: Molmo's multi-crop preprocessing instead
            of a plain decode (`decode="molmo"` is its defaults); records then hold
            `column` (crops `[n, 576, 588]`), `column + "_patch_mask"`, `"_input_idx"`,
            `"_tokens"` and `"_tiling"`, as `pixmo_stream.image.molmo_preprocess` returns
            them. The resize options, `fast` and `max_pixels` are the config's own then.
    """

    column: str = "image"
    resize: tuple[int, int] | None = None
    pad: tuple[int, int] | None = None
    max_side: int | None = None
    fast: bool = True
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    device: str = "cpu"
    molmo: Any = None

    def __post_init__(self) -> None:
        if self.molmo is not None:
            from .image import MolmoConfig

            if not isinstance(self.molmo, MolmoConfig):
                raise TypeError(
                    f"molmo must be a pixmo_stream.image.MolmoConfig, not {self.molmo!r}"
                )
            other = [n for n in ("resize", "pad", "max_side") if getattr(self, n) is not None]
            if other or not self.fast or self.device != "cpu":
                dropped = other or ["fast" if not self.fast else "device"]
                raise ValueError(
                    "Molmo preprocessing has its own sizes and fast mode (MolmoConfig(exact=...)) "
                    f"and runs on the CPU; drop {dropped}"
                )
        given = [n for n in ("resize", "pad", "max_side") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of resize, pad and max_side, not {given}")
        if self.resize is not None:
            object.__setattr__(self, "resize", _size("resize", self.resize))
        if self.pad is not None:
            object.__setattr__(self, "pad", _size("pad", self.pad))
        if self.max_side is not None and (not isinstance(self.max_side, int) or self.max_side < 1):
            raise ValueError(f"max_side must be a positive int, not {self.max_side!r}")
        if self.max_pixels is not None and (
            not isinstance(self.max_pixels, int) or self.max_pixels < 1
        ):
            raise ValueError(f"max_pixels must be a positive int or None, not {self.max_pixels!r}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', not {self.device!r}")
        if not isinstance(self.column, str) or not self.column:
            raise TypeError("column must be a column name")

    @property
    def size(self) -> tuple[int, int] | None:
        """`(height, width)` of every decoded image, when fixed."""
        return self.resize or self.pad

    def native(self, gather: str = "") -> tuple[str, int, int, bool, int, str, Any, str]:
        """The spec the native read-ahead takes; `gather`: Molmo's crops of each read batch
        written into one padded buffer (for a consumer whose batches are the read batches),
        ``"heap"`` or ``"shared"`` (an anonymous shared-memory file, for a DataLoader worker)."""
        if self.resize is not None:
            mode, w, h = "exact", self.resize[1], self.resize[0]
        elif self.pad is not None:
            mode, w, h = "pad", self.pad[1], self.pad[0]
        elif self.max_side is not None:
            mode, w, h = "max_side", self.max_side, 0
        else:
            mode, w, h = "none", 0, 0
        limit = (1 << 64) - 1 if self.max_pixels is None else self.max_pixels
        molmo = self.molmo._native_args() if self.molmo is not None else None
        return (mode, w, h, self.fast, limit, self.column, molmo, gather if molmo else "")


def gathers_crops(dataset: Any, in_main: bool, shared: bool) -> str:
    """Where the read-ahead should write each batch's Molmo crops into one padded buffer: the
    batch tensor of a collate_fn that accepts the stream's allocator (`molmo.Batches`),
    handed out uncopied. Only where batches are the read batches, unpacked (a packed row lays
    crops out otherwise). ``"heap"`` in the main process; in a DataLoader worker
    ``"shared"`` where its batches cross by reference (`shared`, see `_transport`), else
    ``""`` (not gathered)."""
    if not (
        dataset.batch_size is not None
        and getattr(dataset, "pack", None) is None
        and bool(getattr(dataset.collate_fn, "accepts_empty", False))
    ):
        return ""
    if in_main:
        return "heap"
    return "shared" if shared else ""


def as_decode(value: str | Decode | None) -> Decode | None:
    """`decode=` as given: None, `"rgb"`, `"cuda"` or a `Decode`."""
    if value is None or isinstance(value, Decode):
        return value
    if value == "rgb":
        return Decode()
    if value == "cuda":
        return Decode(device="cuda")
    if value == "molmo":
        from .image import MolmoConfig

        return Decode(molmo=MolmoConfig())
    raise ValueError(
        f"decode must be None, 'rgb', 'cuda', 'molmo' or a pixmo_stream.Decode, not {value!r}"
    )


def check_column(decode: Decode, schema: Any, columns: list[str] | None, where: str) -> None:
    """The image column must be a binary column among those read."""
    fields = {f.name: f for f in schema.fields}
    f = fields.get(decode.column)
    if f is None or (columns is not None and decode.column not in columns):
        raise ValueError(
            f"{where}: decode needs the image column {decode.column!r} among the columns read "
            "(pass Decode(column=...) to name another)"
        )
    if f.type.kind != "binary":
        raise ValueError(f"{where}: column {decode.column!r} is {f.type}, not binary images")


def collate_decoded(
    records: list[dict[str, Any]],
    images: np.ndarray | None,
    decode: Decode,
    collate: Callable[[list[dict[str, Any]]], Any],
    pin_memory: bool,
    empty: Callable[[tuple[int, ...], Any], np.ndarray] | None = None,
) -> Any:
    """A batch whose image column is one `[B, H, W, 3]` uint8 tensor (over the read thread's
    buffer when `images` is it), or a list of `[H_i, W_i, 3]` tensors for images of varying
    size; the other columns as `collate` makes them. With `empty` (a DataLoader worker's
    shared memory, see `pixmo_stream._transport`), the pixels are placed in arrays it makes,
    which reach the main process without another copy."""
    import torch

    col = decode.column
    pixels = [r.pop(col, None) for r in records]
    batch = collate(records)
    for r, p in zip(records, pixels, strict=True):
        if p is not None:
            r[col] = p

    def placed(a: np.ndarray) -> np.ndarray:
        if empty is None:
            return a
        out = empty(a.shape, a.dtype)
        np.copyto(out, a, casting="no")
        return out

    if images is not None and len(images) == len(records):
        value: Any = torch.from_numpy(placed(images))
    elif pixels and all(isinstance(p, np.ndarray) for p in pixels) and decode.size is not None:
        stacked = None if empty is None else empty((len(pixels), *pixels[0].shape), np.uint8)
        value = torch.from_numpy(np.stack(pixels, out=stacked))
    else:
        value = [torch.from_numpy(placed(p)) if isinstance(p, np.ndarray) else p for p in pixels]
    if pin_memory and isinstance(value, torch.Tensor) and torch.cuda.is_available():
        value = value.pin_memory()
    if isinstance(batch, dict):
        batch[col] = value
    return batch


def _upright(x: Any, orientation: int) -> Any:
    """`[3, H, W]` as stored to as displayed, for an EXIF orientation 1-8 (nvJPEG ignores
    EXIF; the CPU decoder applies it, as PIL's `exif_transpose`)."""
    if orientation in (5, 6, 7, 8):
        x = x.transpose(-1, -2)
    flips = {2: (-1,), 3: (-1, -2), 4: (-2,), 6: (-1,), 7: (-1, -2), 8: (-2,)}.get(orientation)
    return x.flip(flips) if flips else x


def _resize_on_gpu(x: Any, decode: Decode) -> Any:
    """`[3, H, W]` uint8 (upright), resized as `decode` says: the CPU decoder's sizes and
    offsets (`pixmo_stream.image.placement`), antialiased bilinear (pixels may differ from the
    CPU decoder's by a few levels)."""
    import torch
    import torch.nn.functional as F

    from . import image

    height, width = int(x.shape[1]), int(x.shape[2])
    if decode.resize is None and decode.max_side is None and decode.pad is None:
        return x
    p = image.placement(
        height, width, resize=decode.resize, max_side=decode.max_side, pad=decode.pad
    )
    if (p.height, p.width) != (height, width):
        size = (p.height, p.width)
        y = F.interpolate(x[None].float(), size=size, mode="bilinear", antialias=True)
        x = y[0].round_().clamp_(0, 255).to(torch.uint8)
    if (p.canvas_height, p.canvas_width) == (p.height, p.width):
        return x
    canvas = torch.zeros((3, p.canvas_height, p.canvas_width), dtype=torch.uint8, device=x.device)
    canvas[:, p.top : p.top + p.height, p.left : p.left + p.width] = x
    return canvas


def _gpu_failure(data: Any, decode: Decode) -> tuple[str | None, int]:
    """Why an encoded image cannot be decoded on the GPU, from its header (None: it may), and
    its EXIF orientation."""
    from . import image

    try:
        info = image.probe(data)
    except image.ImageDecodeError as e:
        return str(e), 1
    if info.format != "JPEG":
        return f"nvJPEG decodes JPEG only, this is {info.format}", 1
    if decode.max_pixels is not None and info.width * info.height > decode.max_pixels:
        return f"{info.width}x{info.height} exceeds the limit of {decode.max_pixels} pixels", 1
    # nvJPEG, like libjpeg, may fill a cut file's missing rows with grey instead of failing;
    # the CPU decoder calls it truncated, and so does this.
    from .ingest.images import incomplete

    cut = incomplete(data if isinstance(data, bytes) else memoryview(data), "JPEG")
    if cut is not None:
        return f"truncated: {cut}", 1
    return None, info.orientation


def decode_on_gpu(batch: Any, decode: Decode, on_bad_sample: str, device: str = "cuda") -> Any:
    """Decodes the encoded JPEGs of `batch[decode.column]` on the GPU (torchvision's batched
    nvJPEG decoder) into one `[B, H, W, 3]` uint8 CUDA tensor (fixed size) or a list of
    `[H, W, 3]` ones, EXIF orientation applied and resized as the CPU decoder does. An image
    that does not decode raises `BadSampleError`, or under `on_bad_sample="replace"` is
    replaced by the next good image of the same batch (the same on every rank) and listed in
    `batch["bad_samples"]` (its row is not known here: -1).

    `device="cpu"` runs the same steps with torchvision's CPU decoder (how the tests check
    them on machines without a GPU)."""
    if not isinstance(batch, dict) or decode.column not in batch:
        return batch
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from ._native import BadSampleError
    from .bad_samples import BATCH_KEY, BadSample

    col = decode.column
    encoded = batch[col]
    single = not isinstance(encoded, list)
    items = [encoded] if single else encoded
    checked = [_gpu_failure(e, decode) for e in items]
    failures = [f for f, _ in checked]
    good = [i for i, f in enumerate(failures) if f is None]
    datas = {i: torch.frombuffer(bytearray(items[i]), dtype=torch.uint8) for i in good}
    images: list[Any] = [None] * len(items)
    try:
        decoded = (
            decode_jpeg([datas[i] for i in good], mode=ImageReadMode.RGB, device=device)
            if good
            else []
        )
        for i, im in zip(good, decoded, strict=True):
            images[i] = im
    except RuntimeError:
        # Find which image fails, one by one.
        for i in good:
            try:
                images[i] = decode_jpeg(datas[i], mode=ImageReadMode.RGB, device=device)
            except RuntimeError as e:
                failures[i] = f"nvJPEG: {e}"
    images = [
        None if im is None else _upright(im, o) for im, (_, o) in zip(images, checked, strict=True)
    ]
    bad_at = [i for i, f in enumerate(failures) if f is not None]
    if bad_at:
        i = bad_at[0]
        if on_bad_sample != "replace" or len(bad_at) == len(items):
            raise BadSampleError(
                f"image {i} of a batch (column {col!r}) does not decode on the GPU: {failures[i]}"
            )
        listed = batch.setdefault(BATCH_KEY, [])
        for i in bad_at:
            j = next(
                k % len(items)
                for k in range(i + 1, i + len(items))
                if images[k % len(items)] is not None
            )
            images[i] = images[j]
            listed.append(BadSample("", None, col, -1, -1, f"GPU decode: {failures[i]}", -1))
    out = [_resize_on_gpu(im, decode) for im in images]
    if single:
        batch[col] = out[0].permute(1, 2, 0)
    elif decode.size is not None:
        batch[col] = torch.stack(out).permute(0, 2, 3, 1).contiguous()
    else:
        batch[col] = [im.permute(1, 2, 0) for im in out]
    return batch
