"""``python -m bench``: run every benchmark, print one table, save it as JSON (see ``bench.suite``)."""

import sys

from bench.suite import main

sys.exit(main())
