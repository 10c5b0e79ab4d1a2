"""``python -m pytest_llmperf.doctor``: how the probe subprocesses start (``--_probe``)."""

import sys

from . import main

sys.exit(main())
