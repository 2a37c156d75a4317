"""Settings every test shares."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Datasets read from a (local, test) bucket go through the node cache; tests that do not pick
# a cache directory of their own use this one, not the user's ~/.cache/pixmo-stream.
if "PIXMO_STREAM_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="pixmo-stream-test-cache-")
    os.environ["PIXMO_STREAM_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, True)
