"""Which gate this runner supports: fitness per gate, the recommendation, the exit status."""

from __future__ import annotations

from typing import Any

#: The gates a user can ask about, cheapest first: the order of preference.
GATES = ("stored", "compare", "work")
RECOMMENDATION = {
    "stored": "stored baseline",
    "compare": "A/B against a ref (--llmperf-compare=main)",
    "work": "work signature only (--llmperf-gate=work)",
}


def gate_fit(gate: str, stored: float | None, paired: float | None, tolerance: float) -> bool:
    """Whether ``gate`` can see ``tolerance`` given the detectable changes (None: unmeasured).

    The work gate counts, it does not time: always fit.
    """
    if gate == "work":
        return True
    mdc = stored if gate == "stored" else paired
    return mdc is not None and mdc <= tolerance


def recommend(stored: float | None, paired: float | None, tolerance: float) -> str:
    """The cheapest gate that sees the tolerance: one stored run, else A/B, else work counts."""
    for gate in GATES:
        if gate_fit(gate, stored, paired, tolerance):
            return gate
    return "work"  # pragma: no cover - work is always fit


def exit_status(gate: str, stored: float | None, paired: float | None, tolerance: float) -> int:
    """0 when the runner is fit for the gate the user is about to use, else 1."""
    return 0 if gate_fit(gate, stored, paired, tolerance) else 1


def decide(noise: dict, gate: str, tolerance: float) -> dict[str, Any]:
    """The report's verdict from :func:`noise_summary`: per gate its detectable change and
    fitness, the recommendation, and the exit status for the gate asked."""
    stored, paired = noise.get("stored_detectable"), noise.get("paired_detectable")
    return {
        "tolerance": tolerance,
        "gates": {
            "stored": {
                "detectable": stored,
                "fit": gate_fit("stored", stored, paired, tolerance),
                **_why(noise.get("stored_shortfall")),
            },
            "compare": {
                "detectable": paired,
                "fit": gate_fit("compare", stored, paired, tolerance),
                **_why(noise.get("paired_shortfall")),
            },
            "work": {"detectable": 0.0, "fit": True},
        },
        "recommendation": recommend(stored, paired, tolerance),
        "gate": gate,
        "fit": gate_fit(gate, stored, paired, tolerance),
        "exit_status": exit_status(gate, stored, paired, tolerance),
    }


def _why(shortfall: str | None) -> dict[str, str]:
    """A gate's ``why`` (too few samples to judge), only where there is one."""
    return {"why": shortfall} if shortfall else {}
