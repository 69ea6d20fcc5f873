"""``python -m cloudserve.cli``: the same as the ``cloudserve`` command."""

import sys

from cloudserve.cli import main

sys.exit(main())
