"""What a session writes for people and tools: the report and the exporters.

- :mod:`.report`: ``write_report`` for ``--llmperf-report`` (.md, .json, .html);
- :mod:`.tables`: the tables as data, the verdict summary and the generic group table;
- :mod:`.sections`: each group's section and plots, from a conftest's hook or generic;
- :mod:`.markdown`, :mod:`.html`, :mod:`.json_report`: one renderer each;
- :mod:`.plots`: the HTML's PNG plots (matplotlib, optional, imported lazily);
- :mod:`.exporters`: pytest-benchmark JSON, Bencher BMF, JUnit properties, GitHub summary;
- :mod:`.files`: writing them: missing directories created, a failure named.

No torch import anywhere here.
"""

from .report import REPORT_SUFFIXES, write_report

__all__ = ["REPORT_SUFFIXES", "write_report"]
