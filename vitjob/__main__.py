"""``python -m vitjob``: the same as the ``vitjob`` command."""

import sys

from vitjob.cli import main

sys.exit(main())
