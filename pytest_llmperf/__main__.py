"""``python -m pytest_llmperf``: ``doctor`` checks this runner (``doctor/``); ``history``
reads a run history (``history/cli.py``); ``estimate`` and ``list`` are the roofline CLI
(``roofline/cli.py``)."""

from __future__ import annotations

import sys

#: Every subcommand with its one line, in the order the usage lists them: a newcomer's
#: ``--help`` must name ``doctor`` as well as the estimator's commands.
COMMANDS = {
    "doctor": "check this runner: A/A noise, the smallest change each gate can see, and "
    "which gate to use (--quick: a few seconds)",
    "history": "each test's series over commits in a history (--llmperf-history=DIR): its "
    "steps and creep as text, --json and an --html page of trend plots; 'history ack' accepts "
    "a deliberate change",
    "estimate": "roofline estimate of a model workload: runtime, energy, memory and FLOPs",
    "list": "list the models and devices estimate knows",
}


def usage() -> str:
    """The top-level usage: every subcommand, one line each."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: python -m pytest_llmperf <command> [options]",
        "",
        "commands:",
        *(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()),
        "",
        "python -m pytest_llmperf <command> --help shows a command's options.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch on the first word; each CLI is imported only when asked for. ``--help`` lists
    the commands (exit 0); no command or an unknown one prints that list and exits 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    first = args[0] if args else None
    if first in ("-h", "--help"):
        print(usage())
        return 0
    if first not in COMMANDS:
        said = "no command given" if first is None else f"unknown command {first!r}"
        print(f"{usage()}\n\npython -m pytest_llmperf: error: {said}", file=sys.stderr)
        return 2
    if first == "doctor":
        from .doctor import main as doctor_main

        return doctor_main(args[1:])
    if first == "history":
        from .history.cli import main as history_main

        return history_main(args[1:])
    from .roofline.cli import main as roofline_main

    return roofline_main(args)


if __name__ == "__main__":
    sys.exit(main())
