"""A local S3-compatible object store over a directory, for tests and benchmarks.

Bucket = first path component, key = the rest (path-style addressing only:
``http://127.0.0.1:PORT/bucket/key``); ``ROOT/bucket/key`` is the object's file, so a
benchmark can write a dataset straight into ``ROOT`` and read it back over S3. Everything a
real S3 does that clients rely on is here: ranged GETs (``a-b``, ``a-``, suffix ``-n``, 416 when
unsatisfiable), HEAD, conditional GET/PUT (``If-Match``, ``If-None-Match``, ``If-(Un)Modified-
Since``), PUT (plain, ``aws-chunked`` with trailing checksums, ``Content-MD5`` checked),
CopyObject, DELETE, DeleteObjects, ListObjectsV2 and v1 (prefix, delimiter, pagination,
``encoding-type=url``), ListBuckets, Create/Head/DeleteBucket, multipart uploads (create, part,
part copy, complete, abort; the object appears atomically on completion, parts under 5 MiB but
the last are refused as S3 does). Plain HTTP GET/HEAD and a minimal WebDAV PROPFIND/MKCOL
answer on the same URLs, for ``object_store``'s ``HttpStore``. Signatures are not checked.

What tests need on top of S3:

- ``latency``: seconds added to every request before its response (settable while running);
- counters of requests, operations and body bytes served, in total and per ``bucket/key``;
- faults for the next N requests (optionally only keys matching a glob): ``503`` (SlowDown),
  ``429``, ``500`` (InternalError), ``drop`` (headers and part of the body, then the connection
  is cut), ``close`` (the connection is cut before any response), ``stall`` (wait T seconds,
  before the response or after part of the body); ``forbidden`` globs answering 403; and
  gates (in process only: ``s3.gate(glob)``) that hold requests until the test releases them.

In process (its own event loop in a daemon thread)::

    with S3Server(tmp_path, latency=0.01) as s3:
        s3.inject("503", count=2, match="bucket/data/*")
        ... s3.endpoint, s3.requests, s3.bytes_sent, s3.key_stats("bucket/key") ...

As a separate process (so a benchmark's server does not share the client's GIL)::

    python -m tests.s3_server --root DIR --port 0 --latency 0.02   # prints "PORT <n>" first

and from another process: ``GET /_admin/stats`` (JSON; ``?log=1`` adds the request log),
``POST /_admin/reset``, ``POST /_admin/faults`` (JSON ``{"faults": [{"kind": "503", "count": 2,
"match": "b/*"}], "forbidden": ["b/secret/*"], "latency": 0.02}``), ``DELETE /_admin/faults``.
``S3ServerProcess`` wraps all of that.
"""

from .faults import Fault, Gate
from .process import S3ServerProcess
from .process import main as main
from .protocol import S3Error as S3Error
from .protocol import parse_range as parse_range
from .protocol import storage_options as storage_options
from .server import S3Server

__all__ = ["Fault", "Gate", "S3Server", "S3ServerProcess"]
