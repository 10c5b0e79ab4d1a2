"""Every evidence script has a ``--quick`` run, so CI can run them all (run_quick.py).

Checked by reading the scripts, not running them: running one imports torch and
takes seconds; ``scripts/evidence/run_quick.py`` runs them.
"""

import importlib.util
from pathlib import Path

EVIDENCE = Path(__file__).resolve().parents[2] / "scripts" / "evidence"


def _run_quick():
    spec = importlib.util.spec_from_file_location("run_quick", EVIDENCE / "run_quick.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_evidence_script_has_a_quick_option() -> None:
    run_quick = _run_quick()
    found = run_quick.scripts()
    assert {p.name for p in found} >= {"small_gpt.py", "scale.py", "noise_trials.py"}
    assert [p.name for p in found if not run_quick.has_quick(p)] == []


def test_a_script_without_quick_is_found_out(tmp_path: Path) -> None:
    """The check reads an ``add_argument("--quick")``; a mention in a docstring is not one."""
    script = tmp_path / "x.py"
    script.write_text(
        '"""--quick"""\nimport argparse\nargparse.ArgumentParser().add_argument("--fast")\n'
    )
    assert not _run_quick().has_quick(script)
    script.write_text('import argparse\nargparse.ArgumentParser().add_argument("--quick")\n')
    assert _run_quick().has_quick(script)
