#!/usr/bin/env python
"""Do token marks from real libraries give the TTFT a hand-timed loop gives?

Evidence for ``llmperf.streamer()`` and ``llmperf.tick_after`` (docs/writing-tests.md,
"Marking tokens with the libraries you have"), from real pytest runs (subprocesses)
of a project with a tiny transformers Llama (random weights, nothing downloaded):

- ``test_streamer``: ``model.generate(ids, streamer=llmperf.streamer())``;
- ``test_tick_streamer``: a streamer whose ``put`` is ``llmperf.tick`` (what a user
  writes first: it marks the prompt, which ``generate`` puts before any work);
- ``test_gpt_fast_stock``: a gpt-fast-shaped loop (prefill, then decode steps that
  call ``callback``) with ``callback=llmperf.tick`` alone;
- ``test_gpt_fast_marked``: the same with its prefill wrapped by ``llmperf.tick_after``.

Before each measured round (``setup=``, outside the timing) one generation of the
same kind is timed by hand: ``perf_counter`` before the call and at its first
generated token (a streamer of its own that skips the prompt; for the loop, when
its prefill returns). The two alternate in one process, side by side, and the
hand-timed median is recorded beside the test's TTFT (``hand_ttft``).

It prints each test's TTFT, the hand-timed one and their ratio (medians over the
runs), the notes the plugin gave, and each run's ratio for the streamer.

    python scripts/evidence/streamer_ttft.py            # 5 runs
    python scripts/evidence/streamer_ttft.py --quick    # 1 run, fewer rounds

Exits 1 when a note is missing or misplaced, or (not ``--quick``, which asserts no
timing) the streamer's TTFT is not within 10% of the hand-timed one in a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TEST_MODULE = """
import statistics
import time

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

PROMPT, NEW, ROUNDS = 128, 16, {rounds}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=512,
                         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                         max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


IDS = torch.randint(1024, (1, PROMPT), generator=torch.Generator().manual_seed(0))


def generate(model, streamer, n=NEW):
    return model.generate(IDS, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                          streamer=streamer)


@torch.inference_mode()
def prefill(model, ids):
    out = model(ids, use_cache=True)
    return out.logits[:, -1].argmax(-1, keepdim=True), out.past_key_values


@torch.inference_mode()
def gpt_fast_generate(model, n, callback=lambda tok: tok):
    tok, past = prefill(model, IDS)  # gpt-fast: the prefill's token, no callback
    for _ in range(n - 1):
        out = model(tok, past_key_values=past, use_cache=True)
        tok, past = out.logits[:, -1].argmax(-1, keepdim=True), out.past_key_values
        callback(tok)
    return tok


class HandStreamer:  # a user's own TTFT: the time of the first put after the prompt
    def __init__(self):
        self.puts, self.first = 0, None

    def put(self, value):
        self.puts += 1
        if self.puts == 2:
            self.first = time.perf_counter()

    def end(self):
        pass


def hf_by_hand(model):
    streamer = HandStreamer()
    t0 = time.perf_counter()
    generate(model, streamer)
    return streamer.first - t0


RAW_PREFILL = prefill


def loop_by_hand(model):
    stamp = []

    def stamped(*args):
        out = RAW_PREFILL(*args)
        stamp.append(time.perf_counter())
        return out

    current = globals()["prefill"]  # llmperf.tick_after's wrapper, in test_gpt_fast_marked
    globals()["prefill"] = stamped
    try:
        t0 = time.perf_counter()
        gpt_fast_generate(model, NEW)
    finally:
        globals()["prefill"] = current
    return stamp[0] - t0


def measure(llmperf, fn, args, kwargs, by_hand):
    # a hand-timed generation before each measured one (setup runs outside the timing):
    # the two alternate in one process, side by side
    hand = []
    llmperf.generation(fn, args=args, kwargs=kwargs, prompt_tokens=PROMPT,
                       setup=lambda: hand.append(by_hand()))
    llmperf.record("hand_ttft", statistics.median(hand), "s", kind="time")


class TickStreamer:
    def __init__(self, tick):
        self.put, self.end = tick, lambda: None


@pytest.mark.llmperf(warmup=3, rounds=ROUNDS)
def test_streamer(llmperf, model):
    measure(llmperf, generate, (model, llmperf.streamer()), {{}}, lambda: hf_by_hand(model))


@pytest.mark.llmperf(warmup=3, rounds=ROUNDS)
def test_tick_streamer(llmperf, model):
    streamer = TickStreamer(llmperf.tick)
    measure(llmperf, generate, (model, streamer), {{}}, lambda: hf_by_hand(model))


@pytest.mark.llmperf(warmup=3, rounds=ROUNDS)
def test_gpt_fast_stock(llmperf, model):
    measure(llmperf, gpt_fast_generate, (model, NEW), {{"callback": llmperf.tick}},
            lambda: loop_by_hand(model))


@pytest.mark.llmperf(warmup=3, rounds=ROUNDS)
def test_gpt_fast_marked(llmperf, model, monkeypatch):
    monkeypatch.setitem(globals(), "prefill", llmperf.tick_after(prefill))
    measure(llmperf, gpt_fast_generate, (model, NEW), {{"callback": llmperf.tick}},
            lambda: loop_by_hand(model))
"""

#: The note each measured test must get in its first-mark words ("": none).
EXPECT = {
    "test_streamer": "",
    "test_tick_streamer": "before the prefill's work",
    "test_gpt_fast_stock": "prefill's own token was not marked",
    "test_gpt_fast_marked": "",
}


def one_run(root: Path, i: int) -> dict:
    report = root / f"report_{i}.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    cmd = [sys.executable, "-m", "pytest", "--llmperf", "-q", "-p", "no:cacheprovider"]
    cmd += [f"--llmperf-report={report}", f"--llmperf-baselines={root}/b"]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"run {i}: pytest exited {done.returncode}")
    results = {r["nodeid"].split("::")[-1]: r for r in json.loads(report.read_text())["results"]}
    out = {"tests": {}}
    for test in EXPECT:
        r = results[test]
        ttft, hand = r["metrics"]["ttft"]["value"], r["metrics"]["hand_ttft"]["value"]
        notes = [n for n in r["notes"] if "first token mark" in n]
        out["tests"][test] = {
            "ttft": ttft,
            "hand": hand,
            "ratio": ttft / hand,
            "tokens": r["metrics"]["output_tokens"]["value"],
            "notes": notes,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run of 5 rounds per test")
    ap.add_argument("--runs", type=int, default=None, help="pytest runs (default 5)")
    ap.add_argument("--out", type=Path, default=None, help="the JSON results' file")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    out_path = args.out or Path(f"/tmp/streamer_ttft{'_quick' if args.quick else ''}.json")
    with tempfile.TemporaryDirectory(prefix="streamer_ttft_") as tmp:
        root = Path(tmp)
        rounds = 5 if args.quick else 20
        (root / "test_tokens.py").write_text(TEST_MODULE.format(rounds=rounds))
        (root / "pytest.ini").write_text("[pytest]\n")
        all_runs = [one_run(root, i) for i in range(runs)]
    failures = []
    print("| test | marks | TTFT | hand-timed TTFT | ratio | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for test, said in EXPECT.items():
        rows = [r["tests"][test] for r in all_runs]
        ttft, hand, ratio = (
            statistics.median(r[k] for r in rows) for k in ("ttft", "hand", "ratio")
        )
        notes = {n for r in rows for n in r["notes"]}
        shown = "; ".join(sorted(notes))[:120] or "-"
        print(
            f"| {test} | {rows[0]['tokens']:.0f} | {ttft * 1e3:.2f} ms | {hand * 1e3:.2f} ms | "
            f"{ratio:.3f} | {shown} |"
        )
        if bool(said) != bool(notes) or (said and not all(said in n for n in notes)):
            failures.append(f"{test}: notes {sorted(notes)}, expected {said!r}")
    ratios = [r["tests"]["test_streamer"]["ratio"] for r in all_runs]
    print(
        "per run, the streamer's TTFT / the hand-timed one:", ", ".join(f"{x:.3f}" for x in ratios)
    )
    worst = max(abs(x - 1) for x in ratios)
    if worst > 0.10 and not args.quick:  # a quick run (CI's) asserts no timing
        failures.append(f"the streamer's TTFT is {worst:.1%} from the hand-timed one")
    out_path.write_text(json.dumps(all_runs, indent=1))
    print(f"raw results: {out_path}")
    for line in failures:
        print(f"FAIL: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
