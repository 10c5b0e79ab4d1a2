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
- ``test_gpt_fast_marked``: the same with its prefill wrapped by ``llmperf.tick_after``;
- ``test_by_hand``: the same model's TTFT timed by hand with ``perf_counter`` around
  ``generate(ids, max_new_tokens=1)`` and around the loop's prefill, each the median
  of 20 calls after 3 warm-up calls, recorded with ``llmperf.record``.

Every test runs in each process (one thread, as the plugin measures on the CPU), so
each run gives ratios taken side by side. It prints each run's TTFTs, the ratio of
each to the hand-timed one, the notes the plugin gave, and the medians over runs.

    python scripts/evidence/streamer_ttft.py            # 5 runs
    python scripts/evidence/streamer_ttft.py --quick    # 1 run, fewer rounds

Exits 1 when a note is missing or misplaced, or (not ``--quick``, which asserts no
timing) the streamer's TTFT is not within 10% of the hand-timed ``generate`` in a run.
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


class TickStreamer:
    def __init__(self, tick):
        self.put, self.end = tick, lambda: None


@pytest.mark.llmperf(warmup=2, rounds=ROUNDS)
def test_streamer(llmperf, model):
    llmperf.generation(generate, args=(model, llmperf.streamer()), prompt_tokens=PROMPT)


@pytest.mark.llmperf(warmup=2, rounds=ROUNDS)
def test_tick_streamer(llmperf, model):
    llmperf.generation(generate, args=(model, TickStreamer(llmperf.tick)), prompt_tokens=PROMPT)


@pytest.mark.llmperf(warmup=2, rounds=ROUNDS)
def test_gpt_fast_stock(llmperf, model):
    llmperf.generation(gpt_fast_generate, args=(model, NEW), kwargs={{"callback": llmperf.tick}},
                       prompt_tokens=PROMPT)


@pytest.mark.llmperf(warmup=2, rounds=ROUNDS)
def test_gpt_fast_marked(llmperf, model, monkeypatch):
    monkeypatch.setitem(globals(), "prefill", llmperf.tick_after(prefill))
    llmperf.generation(gpt_fast_generate, args=(model, NEW), kwargs={{"callback": llmperf.tick}},
                       prompt_tokens=PROMPT)


def by_hand(fn, n=20):
    for _ in range(3):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_by_hand(llmperf, model):
    torch.set_num_threads(1)  # as the plugin measures on the CPU
    llmperf.record("generate_1", by_hand(lambda: generate(model, None, 1)), "s", kind="time")
    llmperf.record("prefill", by_hand(lambda: prefill(model, IDS)), "s", kind="time")
"""

#: What each measured test's TTFT is compared with, and the note it must get (or not).
EXPECT = {
    "test_streamer": ("generate_1", ""),
    "test_tick_streamer": ("generate_1", "before the prefill's work"),
    "test_gpt_fast_stock": ("prefill", "prefill's own token was not marked"),
    "test_gpt_fast_marked": ("prefill", ""),
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
    hand = {k: m["value"] for k, m in results["test_by_hand"]["metrics"].items()}
    out = {"hand": hand, "tests": {}}
    for test, (against, _) in EXPECT.items():
        r = results[test]
        ttft = r["metrics"]["ttft"]["value"]
        notes = [n for n in r["notes"] if "first token mark" in n]
        out["tests"][test] = {
            "ttft": ttft,
            "ratio": ttft / hand[against],
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
    print("| test | marks | TTFT (median of runs) | / hand-timed | against | note |")
    print("| --- | --- | --- | --- | --- | --- |")
    for test, (against, said) in EXPECT.items():
        rows = [r["tests"][test] for r in all_runs]
        ratio = statistics.median(r["ratio"] for r in rows)
        ttft = statistics.median(r["ttft"] for r in rows)
        notes = {n for r in rows for n in r["notes"]}
        shown = "; ".join(sorted(notes))[:120] or "-"
        print(
            f"| {test} | {rows[0]['tokens']:.0f} | {ttft * 1e3:.2f} ms | {ratio:.3f} | "
            f"{against} by hand | {shown} |"
        )
        if bool(said) != bool(notes) or (said and not all(said in n for n in notes)):
            failures.append(f"{test}: notes {sorted(notes)}, expected {said!r}")
    hand = {k: statistics.median(r["hand"][k] for r in all_runs) for k in all_runs[0]["hand"]}
    print(
        f"\nby hand (median of runs): {', '.join(f'{k} {v * 1e3:.2f} ms' for k, v in hand.items())}"
    )
    print("per run, streamer / hand-timed generate(max_new_tokens=1):", end=" ")
    print(", ".join(f"{r['tests']['test_streamer']['ratio']:.3f}" for r in all_runs))
    worst = max(abs(r["tests"]["test_streamer"]["ratio"] - 1) for r in all_runs)
    if worst > 0.10 and not args.quick:  # a quick run (CI's) asserts no timing
        failures.append(f"the streamer's TTFT is {worst:.1%} from the hand-timed one")
    out_path.write_text(json.dumps(all_runs, indent=1))
    print(f"raw results: {out_path}")
    for line in failures:
        print(f"FAIL: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
