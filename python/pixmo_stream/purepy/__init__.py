"""An independent, pure-Python reader of the pixmo-stream format (docs/FORMAT.md, version 1.2).

It uses only numpy, zstandard, msgpack and the standard library, and imports nothing from the
rest of the package, so it works where the native extension is not installed. Its real job is
to prove that the spec is complete: it was written from FORMAT.md alone, and the tests check
that it reads every file the Rust writer writes exactly as the Rust reader does.

Every "MUST" of the spec's "What a reader MUST do" is checked; a chunk's values are only
returned after its CRC, padding, length and buffer table have been verified.

The modules follow the spec's sections: `constants`, `errors`, `crc32c`, `schema`, `decode`
(one raw chunk), `shard` (one file) and `dataset` (a manifest and its shards). They import
each other relatively and nothing from the rest of the package.
"""

# The two helpers the tests reach for stay where they were before the reader was a package.
from .crc32c import _crc_bytes as _crc_bytes
from .crc32c import crc32c
from .dataset import Dataset, open_dataset
from .decode import _decompress_zstd as _decompress_zstd
from .errors import CorruptDataError, PurePixmoError, UnsupportedVersionError
from .shard import Shard

__all__ = [
    "PurePixmoError",
    "CorruptDataError",
    "UnsupportedVersionError",
    "Dataset",
    "Shard",
    "open_dataset",
    "crc32c",
]
