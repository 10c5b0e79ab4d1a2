"""What a test can come to: its status (did the code run?) and its verdict (did it regress?).

One enum each, used by every module instead of strings; they import nothing.
"""

from __future__ import annotations

from enum import Enum


class _Value(str, Enum):
    """A ``str`` enum that compares equal to, prints and serialises as its plain value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Status(_Value):
    """Whether the measured code ran: an out-of-memory cell is a result, not an error."""

    OK = "ok"
    OOM = "oom"


class Verdict(_Value):
    """A test's verdict, and the outcome of one metric's decision (a subset of it)."""

    PASS = "pass"
    REGRESSION = "regression"
    IMPROVED = "improved"
    INCONCLUSIVE = "inconclusive"
    NO_BASELINE = "no-baseline"
    RECORDED = "recorded"

    @property
    def severity(self) -> int:
        """0 for the most alarming: the order of summaries and reports."""
        return _SEVERITY.index(self)

    def fails(self, strict: bool) -> bool:
        """Whether this verdict fails its test; strict also fails what could not be judged."""
        return self is Verdict.REGRESSION or (
            strict and self in (Verdict.NO_BASELINE, Verdict.INCONCLUSIVE)
        )


_SEVERITY = (
    Verdict.REGRESSION,
    Verdict.INCONCLUSIVE,
    Verdict.IMPROVED,
    Verdict.NO_BASELINE,
    Verdict.PASS,
    Verdict.RECORDED,
)


class WorkGate(_Value):
    """How the work gate saw a test (``TestResult.work_gate``), by the dispatch context of
    the entry it was compared with (``measure.dispatch``)."""

    #: Against an entry of this run's dispatch context: gated exactly.
    EXACT = "exact"
    #: Against another context's entry, with the same counts: gated (a change would show).
    EQUAL = "equal"
    #: Against another context's entry, with other counts: a note, never a failure.
    INFORMED = "informed"

    @classmethod
    def of(cls, other_context: bool, moved: bool) -> WorkGate:
        if not other_context:
            return cls.EXACT
        return cls.INFORMED if moved else cls.EQUAL
