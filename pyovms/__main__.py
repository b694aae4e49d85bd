"""`python -m pyovms`: the same as the `pyovms` command."""

import sys

from .cli import main

sys.exit(main())
