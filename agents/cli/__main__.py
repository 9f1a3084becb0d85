"""``python -m agents.cli``: the `privmon` command."""

import sys

from agents.cli import main

sys.exit(main())
