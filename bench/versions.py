"""The LSTM layer of this checkout against the same layer at another commit, in one run.

Run: .venv/bin/python bench/versions.py [COMMIT]   (default: HEAD~1)

The other commit is checked out into a temporary git worktree. Each round starts one worker
process per version (order alternating round by round), each timing the same calls through
the public API only: a forward of 64 sequences of length 50 (n = 128, k = 32, numpy in), a
forward+backward (torch in, requires_grad), the same with Dropout (all four methods, Train
mode), a ragged batch, and the tiny call `layer([[1, 2], [3, 4], [5, 6]])`. The ratio printed
is this checkout's time over the other's: the median of the rounds' paired ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time, statistics
import numpy as np, torch
import wlnet as w
torch.manual_seed(0)
B, T, k, n = 64, 50, 32, 128
layer = w.NetInitialize(w.LongShortTermMemoryLayer(n, Input=("Varying", k)))
drop = w.NetInitialize(w.LongShortTermMemoryLayer(n, Input=("Varying", k), Dropout=dict.fromkeys(
    ("VariationalWeights", "VariationalInput", "VariationalState", "StateUpdate"), 0.3)))
tiny = w.NetInitialize(w.LongShortTermMemoryLayer(3, Input=("Varying", 2)))
x = torch.randn(B, T, k, generator=torch.Generator().manual_seed(0))
xn = x.numpy()
rng = np.random.default_rng(0)
ragged = [rng.standard_normal((int(t), k)).astype(np.float32) for t in rng.integers(10, 51, B)]

def train(net, **opts):
    xg = x.clone().requires_grad_()
    net(xg, **opts).sum().backward()

cases = {
    "forward (numpy in)": (lambda: layer(xn), 3),
    "forward+backward (torch in)": (lambda: train(layer), 2),
    "ragged forward (list of arrays)": (lambda: layer(ragged), 3),
    "dropout, all four, Train forward+backward": (lambda: train(drop, NetEvaluationMode="Train"), 2),
    "tiny call": (lambda: tiny([[1, 2], [3, 4], [5, 6]]), 200),
}
out = {}
for name, (f, inner) in cases.items():
    for _ in range(3):
        f()
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(inner):
            f()
        times.append((time.perf_counter() - t0) / inner)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def worker(src: Path, extensions: str | None = None) -> dict:
    # the other commit's native kernels are built into their own directory: built into the shared
    # one, they would replace this checkout's build (and every other process's on the machine)
    env = dict(os.environ, PYTHONPATH=str(src), **({"TORCH_EXTENSIONS_DIR": extensions} if extensions else {}))
    res = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(commit: str, rounds: int = 6) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(other), commit], check=True)
        try:
            label = subprocess.run(["git", "-C", str(other), "log", "-1", "--format=%h %s"], capture_output=True,
                                   text=True, check=True).stdout.strip()
            print(f"this checkout vs {label[:90]}")
            ratios: dict = {}
            best: dict = {}
            for r in range(rounds):
                order = [("this", ROOT / "src", None), ("other", other / "src", str(Path(tmp) / "extensions"))]
                got = dict((who, worker(src, ext)) for who, src, ext in (order if r % 2 == 0 else order[::-1]))
                for case, t in got["this"].items():
                    ratios.setdefault(case, []).append(t / got["other"][case])
                    b = best.setdefault(case, [t, got["other"][case]])
                    b[0], b[1] = min(b[0], t), min(b[1], got["other"][case])
            for case, rs in ratios.items():
                this, that = best[case]
                unit, scale = ("ms", 1e3) if that > 1e-3 else ("µs", 1e6)
                print(f"{case:<44} this {this * scale:8.2f} {unit}   other {that * scale:8.2f} {unit}   "
                      f"ratio (median of {len(rs)} paired) {statistics.median(rs):5.3f}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "HEAD~1")
