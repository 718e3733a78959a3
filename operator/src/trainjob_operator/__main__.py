"""`python -m trainjob_operator` is the `trainjob` command."""

import sys

from trainjob_operator.cli import main

sys.exit(main())
