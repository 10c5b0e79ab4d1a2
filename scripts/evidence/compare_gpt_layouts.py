"""``--llmperf-compare`` on a small GPT laid out as users lay out real projects.

A user project (a git repository in a temporary directory) holds a nanoGPT-style
model in ``python/tinygpt/`` and one performance test of its greedy decode. The
reference commit decodes with a KV cache; the candidate (the working tree) has
the cache switched off, as a refactor might leave it: every step runs the whole
sequence again. The package is importable only through a path into the working
tree, the way the issue found the reference leaking:

- ``env``: ``PYTHONPATH=$PWD/python``;
- ``ini``: an absolute ``pythonpath`` in ``pyproject.toml``.

Each layout is run from outside the repository with an absolute test path, and
must fail with the decode regression (its work diff proves the reference ran
REF's code). A null run (the candidate differs from REF by a comment only) must
pass. Prints one line per run with the verdict line and the wall time.

    python scripts/evidence/compare_gpt_layouts.py            # about two minutes on 2 cores
    python scripts/evidence/compare_gpt_layouts.py --quick    # the env layout's regression only

Exits 1 when a run's verdict is not the one expected.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

MODEL = '''
"""A tiny GPT (nanoGPT's shape): greedy decode, with or without a KV cache."""
import math

import torch
import torch.nn.functional as F
from torch import nn

USE_KV_CACHE = True


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, cache=None):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab=512, d=128, heads=4, layers=4, block=256):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx, start=0, caches=None):
        pos = torch.arange(start, start + idx.shape[1])
        x = self.tok(idx) + self.pos(pos)
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if caches is None else caches[i])
        return self.head(self.ln(x))


@torch.no_grad()
def decode(model, idx, new_tokens):
    """Greedy decode of ``new_tokens`` tokens after the prompt ``idx``."""
    caches = [[] for _ in model.blocks] if USE_KV_CACHE else None
    logits = model(idx, 0, caches)
    for _ in range(new_tokens):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        if USE_KV_CACHE:
            logits = model(nxt, idx.shape[1], caches)
        else:
            logits = model(torch.cat([idx, nxt], 1))
        idx = torch.cat([idx, nxt], 1)
    return idx
'''

TEST = """
import pytest
import torch

from tinygpt.model import GPT, decode


@pytest.mark.llmperf(warmup=2, max_time=1.0, items=32)
def test_decode_32_tokens(llmperf):
    torch.manual_seed(0)
    model = GPT().eval()
    prompt = torch.randint(0, 512, (1, 64))
    llmperf(decode, model, prompt, 32)
"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def project(base: Path, layout: str, candidate) -> tuple[Path, dict[str, str]]:
    root = base / f"{layout}-{candidate.__name__}"
    (root / "python" / "tinygpt").mkdir(parents=True)
    (root / "tests").mkdir()
    ini = f'pythonpath = ["{root / "python"}"]\n' if layout == "ini" else ""
    (root / "pyproject.toml").write_text(f"[tool.pytest.ini_options]\n{ini}")
    (root / "python/tinygpt/__init__.py").write_text("")
    (root / "python/tinygpt/model.py").write_text(textwrap.dedent(MODEL))
    (root / "tests/test_decode.py").write_text(textwrap.dedent(TEST))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "reference: decode with a KV cache")
    model = root / "python/tinygpt/model.py"
    model.write_text(candidate(model.read_text()))
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    if layout == "env":
        env["PYTHONPATH"] = os.pathsep.join(
            [str(root / "python"), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    return root, env


def no_cache(text: str) -> str:
    return text.replace("USE_KV_CACHE = True", "USE_KV_CACHE = False")


def comment_only(text: str) -> str:
    return text + "\n# a comment: the same code\n"


def run(base: Path, layout: str, candidate, expect: str) -> bool:
    root, env = project(base, layout, candidate)
    elsewhere = base / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--llmperf-compare=main"]
        + ["--llmperf-threads=1", str(root / "tests")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.perf_counter() - start
    out = done.stdout
    verdict = next(
        (x.strip() for x in out.splitlines() if re.match(r"\s+REGRESSION (time|throughput)", x)), ""
    )
    work = next((x.strip() for x in out.splitlines() if re.match(r"\s+REGRESSION work", x)), "")
    counts = next((x for x in reversed(out.splitlines()) if " in " in x and "=" in x), "")
    ok = {"fail": done.returncode == 1 and bool(verdict), "pass": done.returncode == 0}[expect]
    print(f"{layout:4} {candidate.__name__:12} expect {expect}: {'OK' if ok else 'WRONG'} "
          f"(exit {done.returncode}, {wall:.0f} s) {counts.strip('= ')}")  # fmt: skip
    for line in (verdict, work[:160]):
        if line:
            print("     ", line)
    if not ok:
        print(out[-3000:], done.stderr[-2000:])
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run: the env layout's regression")
    quick = ap.parse_args().quick
    runs = [("env", no_cache, "fail"), ("ini", no_cache, "fail"), ("env", comment_only, "pass")]
    print("load:", os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="llmperf-gpt-layouts-") as tmp:
        base = Path(tmp)
        results = [run(base, *r) for r in runs[: 1 if quick else None]]
    print("load:", os.getloadavg())
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
