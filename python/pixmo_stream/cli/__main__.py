import sys

from pixmo_stream.cli import main

sys.exit(main())
