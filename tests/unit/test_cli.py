"""``python -m pytest_llmperf estimate``: text and JSON output, errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "pytest_llmperf", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


BASE = (
    "estimate",
    "--model",
    "opt-1.3b",
    "--device",
    "RTX A5000",
    "--batch",
    "1",
    "--seq-len",
    "512",
)


def test_estimate_text_output():
    r = _run(*BASE)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for label in ("runtime", "energy", "memory", "FLOPs"):
        assert label in out
    assert " ms" in out and " J" in out and " GB" in out and "TFLOP" in out
    assert "datasheet: RTX A5000" in out and "230 W" in out


def test_estimate_json_output_is_consistent():
    r = _run(*BASE, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"] == "opt-1.3b" and data["mode"] == "forward" and data["dtype"] == "bf16"
    assert data["energy_j"] == pytest.approx(data["runtime_s"] * 230)
    assert data["runtime_ms"] == pytest.approx(data["runtime_s"] * 1e3)
    assert data["memory_gb"] == pytest.approx(data["memory_bytes"] / 1e9)
    # one forward of ~1.3 B params over 512 tokens: ~2 x 1.3e9 x 512 FLOPs
    assert 1.2e12 < data["flops"] < 1.6e12


def test_estimate_generation_with_gen_len():
    r = _run(*BASE, "--gen-len", "32", "--dtype", "fp16", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["mode"] == "generate" and data["gen_len"] == 32
    assert set(data["phases"]) == {"prefill", "decode"}
    assert data["memory"]["kv_cache"] > 0


def test_unknown_model_exits_2_with_the_list():
    r = _run("estimate", "--model", "gpt-17", "--device", "RTX A5000")
    assert r.returncode == 2
    assert "unknown model 'gpt-17'" in r.stderr
    for known in ("opt-1.3b", "opt-6.7b", "clm-60m", "clm-1.1b", "llama-3-8b", "cs336-small"):
        assert known in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_device_exits_2_with_the_list():
    r = _run("estimate", "--model", "opt-1.3b", "--device", "Voodoo 5")
    assert r.returncode == 2
    assert "unknown device 'Voodoo 5'" in r.stderr
    assert "RTX A5000" in r.stderr and "H100 SXM" in r.stderr
    assert "Traceback" not in r.stderr


def test_list_command():
    r = _run("list")
    assert r.returncode == 0
    assert "clm-400m" in r.stdout and "RTX A5000" in r.stdout


def test_help_lists_every_subcommand(capsys):
    """``--help`` names every command, one line each, ``doctor`` included (issue 26)."""
    import argparse

    from pytest_llmperf.__main__ import main
    from pytest_llmperf.roofline.cli import _parser

    try:
        status = main(["--help"])
    except SystemExit as exc:  # argparse's own help exits
        status = exc.code
    assert status == 0
    out = capsys.readouterr().out
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in {"doctor", *sub.choices}:
        (line,) = [ln for ln in out.splitlines() if ln.strip().startswith(name + " ")]
        assert len(line.split()) > 2, line  # the command and its one line


@pytest.mark.parametrize("args", [(), ("doctr",), ("--llmperf",)])
def test_no_or_unknown_command_prints_the_usage_and_exits_2(args):
    r = _run(*args)
    assert r.returncode == 2, r
    for name in ("doctor", "estimate", "list"):
        assert f"  {name} " in r.stderr
    said = "no command given" if not args else f"unknown command {args[0]!r}"
    assert said in r.stderr and "Traceback" not in r.stderr
