"""``python -m pytest_llmperf estimate ...`` / ``list``: the roofline CLI (``roofline/cli.py``)."""

import sys

from .roofline.cli import main

if __name__ == "__main__":
    sys.exit(main())
