#!/usr/bin/env python
"""The GPU runbook (``../shared/GPU.md``) run end to end on fakes of CUDA and NVML.

No GPU has run this project's accelerator paths. When one is lent, the runbook's
one prepared script gets about 15 minutes: a path that dies on its first call, or
reads zero, costs the whole loan. This runs what that script runs, on the CPU,
against ``tests/unit/gpu_fakes.py`` (``torch.Event``, ``torch.accelerator``,
``torch.cuda``: device time simulated per stream, a caching allocator, events that
record on the current device's stream as torch's ``Event.cpp`` does) and
``tests/unit/nvml_fake.py`` (nvidia-ml-py's ``pynvml``: the real signatures and error
classes, clocks and throttle reasons that change under load, an energy counter):

1. facts and measurement checks, on cuda:1 with cuda:0 current: round timing, the
   block timer and token marks against the simulated kernel times (what
   ``do_bench`` would read), peak memory against a known allocation, NVML energy
   against power x time, a GPU without an energy counter, doctor's NVML facts under
   load, the device an xdist worker takes and its lock, each torchrun rank's device;
2. a small suite recorded with ``--llmperf-update-baselines`` (``--llmperf-device=cuda:1``);
3. the same suite compared with what step 2 recorded: every test passes (the fake's
   times are exact: no false alarm is possible, so one is a bug), the report written
   as ``.md`` and ``.html``.

What the fakes cannot show: real kernels' speed, NVML's real update interval, NCCL.
``flush_l2`` allocates a real tensor on the device, so it is checked on the CPU
(``tests/unit/test_gpu_fakes.py``), not here.

    python scripts/gpu_on_fakes.py        # a table of checks; exit 1 when one fails
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "unit"))

import pytest  # noqa: E402
import torch  # noqa: E402
from gpu_fakes import BUS_IDS, FakeGPU, installed  # noqa: E402
from nvml_fake import FakeNVML  # noqa: E402
from nvml_fake import install as install_nvml  # noqa: E402

MiB = 2**20
CHECKS: list[tuple[str, bool, str]] = []
#: Step 1's checks, in order (``@check``).
STEP1: list[Callable[[], str]] = []


def check(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register a check: it returns what it saw, and raises (an assert) when it is wrong."""

    def register(fn: Callable[[], str]) -> Callable[[], str]:
        fn.check_name = name  # type: ignore[attr-defined]
        STEP1.append(fn)
        return fn

    return register


@contextlib.contextmanager
def fakes(nvml: FakeNVML | None = None) -> Iterator[tuple[FakeGPU, FakeNVML]]:
    """Two fake H100s (cuda:0 current) and their NVML, consistent bus ids."""
    nvml = nvml or FakeNVML(devices=[{"bus_id": b} for b in BUS_IDS[:2]])
    with installed(FakeGPU()) as gpu, pytest.MonkeyPatch.context() as mp:
        install_nvml(mp, nvml, cuda_properties=False)
        yield gpu, nvml


# --------------------------------------------------------------------------- step 1


@check("timing: rounds on cuda:1 against the kernels' times")
def timing() -> str:
    from pytest_llmperf.measure.timing import RoundTimer

    rows = []
    with fakes() as (gpu, _):
        dev = torch.device("cuda", 1)
        for label, seconds in (("bf16 matmul", 2.1e-3), ("copy", 4.5e-4), ("decode mm", 3e-5)):
            times, _ = RoundTimer(dev).run(lambda s=seconds: gpu.kernel(s, device=1), 5)
            ratio = sorted(times)[2] / seconds
            assert abs(ratio - 1) < 1e-9, (label, times)
            rows.append(f"{label} {ratio:.3f}")
    return "plugin / kernel: " + ", ".join(rows)


@check("device_timer on cuda:1")
def block() -> str:
    from pytest_llmperf.measure.timing import BlockTimer

    with fakes() as (gpu, _), BlockTimer(torch.device("cuda", 1)) as t:
        gpu.kernel(0.0125, device=1)
    assert abs(t.elapsed - 0.0125) < 1e-12, t.elapsed
    return f"{t.elapsed * 1e3:.2f} ms of a 12.50 ms kernel"


@check("token marks on cuda:1: TTFT and TPOT")
def marks() -> str:
    from pytest_llmperf.measure.generation import TokenClock

    with fakes() as (gpu, _):
        clock = TokenClock(torch.device("cuda", 1), "runbook")

        def generate() -> None:
            gpu.kernel(0.003, device=1)  # prefill
            clock.tick()
            for _ in range(15):
                gpu.kernel(0.001, device=1)
                clock.tick()

        _, got = clock.run(generate)
        gpu.synchronize(1)
        t = clock.seconds(got)
    ttft, tpot = t[1], (t[-1] - t[1]) / (len(t) - 2)
    assert abs(ttft - 0.003) < 1e-12 and abs(tpot - 0.001) < 1e-12, t
    return f"TTFT {ttft * 1e3:.2f} ms (prefill 3 ms), TPOT {tpot * 1e3:.2f} ms (step 1 ms)"


@check("peak memory: a known allocation")
def peak() -> str:
    from pytest_llmperf.measure.memory import BlockPeak

    with fakes() as (gpu, _), BlockPeak(torch.device("cuda", 1)) as pm:
        gpu.kernel(1e-3, device=1, alloc=256 * MiB)
    assert pm.exact and pm.peak == 256 * MiB, (pm.peak, pm.exact)
    return f"{pm.peak / MiB:.0f} MiB of a 256 MiB allocation, exact"


@check("NVML energy: power x time")
def energy() -> str:
    from pytest_llmperf.measure.energy import EnergyMeter

    with fakes() as (_, nvml):
        meter = EnergyMeter(torch.device("cuda", 1))
        assert meter.available
        nvml.busy = True
        meter.start()
        time.sleep(0.6)
        joules, window = meter.stop()
        nvml.busy = False
    expected = 300.0 * window  # the fake board's busy power
    ratio = joules / expected
    assert abs(ratio - 1) < 0.1, (joules, window)  # one counter update (20 ms) of 0.6 s
    return f"{joules:.0f} J over {window:.2f} s, {ratio:.3f} of 300 W x time"


@check("a GPU without the energy counter: no energy, no error")
def no_counter() -> str:
    from pytest_llmperf.measure.energy import EnergyMeter, why_no_energy

    nvml = FakeNVML(devices=[{"bus_id": b, "energy": False} for b in BUS_IDS[:2]])
    with fakes(nvml):
        meter = EnergyMeter(torch.device("cuda", 1))
        meter.start()
        got = meter.stop()
        why = why_no_energy(torch.device("cuda", 1))
    assert got is None and not meter.available, got
    assert why and "NotSupported" in why, why
    return why


@check("doctor: NVML facts read under load")
def doctor_facts() -> str:
    from pytest_llmperf.doctor import gpu as doctor_gpu
    from pytest_llmperf.measure.energy import _nvml_handle

    nvml = FakeNVML(devices=[{"bus_id": b} for b in BUS_IDS[:2]], locked=1410)
    with fakes(nvml):
        handle = _nvml_handle(torch.device("cuda", 1))
        with doctor_gpu.LoadSampler(nvml, handle) as sampler:
            nvml.busy = True
            time.sleep(0.3)
            nvml.busy = False
        facts = doctor_gpu.nvml_facts(
            nvml, handle, changes=2, timeout_s=0.5, load=sampler.summary()
        )
    sm, locked = facts["gpu_sm_clock"], facts["gpu_application_clocks"]
    assert "1410" in sm["text"] and "load" in sm["text"], sm
    assert locked["value"]["locked"], locked
    return f"{sm['text']}; {locked['text']}"


@check("xdist: worker gw1 takes cuda:1, its lock named by the PCI bus id")
def xdist() -> str:
    from pytest_llmperf.measure import device as devices

    with fakes(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_XDIST_WORKER", "gw1")
        got = devices.worker_device(torch.device("cuda", 0))
        name = devices.lock_name(got)
    assert got == torch.device("cuda", 1), got
    assert BUS_IDS[1].replace(":", "-") in name, name
    return f"{got}, {name}"


@check("torchrun: each rank on its LOCAL_RANK's device")
def ranks() -> str:
    from pytest_llmperf.measure import device as devices

    got = []
    with fakes(), pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCHELASTIC_RUN_ID", "runbook")
        mp.setenv("LLMPERF_DEVICE", "cuda:0")  # what the launching session passes on
        for rank in (0, 1):
            mp.setenv("LOCAL_RANK", str(rank))
            devices.current_device.cache_clear()
            got.append(devices.make_current(devices.current_device()))
        devices.current_device.cache_clear()
    assert got == [torch.device("cuda", 0), torch.device("cuda", 1)], got
    return ", ".join(f"rank {r}: {d}" for r, d in enumerate(got))


# --------------------------------------------------------------------------- steps 2, 3

SUITE = """
import pytest
from gpu_fakes import active

MiB = 2**20


@pytest.mark.llmperf(rounds=10, warmup=2, items=4096)
def test_matmul(llmperf):
    gpu = active()
    llmperf(lambda: gpu.kernel(2.1e-3, device=llmperf.device, alloc=96 * MiB))


@pytest.mark.llmperf(rounds=10, warmup=2, bytes=2 * 2**30)
def test_copy(llmperf):
    gpu = active()
    llmperf(lambda: gpu.kernel(4.5e-4, device=llmperf.device, alloc=1024 * MiB))


@pytest.mark.llmperf(rounds=5, warmup=1)
def test_decode(llmperf):
    gpu = active()

    def generate():
        gpu.memcpy(128 * 4, device=llmperf.device)  # the prompt's tokens
        gpu.kernel(3e-3, device=llmperf.device, alloc=64 * MiB, name="prefill")
        yield 0
        for token in range(1, 16):
            gpu.kernel(1e-3, device=llmperf.device, name="decode_step")
            yield token

    llmperf.generation(generate, batch=1, prompt_tokens=128)
"""


def run_suite(work: Path, report: Path, *args: str) -> int:
    """The suite in-process on the fakes, measured on cuda:1; its exit code."""
    with fakes():
        return int(pytest.main([
            str(work / "test_suite.py"), "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
            f"--rootdir={work}", "--llmperf", "--llmperf-device=cuda:1",
            f"--llmperf-baselines={work / 'baselines'}", f"--llmperf-report={report}", *args,
        ]))  # fmt: skip


def steps_2_and_3(work: Path) -> None:
    (work / "test_suite.py").write_text(SUITE)
    code = run_suite(work, work / "record.json", "--llmperf-update-baselines")
    files = sorted(str(p.relative_to(work)) for p in (work / "baselines").rglob("*.json"))
    CHECKS.append(("2. record (--llmperf-update-baselines)", code == 0 and len(files) == 2,
                   f"exit {code}, wrote {', '.join(files)}"))  # fmt: skip
    for name in ("compare.json", "standard.md", "standard.html"):
        out = work / name
        code = run_suite(work, out)
        size = out.stat().st_size if out.exists() else 0
        CHECKS.append((f"3. compare with step 2 ({name})", code == 0 and size > 0,
                       f"exit {code}, {size:,} bytes"))  # fmt: skip
    results = json.loads((work / "compare.json").read_text())["results"]
    alarms = [r["nodeid"] for r in results if r.get("verdict") != "pass"]
    CHECKS.append(("3. false alarms on unchanged code", not alarms and len(results) == 3,
                   f"{len(alarms)} of {len(results)}: {alarms}"))  # fmt: skip
    decode = next(r for r in results if r["nodeid"].endswith("test_decode"))
    ttft, tpot = (decode["metrics"][k]["value"] for k in ("ttft", "tpot"))
    kernels = decode["work"][""]["kernels"]  # by name; the prompt's memcpy is no kernel
    # TTFT: the prompt's copy (20 ns) and the prefill's 3 ms.
    ok = abs(ttft - 3e-3) < 1e-6 and abs(tpot - 1e-3) < 1e-12
    ok = ok and kernels == {"prefill": 1, "decode_step": 15}
    CHECKS.append(("3. decode in the suite: TTFT, TPOT, work.kernels", ok,
                   f"{ttft * 1e3:.3f} ms, {tpot * 1e3:.3f} ms (3 and 1 ms of kernels); "
                   f"kernels {kernels}"))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="write the suite, baselines and reports here")
    args = parser.parse_args(argv)
    os.environ.pop("LLMPERF_DEVICE", None)
    for fn in STEP1:
        try:
            CHECKS.append((f"1. {fn.check_name}", True, fn()))  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - every check runs; each failure is listed
            CHECKS.append((f"1. {fn.check_name}", False, f"{type(exc).__name__}: {exc}"))  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="llmperf-fakes-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            steps_2_and_3(work)
        except Exception as exc:  # noqa: BLE001
            CHECKS.append(("2-3. the suite on the fakes", False, f"{type(exc).__name__}: {exc}"))
    print("\n| check | ok | what it saw |\n| --- | --- | --- |")
    for name, ok, detail in CHECKS:
        print(f"| {name} | {'ok' if ok else 'FAILED'} | {detail} |")
    failed = [name for name, ok, _ in CHECKS if not ok]
    print(f"\n{len(CHECKS) - len(failed)}/{len(CHECKS)} checks hold" + (
        f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
