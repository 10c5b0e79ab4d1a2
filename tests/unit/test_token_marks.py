"""Token marks that fit the libraries users have: transformers' streamer (the prompt comes
first), gpt-fast's callback (decode tokens only), and the note where the first mark
falls in the wrong place of the work."""

from __future__ import annotations

import json

import pytest

from pytest_llmperf.measure.mark_checks import first_mark_note

NAMES = ["aten.embedding", "aten.mm", "aten.tanh", "aten.mm", "aten.argmax"] * 20


def forward(rows: int, names=NAMES):
    return [(name, (rows, 64)) for name in names]


def _marks(first, steps=6):
    """(marks, trace) of a generation: ``first`` before the first mark, then decode steps."""
    trace = list(first)
    marks = [0, len(trace)]
    for _ in range(steps):
        trace += forward(1)
        marks.append(len(trace))
    return marks, trace


STEP = len(NAMES)
SETUP = [("aten.arange", (32,)), ("aten.ones", (1, 32))]


@pytest.mark.parametrize(
    ("first", "said"),
    [
        (forward(32), ""),  # the prefill marked: one forward over the prompt
        (SETUP * 12 + forward(32), ""),  # HF generate's prefill: 1.2 steps measured
        (forward(32) + forward(32), ""),  # a chunked prefill, marked: two forwards, no step
        (SETUP, "before the prefill's work"),  # the prompt marked
        ([], "before the prefill's work"),
        (forward(32) + forward(1), "the prefill's own token was not marked"),  # gpt-fast
    ],
)
def test_where_the_first_mark_falls_in_the_work(first, said):
    marks, trace = _marks(first)
    note = first_mark_note(marks, trace, "decode: ")
    assert (said in note) if said else note == "", note
    if said:
        assert note.startswith(f"decode: the first token mark came after {len(first):,} PyTorch")


def test_too_few_marks_to_tell_say_nothing():
    marks, trace = _marks(forward(32) + forward(1), steps=1)
    assert first_mark_note(marks, trace) == ""
    assert first_mark_note([0, 5, 5, 5, 5], [("aten.mm", (1,))] * 5) == ""  # later: no work


GPT_FAST = """
import sys
import pytest
import torch

torch.manual_seed(0)
W = [torch.randn(64, 64) / 8 for _ in range(4)]
HEAD = torch.randn(64, 100)
EMB = torch.randn(100, 64)
PROMPT = 32


def model(tokens):
    h = EMB[tokens]
    for w in W:
        h = torch.tanh(h @ w)
    return h[:, -1] @ HEAD


def prefill(tokens):
    return model(tokens).argmax(-1, keepdim=True)


def decode_one(tok):
    return model(tok).argmax(-1, keepdim=True)


def generate(prompt, n, callback=lambda tok: tok):
    # gpt-fast's generate: the prefill's token, then n - 1 decode tokens, and the callback
    # called in decode_n_tokens only
    tok = prefill(prompt)
    for _ in range(n - 1):
        tok = decode_one(tok)
        callback(tok)
    return tok


@pytest.mark.llmperf(warmup=1, rounds=3)
def test_stock(llmperf):
    prompt = torch.randint(100, (1, PROMPT))
    llmperf.generation(generate, args=(prompt, 16), kwargs={"callback": llmperf.tick},
                       prompt_tokens=PROMPT)


@pytest.mark.llmperf(warmup=1, rounds=3)
def test_prefill_marked(llmperf, monkeypatch):
    prompt = torch.randint(100, (1, PROMPT))
    monkeypatch.setattr(sys.modules[__name__], "prefill", llmperf.tick_after(prefill))
    llmperf.generation(generate, args=(prompt, 16), kwargs={"callback": llmperf.tick},
                       prompt_tokens=PROMPT)
"""


def _tokens(pytester, *args):
    result = pytester.runpytest("--llmperf", f"--llmperf-report={pytester.path}/r.json", *args)
    report = json.loads((pytester.path / "r.json").read_text())
    tests = {t["nodeid"].split("::")[-1]: t for t in report["results"]}
    return result, tests


def _marked(pytester, source: str, expect: dict[str, tuple[int, tuple[str, ...]]]) -> None:
    """Run ``source``'s tests; each must pass with its count of marked tokens and a
    first-mark note holding every given phrase (none where none are given)."""
    pytester.makepyfile(test_marks=source)
    result, tests = _tokens(pytester)
    result.assert_outcomes(passed=len(expect))
    for test, (tokens, said) in expect.items():
        assert tests[test]["metrics"]["output_tokens"]["value"] == tokens, test
        notes = [n for n in tests[test]["notes"] if "first token mark" in n]
        assert len(notes) == bool(said) and all(w in notes[0] for w in said), (test, notes)


def test_gpt_fast_stock_pattern_gets_the_note_and_tick_after_marks_its_prefill(pytester):
    """Stock gpt-fast marks decode tokens only: 15 marks for 16 tokens and the note; with
    its prefill wrapped by ``llmperf.tick_after`` all 16 are marked and nothing is said."""
    _marked(
        pytester,
        GPT_FAST,
        {
            "test_stock": (15, ("its last operators are a decode step's", "tick_after")),
            "test_prefill_marked": (16, ()),
        },
    )


HF = """
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

PROMPT, NEW = 32, 8


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()  # random weights: nothing downloaded


def run(llmperf, model, streamer):
    ids = torch.randint(256, (1, PROMPT))
    llmperf.generation(lambda: model.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW,
                                              do_sample=False, streamer=streamer),
                       prompt_tokens=PROMPT)


class TickStreamer:  # what a user writes first: put() is llmperf.tick
    def __init__(self, tick):
        self.put, self.end = tick, lambda: None


@pytest.mark.llmperf(warmup=1, rounds=3)
def test_streamer(llmperf, model):
    run(llmperf, model, llmperf.streamer())


@pytest.mark.llmperf(warmup=1, rounds=3)
def test_tick_streamer(llmperf, model):
    run(llmperf, model, TickStreamer(llmperf.tick))
"""


def test_transformers_streamer_marks_generated_tokens_not_the_prompt(pytester):
    """Real transformers ``generate``: the prompt is put first. ``llmperf.streamer()``
    marks the 8 generated tokens; a streamer whose put is ``llmperf.tick`` marks 9, the
    first before any work, and gets the note."""
    pytest.importorskip("transformers", reason="transformers is in the dev extra")
    _marked(
        pytester,
        HF,
        {
            "test_streamer": (8, ()),
            "test_tick_streamer": (9, ("before the prefill's work", "llmperf.streamer()")),
        },
    )


STREAMED = """
import pytest


@pytest.mark.llmperf(warmup=0, rounds=2)
def test_put_outside(llmperf):
    llmperf.streamer().put([1, 2, 3])


@pytest.mark.llmperf(warmup=0, rounds=2)
def test_no_prompt(llmperf):
    streamer = llmperf.streamer(skip_prompt=False)

    def loop():
        for token in range(4):
            streamer.put(token)
        streamer.end()

    llmperf.generation(loop)
"""


def test_a_streamer_outside_a_generation_says_so_and_skip_prompt_false_marks_every_put(pytester):
    pytester.makepyfile(test_streamed=STREAMED)
    result, tests = _tokens(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*llmperf.tick() called outside a generation*"])
    assert tests["test_no_prompt"]["metrics"]["output_tokens"]["value"] == 4
