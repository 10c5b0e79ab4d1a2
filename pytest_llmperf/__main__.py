"""``python -m pytest_llmperf``: ``doctor`` checks this runner (``doctor.py``); ``estimate`` and
``list`` are the roofline CLI (``roofline/cli.py``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch on the first word; each CLI is imported only when asked for."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["doctor"]:
        from .doctor import main as doctor_main

        return doctor_main(args[1:])
    from .roofline.cli import main as roofline_main

    return roofline_main(args)


if __name__ == "__main__":
    sys.exit(main())
