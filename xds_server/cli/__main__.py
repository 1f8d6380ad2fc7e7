"""``python -m xds_server.cli``: the same as the ``meshplane`` command."""
import sys

from xds_server.cli import main

sys.exit(main())
