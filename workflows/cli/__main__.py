"""``python -m canvasflow.workflows.cli``: the ``canvasflow`` command."""

import sys

from canvasflow.workflows.cli.main import main

sys.exit(main())
