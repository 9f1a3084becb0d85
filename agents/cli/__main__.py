"""``python -m agents.cli``: the `privmon` command."""

import sys

from privmon.agents.cli import main

sys.exit(main())
