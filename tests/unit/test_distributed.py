"""torch.distributed: two ranks (gloo, loopback) run the same perf test; the ranks are
lined up by a barrier before the measured region, every round records the slowest
rank's time, and only rank 0 writes the baseline and the report.

Two real ``python -m pytest`` processes, with bounded timeouts so a hang fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

TIMEOUT = 180
#: Seconds per call: rank 1 is 3x slower than rank 0.
DELAY = {0: 0.02, 1: 0.06}
#: Rank 1 arrives this late at the measured region; the barrier makes rank 0 wait.
LATE = 1.0

MODULE = f"""
import datetime
import json
import os
import time
from pathlib import Path

import pytest
import torch.distributed as dist

RANK = int(os.environ["RANK"])
DELAY = {DELAY!r}[RANK]


@pytest.fixture(scope="module", autouse=True)
def process_group():
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    yield
    dist.destroy_process_group()


@pytest.mark.llmperf(warmup=1, rounds=5, drift_correction=False)
def test_allreduce_step(llmperf):
    calls = []

    def work():
        start = time.monotonic()
        time.sleep(DELAY)
        calls.append([start, time.monotonic()])

    if RANK == 1:
        time.sleep({LATE})
    llmperf(work)
    (Path(__file__).parent / f"stamps{{RANK}}.json").write_text(json.dumps(calls))
"""

NODEID = "test_dist.py::test_allreduce_step"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(root: Path) -> list[tuple[int, str]]:
    """Both ranks as ``python -m pytest`` processes; (returncode, output) per rank."""
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS", "LLMPERF_DEVICE")
        }
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            TMPDIR=str(root),
        )
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--basetemp={root / f'basetemp{rank}'}",
            "--llmperf",
            "--llmperf-update-baselines",
            f"--llmperf-baselines=base{rank}",
            f"--llmperf-report=report{rank}.json",
            "test_dist.py",
        ]
        procs.append(
            subprocess.Popen(
                cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    out = []
    try:
        for p in procs:
            text, _ = p.communicate(timeout=TIMEOUT)
            out.append((p.returncode, text))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        texts = [p.communicate()[0] for p in procs]
        pytest.fail("the distributed run hung:\n" + "\n---\n".join(texts))
    return out


@pytest.mark.multiprocess
def test_two_gloo_ranks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_dist=MODULE)
    root = pytester.path
    results = _launch(root)
    for rank, (code, text) in enumerate(results):
        assert code == 0, f"rank {rank} failed:\n{text}"

    # Only rank 0 writes: its baseline and report exist; rank 1's do not.
    (path0,) = (root / "base0").glob("*.json")
    assert not (root / "base1").exists() or not list((root / "base1").glob("*.json"))
    assert (root / "report0.json").is_file()
    assert not (root / "report1.json").exists()

    # The recorded time is the slowest rank's: rank 1's 60 ms, not rank 0's 20 ms.
    entry = json.loads(path0.read_text())["tests"][NODEID]
    recorded = entry["metrics"]["time"]["value"]
    own = json.loads((root / "stamps0.json").read_text())
    own_median = sorted(e - s for s, e in own[1:6])[2]
    assert own_median < 2 * DELAY[0] <= DELAY[1] * 0.75, own_median
    assert recorded >= DELAY[1] * 0.9, (recorded, own_median)
    samples = [x for run in entry["metrics"]["time"]["runs"] for x in run["samples"]]
    assert len(samples) == 5 and min(samples) >= DELAY[1] * 0.9, samples
    report = json.loads((root / "report0.json").read_text())
    (result,) = report["results"]
    assert result["metrics"]["time"]["value"] >= DELAY[1] * 0.9

    # Ranks lined up before the measured region: rank 0's first measured round
    # (calls: warm-up, 5 rounds, memory pass, work signature: one pass, more on every rank
    # where any rank's was cold, see work.signature_of) starts after rank 1, arriving
    # LATE, has finished its warm-up.
    late = json.loads((root / "stamps1.json").read_text())
    assert len(own) == len(late) in (8, 9, 10)
    assert own[1][0] >= late[0][1], (
        f"rank 0 started measuring {late[0][1] - own[1][0]:.3f} s before rank 1 was ready"
    )
