"""Three sequence models beyond the page (scenarios 12-14): a character language model, an
encoder-decoder that reverses digit strings, and a bidirectional tagger.

Run with `python -m wlnet.examples 12 13 14`. Each shows a live progress bar, prints what the
trained net does on held-out data, and saves its loss plot under out/ in the current directory.
"""

from __future__ import annotations

import importlib
import inspect
import math
import random
import time
from collections import Counter

import numpy as np

from .. import (
    CrossEntropyLossLayer,
    DigitCharacter,
    EmbeddingLayer,
    LinearLayer,
    LongShortTermMemoryLayer,
    NetBidirectionalOperator,
    NetChain,
    NetDecoder,
    NetEncoder,
    NetExtract,
    NetGraph,
    NetMapOperator,
    NetPort,
    NetStateObject,
    SequenceMostLayer,
    SequenceRestLayer,
    SoftmaxLayer,
    UnitVectorLayer,
)
from ..core.symbols import All
from ..nets.measure import NetMeasurements
from ..train.api import NetTrain
from .applications import _save
from .registry import scenario

# ---- 12: a character-level language model -------------------------------------------------------

LM_MODULES = ("textwrap", "heapq", "bisect", "fnmatch", "shlex", "glob", "colorsys", "calendar", "string", "queue")
LM_ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))  # newline and printable ASCII


def language_text(modules=LM_MODULES) -> str:
    """The source of some modules of Python's standard library (on every machine, not ours),
    with characters outside the alphabet written as "?"."""
    text = "\n".join(inspect.getsource(importlib.import_module(m)) for m in modules)
    allowed = set(LM_ALPHABET)
    return "".join(c if c in allowed else "?" for c in text)


def language_data(text: str, length: int = 81, seed: int = 1234) -> tuple[list, list, str, str]:
    """Training and held-out chunks of `length` characters (the last 10% of the text is held
    out), and the two texts."""
    cut = int(len(text) * 0.9)
    train_text, held_text = text[:cut], text[cut:]
    train = [train_text[i:i + length] for i in range(0, len(train_text) - length, length // 2)]
    held = [held_text[i:i + length] for i in range(0, len(held_text) - length, length)]
    random.Random(seed).shuffle(train)
    return train, held, train_text, held_text


def language_model(alphabet: str = LM_ALPHABET, width: int = 192) -> NetGraph:
    """The predictor reads a string's characters but the last and gives, at every step, the
    distribution of the next character; the loss compares it with the string's characters but
    the first (teacher forcing)."""
    predictor = NetChain([EmbeddingLayer(32), LongShortTermMemoryLayer(width),
                          NetMapOperator(LinearLayer(len(alphabet))), SoftmaxLayer()])
    return NetGraph(
        {"most": SequenceMostLayer(), "rest": SequenceRestLayer(), "predict": predictor,
         "loss": CrossEntropyLossLayer("Index")},
        [(NetPort("Input"), "most", "predict", NetPort("loss", "Input")),
         (NetPort("Input"), "rest", NetPort("loss", "Target"))],
        Input=NetEncoder(("Characters", alphabet)),
    )


def unigram_bits(train_text: str, held_text: str, alphabet: str = LM_ALPHABET) -> float:
    """Bits per character of the held-out text under the training text's character frequencies
    (add-one smoothed): the baseline a model must beat."""
    counts = Counter(train_text)
    total = len(train_text) + len(alphabet)
    return -sum(math.log2((counts[c] + 1) / total) for c in held_text) / len(held_text)


def sample_text(predictor, alphabet: str, prompt: str, n: int, temperature: float, seed: int = 7) -> str:
    """n characters written one at a time by a NetStateObject over the predictor, each drawn
    from its distribution sharpened by 1/temperature."""
    rng = np.random.default_rng(seed)
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    state = NetStateObject(predictor)
    p = np.asarray(state([index[c] for c in prompt]))[-1]
    out = []
    for _ in range(n):
        logits = np.log(np.maximum(p, 1e-12)) / temperature
        q = np.exp(logits - logits.max())
        k = int(rng.choice(len(q), p=q / q.sum()))
        out.append(alphabet[k])
        p = np.asarray(state([k + 1]))[-1]
    return "".join(out)


@scenario(12, "Sequences: a character-level language model of Python's own source, sampled one character at a time")
def scenario_12(MaxTrainingRounds=12, out_dir="out", modules=LM_MODULES, width=192, **options):
    text = language_text(modules)
    train, held, train_text, held_text = language_data(text)
    net = language_model(LM_ALPHABET, width)
    print(f"  {len(text):,} characters of {', '.join(modules)}: {len(train)} training chunks, "
          f"{len(held)} held out")
    t0 = time.perf_counter()
    results = NetTrain(net, train, All, MaxTrainingRounds=MaxTrainingRounds, BatchSize=32, LearningRate=0.004,
                       ValidationSet=held, **options)  # the trained net: the round of the best held-out loss
    seconds = time.perf_counter() - t0
    trained = results["TrainedNet"]
    losses = np.asarray(trained(held), dtype=np.float64)  # mean nats per predicted character
    bits = float(losses.mean() / math.log(2))
    baseline = unigram_bits(train_text, held_text)
    print(f"  held-out cross-entropy: {bits:.3f} bits per character (unigram baseline {baseline:.3f})")
    predictor = NetExtract(trained, "predict")
    sample = sample_text(predictor, LM_ALPHABET, "def ", 240, temperature=0.6)
    print("  sample at temperature 0.6, after 'def ':")
    print("    | " + ("def " + sample).replace("\n", "\n    | "))
    print(f"  {results['TotalRounds']} rounds in {seconds:.1f} s, {results['MeanExamplesPerSecond']:,.0f} examples/s")
    path = _save(results["LossPlot"], "language_model_loss.png", out_dir)
    print(f"  loss plot: {path}")
    return {"net": trained, "results": results, "bits": bits, "baseline_bits": baseline, "sample": sample,
            "seconds": seconds, "plot": path}


# ---- 13: an encoder-decoder ---------------------------------------------------------------------

DIGITS = "0123456789"
TARGET_ALPHABET = DIGITS + "^$"  # ^ starts a target string, $ ends it


def reversal_data(n: int, seed: int, lengths=(3, 8)) -> list:
    """n random digit strings with lengths in `lengths` → the same string reversed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = "".join(rng.choice(DIGITS) for _ in range(rng.randint(*lengths)))
        out.append((s, s[::-1]))
    return out


def encoder_decoder(width: int = 128) -> NetGraph:
    """One LSTM reads the digits; its final State and CellState start a second LSTM, which reads
    the target string after "^" (all of it but the last character) and predicts it with "$"
    (all but the first) — teacher forcing."""
    v = len(TARGET_ALPHABET)
    return NetGraph(
        {"encoder": LongShortTermMemoryLayer(width), "most": SequenceMostLayer(), "rest": SequenceRestLayer(),
         "embed": UnitVectorLayer(v), "decoder": LongShortTermMemoryLayer(width),
         "classify": NetMapOperator(LinearLayer(v)), "softmax": SoftmaxLayer(), "loss": CrossEntropyLossLayer("Index")},
        [(NetPort("Input"), "encoder"),
         (NetPort("encoder", "State"), NetPort("decoder", "State")),
         (NetPort("encoder", "CellState"), NetPort("decoder", "CellState")),
         (NetPort("Target"), "most", "embed", "decoder", "classify", "softmax", NetPort("loss", "Input")),
         (NetPort("Target"), "rest", NetPort("loss", "Target"))],
        Input=NetEncoder(("Characters", DIGITS, "UnitVector")),
        Target=NetEncoder(("Characters", TARGET_ALPHABET)),
    )


def decoding_nets(trained: NetGraph) -> tuple[NetChain, NetGraph]:
    """The encoder alone, and one step of the decoder: a character and the states in; the next
    character's distribution and the states out."""
    encoder = NetChain([NetExtract(trained, "encoder")], Input=NetEncoder(("Characters", DIGITS, "UnitVector")))
    step = NetGraph(
        {"embed": NetExtract(trained, "embed"), "decoder": NetExtract(trained, "decoder"),
         "classify": NetExtract(trained, "classify"), "softmax": NetExtract(trained, "softmax")},
        [(NetPort("Input"), "embed", "decoder", "classify", "softmax", NetPort("Output")),
         (NetPort("State"), NetPort("decoder", "State")), (NetPort("CellState"), NetPort("decoder", "CellState")),
         (NetPort("decoder", "State"), NetPort("FinalState")),
         (NetPort("decoder", "CellState"), NetPort("FinalCellState"))],
    )
    return encoder, step


def greedy_decode(trained: NetGraph, strings: list, max_length: int = 12) -> list:
    """Each string's output written one character at a time, each the most likely after the
    ones before, until "$" (the whole batch at once)."""
    encoder, step = decoding_nets(trained)
    states = encoder(strings, NetPort(All, "States"))
    s, c = np.asarray(states[(1, "State")]), np.asarray(states[(1, "CellState")])
    token = np.full((len(strings), 1), TARGET_ALPHABET.index("^") + 1)
    written = [[] for _ in strings]
    done = np.zeros(len(strings), bool)
    for _ in range(max_length + 1):
        out = step({"Input": token, "State": s, "CellState": c})
        k = np.asarray(out["Output"])[:, -1].argmax(-1)
        s, c = np.asarray(out["FinalState"]), np.asarray(out["FinalCellState"])
        for i, ki in enumerate(k):
            ch = TARGET_ALPHABET[ki]
            done[i] |= ch == "$"
            if not done[i]:
                written[i].append(ch)
        if done.all():
            break
        token = (k + 1).reshape(-1, 1)
    return ["".join(w) for w in written]


@scenario(13, "Sequences: an encoder-decoder LSTM pair learns to write digit strings reversed")
def scenario_13(MaxTrainingRounds=5, out_dir="out", n_train=20000, width=128, **options):
    train = reversal_data(n_train, seed=1)
    held = reversal_data(500, seed=2)
    net = encoder_decoder(width)
    data = {"Input": [s for s, _ in train], "Target": ["^" + t + "$" for _, t in train]}
    print(f"  {len(train)} training strings such as {train[0][0]!r} → {train[0][1]!r}, {len(held)} held out")
    t0 = time.perf_counter()
    results = NetTrain(net, data, All, MaxTrainingRounds=MaxTrainingRounds, BatchSize=64, LearningRate=0.003,
                       **options)
    seconds = time.perf_counter() - t0
    trained = results["TrainedNet"]
    written = greedy_decode(trained, [s for s, _ in held])
    accuracy = float(np.mean([w == t for w, (_, t) in zip(written, held)]))
    for (s, t), w in list(zip(held, written))[:4]:
        print(f"  {s} → {w}   ({'right' if w == t else 'wrong: ' + t})")
    print(f"  held-out exact-match accuracy (greedy decoding): {accuracy:.3f} over {len(held)} strings")
    print(f"  {results['TotalRounds']} rounds in {seconds:.1f} s, {results['MeanExamplesPerSecond']:,.0f} examples/s")
    path = _save(results["LossPlot"], "reversal_loss.png", out_dir)
    print(f"  loss plot: {path}")
    return {"net": trained, "results": results, "accuracy": accuracy, "written": written[:20],
            "seconds": seconds, "plot": path}


# ---- 14: a bidirectional tagger -----------------------------------------------------------------

TAGS = ["Both", "Left", "Right", "Neither"]


def tags(s: str) -> list:
    """Per digit: larger than every digit before it ("Left"), than every digit after it
    ("Right"), both, or neither."""
    out = []
    for i, c in enumerate(s):
        left, right = all(c > d for d in s[:i]), all(c > d for d in s[i + 1:])
        out.append("Both" if left and right else "Left" if left else "Right" if right else "Neither")
    return out


def tagging_data(n: int, seed: int, lengths=(4, 14)) -> dict:
    rng = random.Random(seed)
    data = {}
    while len(data) < n:
        s = "".join(rng.choice(DIGITS) for _ in range(rng.randint(*lengths)))
        data[s] = tags(s)
    return data


def tagger(width: int = 32, bidirectional: bool = True) -> NetChain:
    recurrent = LongShortTermMemoryLayer(width)
    return NetChain(
        [NetBidirectionalOperator(recurrent) if bidirectional else recurrent,
         NetMapOperator(LinearLayer(len(TAGS))), SoftmaxLayer()],
        Input=NetEncoder(("Characters", [DigitCharacter], "UnitVector")),
        Output=NetDecoder(("Class", TAGS)),
    )


@scenario(14, "Sequences: a bidirectional LSTM tags each digit by whether it beats every digit before and after it")
def scenario_14(MaxTrainingRounds=8, out_dir="out", n_train=6000, **options):
    train = tagging_data(n_train, seed=3)
    held = {s: t for s, t in tagging_data(1000, seed=4).items() if s not in train}
    print(f"  {len(train)} training strings such as {next(iter(train))!r} → {next(iter(train.values()))}, "
          f"{len(held)} held out")
    found = {}
    for bidirectional in (True, False):
        t0 = time.perf_counter()
        results = NetTrain(tagger(bidirectional=bidirectional), train, All, MaxTrainingRounds=MaxTrainingRounds,
                           BatchSize=32, LearningRate=0.005, **options)
        seconds = time.perf_counter() - t0
        trained = results["TrainedNet"]
        accuracy = NetMeasurements(trained, held, "Accuracy")
        name = "bidirectional" if bidirectional else "forward only"
        print(f"  {name}: per-character held-out accuracy {accuracy:.4f} ({results['TotalRounds']} rounds in "
              f"{seconds:.1f} s)")
        found[name] = (trained, results, accuracy, seconds)
    trained, results, accuracy, seconds = found["bidirectional"]
    query = "3185297"
    print(f"  {query} → {trained(query)}")
    path = _save(results["LossPlot"], "tagger_loss.png", out_dir)
    print(f"  loss plot: {path}")
    return {"net": trained, "results": results, "accuracy": accuracy, "forward_accuracy": found["forward only"][2],
            "answer": trained(query), "seconds": seconds, "plot": path}
