"""`python -m wlnet.kernels [--forget] [--measure]`: the kernel choices kept for this machine
(`choice`); --forget first drops the table, --measure then measures the classes of a few common
shapes (training and forward, every cell)."""

from __future__ import annotations

import sys

import torch

from . import cells, choice, native

SHAPES = ((64, 8, 2, 20, True), (64, 5, 11, 80, False), (64, 32, 16, 32, False), (64, 50, 32, 128, False),
          (64, 32, 16, 256, False), (64, 32, 16, 1024, False), (1, 8, 2, 20, False))  # (B, T, k, n, ragged)


def main(argv) -> None:
    if "--forget" in argv:
        choice.forget()
    if "--measure" in argv and native.get() is not None:
        choice.BUDGET = float("inf")
        for cell in cells.CELLS:
            for B, T, k, n, ragged in SHAPES:
                for grad in (True, False):
                    choice.choose(cell, torch.float32, n, B, T, k, ragged, grad)
    print(choice.describe())


if __name__ == "__main__":
    main(sys.argv[1:])
