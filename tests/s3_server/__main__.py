"""``python -m tests.s3_server --root DIR --port 0 --latency 0.02``: prints ``PORT <n>`` first."""

from __future__ import annotations

import os
import sys

if __package__:
    from .process import main
else:  # run by path: ``python tests/s3_server``
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from s3_server.process import main

if __name__ == "__main__":
    main()
