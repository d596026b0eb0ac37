"""Sequence applications of the building blocks beyond the LSTM (scenarios 15-17): dates written
in ten human formats translated to ISO form with an AttentionLayer; digit strings read from a
drawn strip without alignment (convolution, a bidirectional LSTM, CTCLossLayer, the
"CTCBeamSearch" decoder); a word-level language model of Python's docstrings through the
"Tokens" encoder.

Run with `python -m wlnet.examples 15 16 17`. Each shows a live progress bar, prints a held-out figure
beside a baseline, and saves its loss plot under out/ in the current directory.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import math
import random
import time
from collections import Counter

import numpy as np

from .. import (
    CatenateLayer,
    ConvolutionLayer,
    CrossEntropyLossLayer,
    CTCLossLayer,
    ElementwiseLayer,
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
from ..layers.attention import AttentionLayer
from ..train.api import NetTrain
from .applications import _save
from .registry import scenario

# ---- 15: translation with attention --------------------------------------------------------------

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 10 <= d % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


# each a date → text; two-digit years lie in 1950..2049 (50..99 → 19yy, 00..49 → 20yy)
DATE_FORMATS = [
    lambda t: f"{t.day} {MONTHS[t.month - 1]} {t.year}",  # 3 November 1998
    lambda t: f"{MONTHS[t.month - 1][:3]} {t.day}, {t.year % 100:02d}",  # Nov 3, 98
    lambda t: f"{t.year}/{t.month:02d}/{t.day:02d}",  # 1998/11/03
    lambda t: f"{t.day:02d}.{t.month:02d}.{t.year}",  # 03.11.1998
    lambda t: f"{MONTHS[t.month - 1]} {t.day}, {t.year}",  # November 3, 1998
    lambda t: f"{t.month}/{t.day}/{t.year}",  # 11/3/1998
    lambda t: f"{DAYS[t.weekday()]}, {MONTHS[t.month - 1]} {t.day}, {t.year}",  # Tuesday, November 3, 1998
    lambda t: f"{t.day}-{MONTHS[t.month - 1][:3]}-{t.year % 100:02d}",  # 3-Nov-98
    lambda t: f"{t.year}{t.month:02d}{t.day:02d}",  # 19981103
    lambda t: f"the {_ordinal(t.day)} of {MONTHS[t.month - 1]} {t.year}",  # the 3rd of November 1998
]
DATE_ALPHABET = sorted(set("0123456789/.,- " + "".join(MONTHS) + "".join(DAYS) + "thesndrof"))
ISO_ALPHABET = "0123456789-^"  # ^ starts a target


def edit_distance(a, b) -> int:
    """The fewest insertions, deletions and substitutions that turn sequence a into b."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def character_accuracy(written: list, wanted: list) -> float:
    """1 − the character error rate: the edit distances over the wanted strings' total length."""
    return 1.0 - sum(edit_distance(w, t) for w, t in zip(written, wanted)) / sum(len(t) for t in wanted)


def date_data(n: int, seed: int) -> list:
    """n (written date, ISO date) pairs: a uniform day of 1950..2049 in a uniform format."""
    rng = random.Random(seed)
    first, days = datetime.date(1950, 1, 1).toordinal(), 36524
    out = []
    for _ in range(n):
        t = datetime.date.fromordinal(first + rng.randrange(days))
        out.append((rng.choice(DATE_FORMATS)(t), t.isoformat()))
    return out


def translator(width: int = 64, attention: bool = True) -> NetGraph:
    """A bidirectional LSTM reads the written date; a second LSTM reads the ISO string after "^"
    (all of it but the last character, teacher forcing) and, at each step, its output queries
    the encoder's sequence through an AttentionLayer; the step's output and what it attended to
    predict the next character. Without attention the encoder's final states start the decoder
    instead (the plain encoder-decoder)."""
    v = len(ISO_ALPHABET)
    layers = {"most": SequenceMostLayer(), "rest": SequenceRestLayer(), "embed": UnitVectorLayer(v),
              "decoder": LongShortTermMemoryLayer(width if attention else 2 * width),
              "classify": NetMapOperator(LinearLayer(v)), "softmax": SoftmaxLayer(),
              "loss": CrossEntropyLossLayer("Index")}
    edges = [(NetPort("Target"), "most", "embed", "decoder"),
             (NetPort("Target"), "rest", NetPort("loss", "Target")),
             ("classify", "softmax", NetPort("loss", "Input"))]
    if attention:
        layers["encoder"] = NetBidirectionalOperator(LongShortTermMemoryLayer(width))
        layers["attend"] = AttentionLayer(ScoreRescaling="DimensionSqrt")
        layers["join"] = CatenateLayer(2)
        edges += [(NetPort("Input"), "encoder"), ("encoder", NetPort("attend", "Key")),
                  ("encoder", NetPort("attend", "Value")), ("decoder", NetPort("attend", "Query")),
                  (["decoder", NetPort("attend", "Output")], "join", "classify")]
    else:
        layers["encoder"] = LongShortTermMemoryLayer(2 * width)
        edges += [(NetPort("Input"), "encoder"),
                  (NetPort("encoder", "State"), NetPort("decoder", "State")),
                  (NetPort("encoder", "CellState"), NetPort("decoder", "CellState")),
                  ("decoder", "classify")]
    return NetGraph(layers, edges, Input=NetEncoder(("Characters", DATE_ALPHABET, "UnitVector")),
                    Target=NetEncoder(("Characters", ISO_ALPHABET)))


def predictor(trained: NetGraph) -> NetGraph:
    """The trained translator without its loss: the written date and an ISO prefix starting with
    "^" in, the distribution of each next character out."""
    names = [k for k in ("encoder", "embed", "decoder", "attend", "join", "classify", "softmax")
             if k in dict(trained.parts())]
    layers = {k: NetExtract(trained, k) for k in names}
    edges = [(NetPort("Input"), "encoder"), (NetPort("Prefix"), "embed", "decoder"),
             ("classify", "softmax", NetPort("Output"))]
    if "attend" in layers:
        edges += [("encoder", NetPort("attend", "Key")), ("encoder", NetPort("attend", "Value")),
                  ("decoder", NetPort("attend", "Query")),
                  (["decoder", NetPort("attend", "Output")], "join", "classify")]
    else:
        edges += [(NetPort("encoder", "State"), NetPort("decoder", "State")),
                  (NetPort("encoder", "CellState"), NetPort("decoder", "CellState")), ("decoder", "classify")]
    return NetGraph(layers, edges, Input=NetEncoder(("Characters", DATE_ALPHABET, "UnitVector")),
                    Prefix=NetEncoder(("Characters", ISO_ALPHABET)))


def translate(trained: NetGraph, texts: list, length: int = 10) -> list:
    """Each text's ISO date written one character at a time, each the most likely after the ones
    before (the whole batch at once; the predictor reruns on the growing prefix)."""
    net = predictor(trained)
    written = ["^"] * len(texts)
    for _ in range(length):
        p = net({"Input": texts, "Prefix": written}, "Output")
        written = [w + ISO_ALPHABET[int(np.asarray(q)[-1].argmax())] for w, q in zip(written, p)]
    return [w[1:] for w in written]


@scenario(15, "Blocks: dates written ten ways translated to ISO form by an encoder-decoder with an AttentionLayer")
def scenario_15(MaxTrainingRounds=5, out_dir="out", n_train=16000, width=64, LearningRate=0.01, **options):
    train = date_data(n_train, seed=5)
    held = date_data(1000, seed=6)
    data = {"Input": [s for s, _ in train], "Target": ["^" + t for _, t in train]}
    print(f"  {len(train)} training dates such as {train[0][0]!r} → {train[0][1]!r}, {len(held)} held out")
    found = {}
    for attention in (True, False):
        t0 = time.perf_counter()
        results = NetTrain(translator(width, attention), data, All, MaxTrainingRounds=MaxTrainingRounds,
                           BatchSize=64, LearningRate=LearningRate, **options)
        seconds = time.perf_counter() - t0
        trained = results["TrainedNet"]
        written = translate(trained, [s for s, _ in held])
        accuracy = float(np.mean([w == t for w, (_, t) in zip(written, held)]))
        chars = character_accuracy(written, [t for _, t in held])
        name = "with attention" if attention else "without attention"
        print(f"  {name}: held-out exact match {accuracy:.3f}, characters {chars:.3f} ({results['TotalRounds']} "
              f"rounds in {seconds:.1f} s)")
        found[name] = (trained, results, accuracy, seconds, written, chars)
    trained, results, accuracy, seconds, written, chars = found["with attention"]
    for (s, t), w in list(zip(held, written))[:4]:
        print(f"  {s!r} → {w}   ({'right' if w == t else 'wrong: ' + t})")
    path = _save(results["LossPlot"], "dates_loss.png", out_dir)
    print(f"  loss plot: {path}")
    baseline = found["without attention"]
    return {"net": trained, "results": results, "accuracy": accuracy, "baseline_accuracy": baseline[2],
            "character_accuracy": chars, "baseline_character_accuracy": baseline[5], "written": written[:20],
            "seconds": seconds, "baseline_seconds": baseline[3], "plot": path}


# ---- 16: reading without alignment ------------------------------------------------------------------

# a 5-row bitmap font: each digit 3 columns wide, a column's 5 bits top to bottom
FONT = {
    "0": ["11111", "10001", "11111"], "1": ["01001", "11111", "00001"], "2": ["10111", "10101", "11101"],
    "3": ["10101", "10101", "11111"], "4": ["11100", "00100", "11111"], "5": ["11101", "10101", "10111"],
    "6": ["11111", "10101", "10111"], "7": ["10000", "10011", "11100"], "8": ["11111", "10101", "11111"],
    "9": ["11101", "10101", "11111"],
}


def draw(digits: str, rng: np.random.Generator, noise: float = 0.15) -> np.ndarray:
    """The digits drawn left to right as columns of 5 pixels (L×5, L varying): each glyph's
    columns, 1 to 3 blank columns between glyphs and at the ends, and Gaussian noise."""
    cols = [np.zeros(5)] * int(rng.integers(1, 4))
    for d in digits:
        cols += [np.array([float(b) for b in c]) for c in FONT[d]]
        cols += [np.zeros(5)] * int(rng.integers(1, 4))
    strip = np.stack(cols)
    return (strip + noise * rng.standard_normal(strip.shape)).astype(np.float32)


def strip_data(n: int, seed: int, lengths=(3, 8)) -> list:
    """n (strip, digit string) pairs, each of a uniform length in `lengths`."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(lengths[0], lengths[1] + 1))))
        out.append((draw(s, rng), s))
    return out


def reader(width: int = 48) -> NetChain:
    """A convolution over the strip's columns (kernel 3, "Same" padding, so every column has an
    output), a bidirectional LSTM, and per column the probabilities of the 10 digits and the blank."""
    return NetChain([ConvolutionLayer(32, 3, Interleaving=True, PaddingSize="Same"), ElementwiseLayer("Ramp"),
                     NetBidirectionalOperator(LongShortTermMemoryLayer(width)), NetMapOperator(LinearLayer(11)),
                     SoftmaxLayer()], Input=("Varying", 5))


def reading_graph(net: NetChain) -> NetGraph:
    return NetGraph({"read": net, "loss": CTCLossLayer()},
                    [(NetPort("Input"), "read", NetPort("loss", "Input")),
                     (NetPort("Target"), NetPort("loss", "Target"))])


@scenario(16, "Blocks: digit strings read from a drawn strip without alignment, by convolution, a bidirectional LSTM "
              "and CTCLossLayer")
def scenario_16(MaxTrainingRounds=6, out_dir="out", n_train=3000, width=48, **options):
    train = strip_data(n_train, seed=7)
    held = strip_data(500, seed=8)
    data = {"Input": [x for x, _ in train], "Target": [[int(c) + 1 for c in s] for _, s in train]}
    print(f"  {len(train)} strips of 3 to 8 digits ({train[0][0].shape[0]} columns for {train[0][1]!r}), "
          f"{len(held)} held out")
    t0 = time.perf_counter()
    results = NetTrain(reading_graph(reader(width)), data, All, MaxTrainingRounds=MaxTrainingRounds, BatchSize=32,
                       LearningRate=0.005, **options)
    seconds = time.perf_counter() - t0
    trained = NetExtract(results["TrainedNet"], "read")
    probabilities = trained([x for x, _ in held])
    found = {}
    for name, beam in (("greedy", 1), ("beam search", 16)):
        dec = NetDecoder(("CTCBeamSearch", "0123456789"), BeamSize=beam)
        t1 = time.perf_counter()
        read = dec(probabilities)
        found[name] = (float(np.mean([r == s for r, (_, s) in zip(read, held)])), time.perf_counter() - t1, read,
                       character_accuracy(read, [s for _, s in held]))
        print(f"  {name} decoding: held-out whole-string accuracy {found[name][0]:.3f}, digits {found[name][3]:.3f} "
              f"({found[name][1]:.1f} s)")
    for (_, s), r in list(zip(held, found["beam search"][2]))[:4]:
        print(f"  {s} read as {r}   ({'right' if r == s else 'wrong'})")
    print(f"  {results['TotalRounds']} rounds in {seconds:.1f} s, {results['MeanExamplesPerSecond']:,.0f} examples/s")
    path = _save(results["LossPlot"], "reading_loss.png", out_dir)
    print(f"  loss plot: {path}")
    return {"net": trained, "results": results, "accuracy": found["beam search"][0], "greedy_accuracy":
            found["greedy"][0], "character_accuracy": found["beam search"][3], "read": found["beam search"][2][:20],
            "seconds": seconds, "plot": path}


# ---- 17: words ----------------------------------------------------------------------------------------

WORD_MODULES = ("textwrap", "heapq", "bisect", "fnmatch", "shlex", "glob", "calendar", "string", "queue",
                "argparse", "collections", "functools", "json", "pathlib", "random", "statistics")


def docstrings(modules=WORD_MODULES) -> list[str]:
    """The docstrings (`inspect.getdoc`) of the modules of Python's standard library and of their
    public functions, classes and methods, one paragraph a line."""
    out = []
    for name in modules:
        mod = importlib.import_module(name)
        objects = [mod] + [v for k, v in vars(mod).items() if not k.startswith("_")
                           and getattr(v, "__module__", None) == name]
        objects += [m for v in list(objects[1:]) if inspect.isclass(v) for k, m in vars(v).items()
                    if not k.startswith("_") and callable(m)]
        for obj in objects:
            doc = inspect.getdoc(obj)
            if doc:
                out += [" ".join(p.split()) for p in doc.split("\n\n") if len(p.split()) >= 4]
    return out


def word_data(paragraphs: list, vocabulary: int = 1500, seed: int = 1234):
    """The vocabulary (the most frequent tokens of the training paragraphs, lowercased) and the
    training and held-out paragraphs (every tenth held out)."""
    from ..coders.tokens import split_words

    held = paragraphs[::10]
    train = [p for i, p in enumerate(paragraphs) if i % 10]
    counts = Counter(t.lower() for p in train for t in split_words(p))
    words = [w for w, _ in counts.most_common(vocabulary)]
    random.Random(seed).shuffle(train)
    return words, train, held


def word_model(words: list, width: int = 128) -> NetGraph:
    """Teacher forcing over tokens: the predictor reads a paragraph's tokens but the last and gives
    at every step the distribution of the next token (the vocabulary and the unknown one)."""
    v = len(words) + 1
    predictor = NetChain([EmbeddingLayer(64), LongShortTermMemoryLayer(width), NetMapOperator(LinearLayer(v)),
                          SoftmaxLayer()])
    return NetGraph(
        {"most": SequenceMostLayer(), "rest": SequenceRestLayer(), "predict": predictor,
         "loss": CrossEntropyLossLayer("Index")},
        [(NetPort("Input"), "most", "predict", NetPort("loss", "Input")),
         (NetPort("Input"), "rest", NetPort("loss", "Target"))],
        Input=NetEncoder(("Tokens", words)),
    )


def unigram_perplexity(words: list, train: list, held: list) -> float:
    """The held-out perplexity of the training paragraphs' token frequencies (add-one smoothed,
    tokens outside the vocabulary one class), over the tokens the model predicts (all but the first)."""
    enc = NetEncoder(("Tokens", words))
    counts = Counter(i for p in train for i in enc(p)[1:])
    total = sum(counts.values()) + len(words) + 1
    codes = [i for p in held for i in enc(p)[1:]]
    return math.exp(-sum(math.log((counts[i] + 1) / total) for i in codes) / len(codes))


def sample_words(predictor, words: list, prompt: str, n: int, temperature: float, seed: int = 7) -> str:
    """n tokens written one at a time by a NetStateObject over the predictor, each drawn from its
    distribution sharpened by 1/temperature (the unknown token never drawn)."""
    rng = np.random.default_rng(seed)
    enc = NetEncoder(("Tokens", words))
    state = NetStateObject(predictor)
    p = np.asarray(state(enc(prompt)))[-1]
    out = []
    for _ in range(n):
        logits = np.log(np.maximum(p[:-1], 1e-12)) / temperature
        q = np.exp(logits - logits.max())
        k = int(rng.choice(len(q), p=q / q.sum()))
        out.append(words[k])
        p = np.asarray(state([k + 1]))[-1]
    return " ".join(out)


@scenario(17, "Blocks: a word-level language model of Python's standard-library docstrings through the Tokens encoder")
def scenario_17(MaxTrainingRounds=6, out_dir="out", modules=WORD_MODULES, vocabulary=1500, width=128,
                LearningRate=0.01, **options):
    words, train, held = word_data(docstrings(modules), vocabulary)
    net = word_model(words, width)
    print(f"  {len(train) + len(held)} docstring paragraphs of {len(modules)} modules, a vocabulary of "
          f"{len(words)} tokens: {len(train)} paragraphs for training, {len(held)} held out")
    t0 = time.perf_counter()
    results = NetTrain(net, train, All, MaxTrainingRounds=MaxTrainingRounds, BatchSize=32, LearningRate=LearningRate,
                       ValidationSet=held, **options)  # the trained net: the round of the best held-out loss
    seconds = time.perf_counter() - t0
    trained = results["TrainedNet"]
    enc = NetEncoder(("Tokens", words))
    losses = np.asarray(trained(held), dtype=np.float64)  # mean nats per predicted token, per paragraph
    counts = np.array([len(enc(p)) - 1 for p in held])
    perplexity = float(math.exp((losses * counts).sum() / counts.sum()))
    baseline = unigram_perplexity(words, train, held)
    print(f"  held-out perplexity {perplexity:.1f} per token (unigram baseline {baseline:.1f})")
    predictor = NetExtract(trained, "predict")
    samples = [sample_words(predictor, words, prompt, 16, 0.7, seed) for seed, prompt in
               enumerate(("Return the", "If the", "This module"))]
    for prompt, s in zip(("Return the", "If the", "This module"), samples):
        print(f"  {prompt} … {s}")
    print(f"  {results['TotalRounds']} rounds in {seconds:.1f} s, {results['MeanExamplesPerSecond']:,.0f} examples/s")
    path = _save(results["LossPlot"], "words_loss.png", out_dir)
    print(f"  loss plot: {path}")
    return {"net": trained, "results": results, "perplexity": perplexity, "baseline_perplexity": baseline,
            "samples": samples, "seconds": seconds, "plot": path}
