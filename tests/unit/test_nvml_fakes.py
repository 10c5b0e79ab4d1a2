"""The GPU paths no GPU has run, against a fake NVML that keeps the real module's contract
(``nvml_fake.py``: real signatures, real error classes, symbols a driver may lack).

Each test drives the plugin's own code (the energy meter, doctor's NVML facts, its load
sampler, a whole doctor run with stand-in probes, the probe's timing loop) and fails
where the GPU would have shown the bug: energy on a GPU without the counter, a driver
without the clock-event-reasons symbol, application clocks read as type SM, clocks locked
with ``nvidia-smi -lgc`` reported unlocked, clocks read on an idle GPU after the probes,
and a probe on cuda:1 synchronizing cuda:0.
"""

from __future__ import annotations

import functools
import io
import json
import sys
import time
from types import SimpleNamespace

import pytest
import torch

real = pytest.importorskip("pynvml")  # nvidia-ml-py: the fake checks itself against it

from nvml_fake import FakeNVML, install, parse_bus_id  # noqa: E402

from pytest_llmperf.doctor import gpu, probe, report  # noqa: E402
from pytest_llmperf.doctor.cli import _parser  # noqa: E402
from pytest_llmperf.measure import energy  # noqa: E402

BUS0, BUS1 = "00000000:41:00.0", "00000000:C1:00.0"
CUDA0, CUDA1 = torch.device("cuda", 0), torch.device("cuda", 1)


class Clock:
    """Seconds that move only when told: the fake's energy counter runs on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def facts_of(fake: FakeNVML, load: dict | None = None) -> dict[str, dict]:
    """Doctor's NVML facts of the fake's first GPU (the energy interval left out: no polling)."""
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByPciBusId(fake.gpus[0].bus_id)
    return gpu.nvml_facts(fake, handle, changes=0, timeout_s=0.0, load=load)


def wait_for(condition, timeout_s: float = 2.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < end:
        time.sleep(0.001)


def sample_busy(fake: FakeNVML, samples: int = 3) -> dict:
    """doctor's LoadSampler run while the fake GPU is busy, until it has taken ``samples``
    whole samples under load; its summary."""
    sampler = gpu.LoadSampler(period_s=0.001)
    reads = "nvmlDeviceGetCurrentClocksEventReasons"
    with sampler.running({"device": "cuda:0", "pci_bus_id": fake.gpus[0].bus_id}):
        fake.busy = True
        n = fake.count(reads)
        wait_for(lambda: fake.count(reads) >= n + 2 * samples + 1)  # reasons read twice each
        fake.busy = False
    return sampler.summary()


# ----------------------------------------------------------------- the fake keeps the contract


def test_the_fake_checks_calls_against_the_real_module():
    fake = FakeNVML(missing=("nvmlDeviceGetHandleByPciBusId_v2",))
    with pytest.raises(real.NVMLError_Uninitialized):
        fake.nvmlDeviceGetHandleByIndex(0)  # before nvmlInit, as the real module
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(TypeError):
        fake.nvmlDeviceGetClockInfo(h)  # the real function takes (handle, type)
    with pytest.raises(TypeError):
        fake.nvmlDeviceGetTotalEnergyConsumption(h, 0)
    with pytest.raises(AttributeError):
        fake.nvmlDeviceGetClocksOfTheFuture  # noqa: B018 - not in the real module
    with pytest.raises(real.NVMLError_FunctionNotFound):  # the driver lacks the C symbol
        fake.nvmlDeviceGetHandleByPciBusId(BUS0)
    with pytest.raises(real.NVMLError_NotSupported):  # application clocks: not as type SM
        fake.nvmlDeviceGetApplicationsClock(h, real.NVML_CLOCK_SM)
    with pytest.raises(real.NVMLError_InvalidArgument):
        fake.nvmlDeviceGetClockInfo(object(), real.NVML_CLOCK_SM)
    assert fake.NVML_CLOCK_GRAPHICS == 0 and fake.NVMLError is real.NVMLError
    assert fake.nvmlDeviceGetApplicationsClock(h, real.NVML_CLOCK_GRAPHICS) == 1755
    assert parse_bus_id("0000:41:00.0") == parse_bus_id(b"00000000:41:00.0") == (0, 0x41, 0, 0)


def test_the_fake_gpu_idles_and_works():
    fake = FakeNVML(locked=1410, power_cap=True)
    fake.nvmlInit()
    h = fake.nvmlDeviceGetHandleByIndex(0)
    assert fake.nvmlDeviceGetCurrentClocksEventReasons(h) == 0x1
    assert fake.nvmlDeviceGetClockInfo(h, real.NVML_CLOCK_SM) == 345
    fake.busy = True
    assert fake.nvmlDeviceGetCurrentClocksEventReasons(h) == 0x2 | 0x4
    assert fake.nvmlDeviceGetClockInfo(h, real.NVML_CLOCK_SM) == 1410
    assert fake.nvmlDeviceGetApplicationsClock(h, real.NVML_CLOCK_GRAPHICS) == 1755  # default


# ----------------------------------------------------------------- 1. energy


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (
            {"energy": False},
            "NVML says this GPU has no total-energy counter (NVMLError_NotSupported)",
        ),
        ({"energy": real.NVML_ERROR_NO_PERMISSION}, "(NVMLError_NoPermission)"),
        ({"missing": ("nvmlDeviceGetTotalEnergyConsumption",)}, "(NVMLError_FunctionNotFound)"),
    ],
)
def test_energy_on_a_gpu_without_the_counter_is_absent_and_said(monkeypatch, setting, words):
    setting = dict(setting)
    missing = setting.pop("missing", ())
    fake = FakeNVML([{"bus_id": BUS0}, {"bus_id": BUS1, **setting}], missing=missing)
    install(monkeypatch, fake)
    meter = energy.EnergyMeter(CUDA1)
    assert not meter.available
    meter.start()  # never raises
    assert meter.stop() is None  # absent, never 0 J
    energy.EnergyMeter(CUDA1).start()
    assert fake.count("nvmlDeviceGetTotalEnergyConsumption") == 1  # checked once per device
    why = energy.why_no_energy(CUDA1)
    assert why is not None and why.startswith("energy not measured: ") and why.endswith(words)
    if not missing:  # the other GPU has its counter
        assert energy.why_no_energy(CUDA0) is None and energy.EnergyMeter(CUDA0).available


def test_energy_is_read_from_the_gpu_torch_uses_found_by_its_bus_id(monkeypatch):
    # CUDA_VISIBLE_DEVICES=1: torch's cuda:0 is NVML's device 1, which has no counter
    fake = FakeNVML([{"bus_id": BUS0}, {"bus_id": BUS1, "energy": False}])
    install(monkeypatch, fake)
    props = torch.cuda.get_device_properties
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: props(1))
    assert not energy.EnergyMeter(CUDA0).available
    assert "no total-energy counter" in energy.why_no_energy(CUDA0)


def test_no_bus_id_lookup_under_cuda_visible_devices_reads_no_other_gpu(monkeypatch):
    """A driver without the bus-id lookup: by index only where torch's indices are NVML's.
    Under CUDA_VISIBLE_DEVICES=1 torch's cuda:0 is NVML's device 1: index 0 is another GPU."""
    fake = FakeNVML(
        [{"bus_id": BUS0}, {"bus_id": BUS1}], missing=("nvmlDeviceGetHandleByPciBusId",)
    )
    install(monkeypatch, fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert energy.EnergyMeter(CUDA0).available  # the same indices: device 0 is cuda:0
    energy._nvml_handle.cache_clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert not energy.EnergyMeter(CUDA0).available
    assert "did not initialise or find this GPU" in energy.why_no_energy(CUDA0)


def test_energy_over_a_busy_window(monkeypatch):
    clock = Clock()
    fake = FakeNVML(clock=clock)
    install(monkeypatch, fake)
    meter = energy.EnergyMeter(CUDA0)
    fake.busy = True
    meter.start()
    clock.now += 1.0
    joules, _ = meter.stop()
    assert joules == pytest.approx(300.0, abs=300 * fake.energy_interval_s)  # 300 W for 1 s


def test_energy_read_failing_at_the_start_leaves_that_window_without_energy(monkeypatch):
    fake = FakeNVML()
    install(monkeypatch, fake)
    meter = energy.EnergyMeter(CUDA0)
    assert meter.available  # the up-front read worked
    fake.gpus[0].energy = real.NVML_ERROR_GPU_IS_LOST
    meter.start()  # no exception out of the measurement
    fake.gpus[0].energy = True
    assert meter.stop() is None  # not the counter's whole value, not 0
    meter.start()
    assert meter.stop() is not None  # the next window has energy again


# ----------------------------------------------------------------- 2. clock event reasons


def test_clock_reasons_fall_back_where_the_driver_lacks_the_event_reasons_symbol(monkeypatch):
    fake = FakeNVML(power_cap=True, missing=("nvmlDeviceGetCurrentClocksEventReasons",))
    install(monkeypatch, fake)
    fake.busy = True
    reasons = facts_of(fake)["gpu_clock_reasons"]
    assert reasons["value"] is not None, reasons["text"]
    assert reasons["value"]["mask"] == 0x4 and reasons["value"]["slowing"] is True
    assert fake.count("nvmlDeviceGetCurrentClocksThrottleReasons") == 1
    load = sample_busy(fake)  # the sampler under load falls back too
    assert load["reasons"] and set(load["reasons"]) == {0x4}, load


# ----------------------------------------------------------------- 3. application clocks


def test_application_clocks_are_read_as_graphics_clocks(monkeypatch):
    fake = FakeNVML()
    install(monkeypatch, fake)
    facts = facts_of(fake)
    sm = facts["gpu_sm_clock"]["value"]
    assert (sm["default_app_mhz"], sm["app_mhz"], sm["max_mhz"]) == (1755, 1755, 1980)
    assert "default 1755" in facts["gpu_sm_clock"]["text"]
    held = facts["gpu_application_clocks"]
    assert held["value"]["app_mhz"] == (1755, 2619) and held["value"]["locked"] is False


def test_application_clocks_set_with_nvidia_smi_ac_are_seen(monkeypatch):
    fake = FakeNVML(app_clocks=(2619, 1410))  # nvidia-smi -ac 2619,1410
    install(monkeypatch, fake)
    held = facts_of(fake)["gpu_application_clocks"]  # idle: the setting alone says it
    assert held["value"]["locked"] is True and held["value"]["app_clocks_set"] is True
    assert held["value"]["app_mhz"] == (1410, 2619)
    assert held["text"].startswith("held by a user setting (application clocks set)")


# ----------------------------------------------------------------- 4. locked clocks


def test_clocks_locked_with_nvidia_smi_lgc_show_as_locked(monkeypatch):
    fake = FakeNVML(locked=1410)  # nvidia-smi -lgc 1410,1410: application clocks untouched
    install(monkeypatch, fake)
    facts = facts_of(fake, load=sample_busy(fake))
    held = facts["gpu_application_clocks"]
    assert held["value"]["locked"] is True and held["value"]["app_clocks_set"] is False
    assert held["text"].startswith("held by a user setting (locked clocks"), held["text"]
    assert "reason (0x2) seen under load" in held["text"]
    reasons = facts["gpu_clock_reasons"]["value"]
    assert reasons["mask"] == 0x2 and reasons["slowing"] is False  # locked is no slowdown
    assert facts["gpu_sm_clock"]["value"]["current_mhz"] == 1410


def test_an_idle_reading_does_not_claim_unlocked_clocks(monkeypatch):
    fake = FakeNVML(locked=1410)
    install(monkeypatch, fake)
    held = facts_of(fake)["gpu_application_clocks"]  # nothing sampled under load
    assert held["value"]["locked"] is False
    assert held["text"].startswith("not seen locked: "), held["text"]
    assert held["text"].endswith("no user-defined clocks reason (0x2) read idle")


# ----------------------------------------------------------------- 5. facts under load


class FakeProbe:
    """A probe process that "runs the workload" by keeping the fake GPU busy while timed,
    until doctor's sampler has taken a whole sample of it under load."""

    fake: FakeNVML

    def __init__(self, threads: int | None) -> None:
        self.proc = SimpleNamespace(kill=lambda: None)
        self.ready: dict | None = None

    def wait_ready(self) -> dict:
        self.ready = {"pid": 1, "device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3",
                      "threads": 1, "cuda": True, "pci_bus_id": BUS0}  # fmt: skip
        return self.ready

    def time(self, warmup_s: float = 0.0, seconds: float = 0.0, rounds: int = 0) -> list[float]:
        reads = "nvmlDeviceGetCurrentClocksEventReasons"
        self.fake.busy = True
        n = self.fake.count(reads)
        wait_for(lambda: self.fake.count(reads) >= n + 3, timeout_s=0.1)  # one whole sample
        self.fake.busy = False
        return [0.010 + 0.0001 * (i % 3) for i in range(max(rounds, 5))]

    def close(self) -> None:
        pass


def test_doctor_reads_the_gpu_clocks_while_the_probes_run(monkeypatch):
    fake = FakeNVML([{"bus_id": BUS0, "processes": (4242,)}], locked=1410)
    install(monkeypatch, fake)
    monkeypatch.setattr(FakeProbe, "fake", fake, raising=False)
    monkeypatch.setattr(probe, "_Probe", FakeProbe)
    monkeypatch.setattr(report, "LoadSampler", functools.partial(gpu.LoadSampler, period_s=0.002))
    monkeypatch.delenv("LLMPERF_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu, "current_device", lambda: CUDA0)
    monkeypatch.setattr(gpu, "device_name", lambda d: "NVIDIA H100 80GB HBM3")
    facts = report.run(_parser().parse_args(["--quick"]))["facts"]
    sm = facts["gpu_sm_clock"]
    assert sm["value"]["under_load"] is True and sm["value"]["current_mhz"] == 1410, sm
    assert "under load" in sm["text"]
    assert "gpu idle" not in facts["gpu_clock_reasons"]["text"]
    assert facts["gpu_application_clocks"]["value"]["locked"] is True
    assert facts["gpu_other_processes"]["value"] == [4242]
    assert fake.busy is False  # the facts after the probes: an idle GPU, not what was read


def test_the_load_sampler_never_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    sampler = gpu.LoadSampler()
    with sampler.running({"device": "cuda:0", "pci_bus_id": BUS0}):
        pass
    assert sampler.summary()["why"].startswith("pynvml not importable: pip install")
    with sampler.running({"device": "cpu"}):
        pass
    assert sampler.summary()["why"] == "the workload ran on cpu"
    broken = ("nvmlDeviceGetClockInfo", "nvmlDeviceGetCurrentClocksEventReasons",
              "nvmlDeviceGetCurrentClocksThrottleReasons")  # fmt: skip
    fake = FakeNVML(missing=broken)
    install(monkeypatch, fake)
    load = sample_busy(fake)
    assert load["sm_mhz"] == [] and "NVMLError_FunctionNotFound" in load["errors"][0]
    facts = facts_of(fake, load=load)
    assert facts["gpu_sm_clock"]["text"].startswith("unknown (NVML: NVMLError_FunctionNotFound")
    held = facts["gpu_application_clocks"]  # the application clocks still tell
    assert held["value"]["locked"] is False and "clock event reasons unknown" in held["text"]


# ----------------------------------------------------------------- 6. the probe's device


class FakeAccelerator:
    """torch.accelerator on a two-GPU machine whose current device is cuda:0."""

    def __init__(self) -> None:
        self.current, self.synced = 0, []

    def set_device_index(self, index: int) -> None:
        self.current = index

    def synchronize(self, device=None) -> None:
        self.synced.append(device)


def test_the_probe_times_and_synchronizes_the_device_it_runs_on(monkeypatch, capsys):
    from pytest_llmperf.measure import device as dev
    from pytest_llmperf.models import transformer_lm as tl

    acc = FakeAccelerator()
    ran_on: list[int] = []
    model_call = lambda idx: ran_on.append(acc.current)  # noqa: E731
    monkeypatch.setattr(dev, "current_device", lambda: CUDA1)  # LLMPERF_DEVICE=cuda:1
    monkeypatch.setattr(dev, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(dev, "pci_bus_id", lambda d: BUS1)
    monkeypatch.setattr(tl, "build", lambda cfg, device: SimpleNamespace(eval=lambda: model_call))
    monkeypatch.setattr(tl, "random_batch", lambda cfg, b, d: torch.zeros(b, 9, dtype=torch.long))
    for name in ("set_device_index", "synchronize"):
        monkeypatch.setattr(torch.accelerator, name, getattr(acc, name))
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"rounds": 3}) + "\n"))
    assert probe._probe_main(None) == 0
    replies = [json.loads(line.split(" ", 1)[1]) for line in capsys.readouterr().out.splitlines()]
    assert replies[0]["device"] == "cuda:1" and replies[0]["pci_bus_id"] == BUS1
    assert len(replies[1]["samples"]) == 3
    assert ran_on and set(ran_on) == {1}  # the model ran with its device current
    assert acc.synced == [1] * len(ran_on)  # each call synchronized cuda:1, by name
