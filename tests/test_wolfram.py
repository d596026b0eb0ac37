"""Wolfram code in and out: the syntax read (precedences, numbers, strings, comments, statements),
the reference page's examples written as Wolfram code against their Python forms (same arrays
under the same seed, same outputs), round trips from_wolfram(to_wolfram(net)) for every layer
type and container (and random nets), pure functions against numpy, the errors, and
`python -m wlnet run`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wlnet
from wlnet import (
    AggregationLayer,
    All,
    Automatic,
    BasicRecurrentLayer,
    CatenateLayer,
    CrossEntropyLossLayer,
    DigitCharacter,
    DropoutLayer,
    ElementwiseLayer,
    EmbeddingLayer,
    GatedRecurrentLayer,
    Information,
    LinearLayer,
    LongShortTermMemoryLayer,
    MeanAbsoluteLossLayer,
    MeanSquaredLossLayer,
    NetBidirectionalOperator,
    NetChain,
    NetDecoder,
    NetEncoder,
    NetExtract,
    NetGraph,
    NetInitialize,
    NetMapOperator,
    NetMeasurements,
    NetPort,
    NetStateObject,
    NetTrain,
    NotSupportedError,
    Options,
    SequenceLastLayer,
    SequenceMostLayer,
    SequenceRestLayer,
    SequenceReverseLayer,
    SoftmaxLayer,
    ThreadingLayer,
    TotalLayer,
    UnitVectorLayer,
    from_wolfram,
    to_wolfram,
)
from wlnet.examples.applications import addition_data, addition_net, comparison_data, comparison_net
from wlnet.io.structure import Encoder
from wlnet.wolfram import WolframSyntaxError
from wlnet.wolfram import syntax as S
from wlnet.wolfram.functions import Symbol
from wlnet.wolfram.syntax import Expr, Slot, Sym, node, parse

SEQ = [[1, 2], [3, 4], [5, 6]]


def bits(t) -> np.ndarray:
    return np.asarray(t, dtype=np.float32).view(np.uint32)


def assert_same_net(a, b):
    """Same structure (class, arguments, options as Python forms), ports, and arrays bit for bit."""
    assert type(a) is type(b)
    assert b.input_form() == a.input_form()
    assert b.input_ports() == a.input_ports() and b.output_ports() == a.output_ports()
    assert b.state_positions() == a.state_positions()
    xa, xb = a.arrays(), b.arrays()
    assert xa.keys() == xb.keys()
    for k, t in xa.items():
        if t is None:
            assert xb[k] is None, k
        else:
            assert xb[k].shape == t.shape and np.array_equal(bits(t), bits(xb[k])), k


def assert_same_structure(a, b):
    """As `assert_same_net`, and the saved structure (tuples and lists told apart) is the same."""
    assert_same_net(a, b)
    ea, eb = Encoder(a), Encoder(b)
    assert ea.node(a) == eb.node(b)
    ta, tb = ea.tensors, eb.tensors
    assert ta.keys() == tb.keys() and all(np.array_equal(bits(ta[k]), bits(tb[k])) for k in ta)


# ---- syntax ------------------------------------------------------------------------------------
def f(name, *args):
    return node(name, *args)


@pytest.mark.parametrize("code, tree", [
    ("a -> b -> c", f("Rule", Sym("a"), f("Rule", Sym("b"), Sym("c")))),
    ("a :> b", f("RuleDelayed", Sym("a"), Sym("b"))),
    ("f@g@x", Expr(Sym("f"), (Expr(Sym("g"), (Sym("x"),)),))),
    ("x // f // g", Expr(Sym("g"), (Expr(Sym("f"), (Sym("x"),)),))),
    ("x = y // f", f("Set", Sym("x"), Expr(Sym("f"), (Sym("y"),)))),
    ("x = # + 1 &", f("Set", Sym("x"), f("Function", f("Plus", Slot(1), 1)))),
    ("# + 1 & // f", Expr(Sym("f"), (f("Function", f("Plus", Slot(1), 1)),))),
    ("a -> # &", f("Function", f("Rule", Sym("a"), Slot(1)))),
    ("1 + 2*3^2^2", f("Plus", 1, f("Times", 2, f("Power", 3, f("Power", 2, 2))))),
    ("-a^2", f("Minus", f("Power", Sym("a"), 2))),
    ("a - b - c", f("Subtract", f("Subtract", Sym("a"), Sym("b")), Sym("c"))),
    ("a/b*c", f("Times", f("Divide", Sym("a"), Sym("b")), Sym("c"))),
    ("f@x^2", f("Power", Expr(Sym("f"), (Sym("x"),)), 2)),
    ("f[x][y]", Expr(Expr(Sym("f"), (Sym("x"),)), (Sym("y"),))),
    ("x[[2]]", f("Part", Sym("x"), 2)),
    ("2 ;; All", f("Span", 2, Sym("All"))),
    ("1 ;; n - 1", f("Span", 1, f("Subtract", Sym("n"), 1))),
    ("a -> 1 ;; 3", f("Rule", Sym("a"), f("Span", 1, 3))),
    ("2 ;;", f("Span", 2, Sym("All"))),
    ("#1 * #2 - 1 &", f("Function", f("Subtract", f("Times", Slot(1), Slot(2)), 1))),
    ("Tanh[#] + #^2 &", f("Function", f("Plus", Expr(Sym("Tanh"), (Slot(1),)), f("Power", Slot(1), 2)))),
    ("<|\"a\" -> 1, 2 -> {}|>", f("Association", f("Rule", "a", 1), f("Rule", 2, f("List")))),
    ("{1, , 2}", f("List", 1, Sym("Null"), 2)),
    ("(a; b)", f("CompoundExpression", Sym("a"), Sym("b"))),
    ("a; b;", f("CompoundExpression", Sym("a"), Sym("b"), Sym("Null"))),
    ("a -> b == c + 1", f("Rule", Sym("a"), f("Equal", Sym("b"), f("Plus", Sym("c"), 1)))),
    ("System`Automatic", Sym("Automatic")),
])
def test_operators_have_wolframs_precedence_and_grouping(code, tree):
    assert parse(code) == [tree]


@pytest.mark.parametrize("code, value", [
    ("12", 12), ("-7", -7), ("1.5", 1.5), ("1.", 1.0), (".25", 0.25), ("1.5*^-3", 1.5e-3), ("2*^3", 2000),
    ("-1.5*^-3", -1.5e-3), ("1.5`20", 1.5), ("3.25``10", 3.25),
    (r'"a\"b\\c\nd\te"', 'a"b\\c\nd\te'), (r'"\[Alpha]\:00e9"', "αé"), ('"(* not a comment *)"', "(* not a comment *)"),
])
def test_numbers_and_strings(code, value):
    got = parse(code)[0]
    assert got == value and type(got) is type(value)


def test_comments_nest_and_newlines_end_statements_only_at_the_top_level():
    code = "(* a (* nested *) comment *)\nx = {1,\n  2} (* trailing (* nested *) *)\ny = x\n"
    assert parse(code) == [f("Set", Sym("x"), f("List", 1, 2)), f("Set", Sym("y"), Sym("x"))]
    assert from_wolfram("x = 1\ny = 2\nx + y") == 3
    assert from_wolfram("x = 1 +\n  2\nx") == 3  # a line ending in an operator continues
    assert from_wolfram("f = (#1 +\n #2 &)\nf[1, 2]") == 3


def test_a_long_numeric_list_read_in_one_pass_equals_the_parser_s_reading(monkeypatch):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 40)).astype(np.float32) * np.float32(1e-5)
    text = "{" + ", ".join("{" + ", ".join(S_number(x) for x in row) + "}" for row in a) + "}"
    fast = from_wolfram(text)
    monkeypatch.setattr(S, "FAST_MIN", 10 ** 12)
    slow = from_wolfram(text)
    assert fast == slow and np.array_equal(bits(fast), bits(a))
    assert from_wolfram("{" + ",".join(["1."] * 100) + "}") == [1.0] * 100  # Wolfram's trailing-dot reals


def S_number(x) -> str:
    from wlnet.wolfram.printer import array_text

    return array_text(np.asarray(x, dtype=np.float32))


@pytest.mark.parametrize("code, message", [
    ("NetChain[{LinearLayer[2]}", 'line 1, column 26: expected "]" to close the "[" at column 9'),
    ("x = 1\ny = {1, 2]", 'line 2, column 10: expected "," or "}" (for the "{" at column 5), but found "]"'),
    ("2 x", "line 1, column 3: 'x' follows an expression without an operator"),
    ("net /. x -> 1", "'/.' (ReplaceAll) is not supported"),
    ("Map[f, {1}]\nf /@ {1}", "line 2, column 3: '/@' (Map) is not supported"),
    ("os.system[\"ls\"]", "'.' (Dot) is not supported"),
    ('"abc', 'the string that starts here is not closed'),
    ("(* abc", "the comment that starts here is not closed"),
    ("f[1]]", "']' closes nothing that is open"),
    ("{1, 2} = 3", "only a symbol can be assigned"),
])
def test_syntax_errors_name_line_and_column_with_the_text_around(code, message):
    with pytest.raises(WolframSyntaxError) as e:
        from_wolfram(code)
    assert message in str(e.value)
    assert "^" in str(e.value).splitlines()[-1]  # the caret under the column
    assert isinstance(e.value, wlnet.NetError)


@pytest.mark.parametrize("code, head", [
    ("Table[i, {i, 3}]", "Table"), ('DeleteFile["x.wl"]', "DeleteFile"), ("FooLayer[3]", "FooLayer"),
    ('NetChain[{LinearLayer[2], Run["rm -rf /"]}]', "Run"), ("x = 3; x[2]", "3"),
])
def test_anything_outside_the_net_framework_is_not_supported_naming_the_head(code, head):
    with pytest.raises(NotSupportedError) as e:
        from_wolfram(code)
    assert head in str(e.value)
    if code.startswith(head):
        assert "(line 1, column 1)" in str(e.value)


def test_nothing_is_evaluated_as_python():
    for code in ['eval["1+1"]', 'exec["x=1"]', 'open["/etc/passwd"]', 'getattr[x, "y"]', 'print["x"]']:
        with pytest.raises(NotSupportedError):
            from_wolfram(code)
    for code in ['__import__["os"]', 'os.system["ls"]', "lambda: 1", "x; import os"]:
        with pytest.raises(WolframSyntaxError):
            from_wolfram(code)
    with pytest.raises(NotSupportedError):
        from_wolfram("f[2]", f=lambda x: x)  # a Python function bound by name is not called either
    with pytest.raises(NotSupportedError):
        from_wolfram("Tanh = 3")  # built-in names cannot be reassigned


def test_huge_numbers_are_reals_not_endless_integers():
    assert from_wolfram("1*^100000000") == math.inf and from_wolfram("2^10^10") == math.inf
    assert from_wolfram("2^10") == 1024 and from_wolfram("2*^3") == 2000


def test_bad_net_input_still_gets_the_net_s_typed_error():
    with pytest.raises(wlnet.OptionError):
        from_wolfram("LongShortTermMemoryLayer[0]")
    with pytest.raises(wlnet.OptionError):
        from_wolfram('LongShortTermMemoryLayer[3, "Dropout" -> "lots"]')


# ---- the reference page's examples as Wolfram code ------------------------------------------------
PAGE = {  # name → Wolfram input as the page writes it (data bound from Python where the page builds it)
    "basic-1": "LongShortTermMemoryLayer[3]",
    "basic-2": 'lstm = NetInitialize@LongShortTermMemoryLayer[3, "Input" -> {"Varying", 2}]\n'
               "lstm[{{1, 2}, {3, 4}, {5, 6}}]",
    "scope-encoder": 'lstm = NetInitialize@LongShortTermMemoryLayer[2, "Input" -> NetEncoder[{"Characters", '
                     '"abcdefghijklmnopqrstuvwxyz ", "UnitVector"}]]\n{lstm["hello world"], lstm[{"hello", "lstm"}]}',
    "scope-chain": 'net = NetInitialize@NetChain[{LongShortTermMemoryLayer[3], SequenceLastLayer[]}, '
                   '"Input" -> {"Varying", 2}]\n{net[{{1, 2}, {3, 4}, {5, 6}}], net[{{{1, 2}, {3, 4}, {5, 6}}, '
                   "{{1, 0}}, {{0, 1}, {1, 0}}}]}",
    "scope-initial-state": 'lstm = NetInitialize@LongShortTermMemoryLayer[2, "Input" -> {"Varying", 3}];\n'
                           'graph = NetGraph[{lstm}, {NetPort["s0"] -> NetPort[1, "State"], '
                           'NetPort["c0"] -> NetPort[1, "CellState"]}]\n'
                           'graph[<|"Input" -> {{1, 0, 0}, {0, 1, 0}}, "s0" -> {1, -1}, "c0" -> {0.5, 0.5}|>]',
    "scope-final-state": 'lstm = NetInitialize@LongShortTermMemoryLayer[2, "Input" -> {"Varying", 3}];\n'
                         'graph = NetGraph[{lstm}, {NetPort[1, "State"] -> NetPort["state"], '
                         'NetPort[1, "CellState"] -> NetPort["cellstate"]}]\n'
                         "graph[{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}]",
    "scope-final-state-is-last": 'lstm = NetInitialize@LongShortTermMemoryLayer[2, "Input" -> {"Varying", 3}];\n'
                                 'out = NetGraph[{lstm}, {NetPort[1, "State"] -> NetPort["state"]}][{{1, 0, 0}, '
                                 '{0, 1, 0}, {0, 0, 1}}];\nout["state"] == Last[out["Output"]]',
    "options-dropout-methods": 'LongShortTermMemoryLayer[10, "Dropout" -> {"VariationalInput" -> 0.1, '
                               '"VariationalState" -> 0.5}]',
    "options-dropout-train": 'lstm = NetInitialize@LongShortTermMemoryLayer[3, "Input" -> {"Varying", 2}, '
                             '"Dropout" -> 0.5];\n{lstm[{{1, 2}, {3, 4}, {5, 6}}], lstm[{{1, 2}, {3, 4}, {5, 6}}, '
                             'NetEvaluationMode -> "Train"]}',
    "application-addition": 'net = NetChain[{LongShortTermMemoryLayer[80], LongShortTermMemoryLayer[80], '
                            'SequenceLastLayer[], LinearLayer[1]}, "Input" -> NetEncoder[{"Characters", '
                            '{DigitCharacter, "+"}, "UnitVector"}], "Output" -> "Scalar"]\n'
                            "trained = NetTrain[net, trainingData, MaxTrainingRounds -> 1, BatchSize -> 40, "
                            "RandomSeeding -> 7, TrainingProgressReporting -> None]\n"
                            'trained[{"25+33", "14+13", "12+75"}]',
    "application-comparison": 'net = NetChain[{LongShortTermMemoryLayer[20], SequenceLastLayer[], LinearLayer[3], '
                              'SoftmaxLayer[]}, "Input" -> NetEncoder[{"Characters", "xy", "UnitVector"}], '
                              '"Output" -> NetDecoder[{"Class", {Less, Greater, Equal}}]];\n'
                              "trained = NetTrain[net, trainingData, MaxTrainingRounds -> 2, RandomSeeding -> 7, "
                              "TrainingProgressReporting -> None];\n"
                              '{trained[{"xyxyxyx", "xxxxyyy", "xxyyyyy"}], '
                              'NetMeasurements[trained, trainingData, "Accuracy"]}',
    "properties-state-object": 'net = NetInitialize@NetChain[{LongShortTermMemoryLayer[3], SequenceLastLayer[]}, '
                               '"Input" -> {"Varying", 2}];\nobj = NetStateObject[net];\n'
                               "{obj[{{1, 2}, {3, 4}}], obj[{{1, 2}, {3, 4}}]}",
    "properties-information": 'Information[NetInitialize@LongShortTermMemoryLayer[3, "Input" -> {"Varying", 2}], '
                              '"ArraysTotalElementCount"]',
    "properties-options": "Options[LongShortTermMemoryLayer]",
}


def test_basic_examples():
    layer = from_wolfram(PAGE["basic-1"])
    assert_same_structure(layer, LongShortTermMemoryLayer(3))
    out = from_wolfram(PAGE["basic-2"])
    py = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)))
    assert out == py(SEQ) and len(out) == 3 and all(len(v) == 3 for v in out)
    assert_same_structure(from_wolfram(PAGE["basic-2"].splitlines()[0]), py)


def test_scope_examples():
    one, batch = from_wolfram(PAGE["scope-encoder"])
    enc = NetEncoder(("Characters", "abcdefghijklmnopqrstuvwxyz ", "UnitVector"))
    py = NetInitialize(LongShortTermMemoryLayer(2, Input=enc))
    assert one == py("hello world") and batch == py(["hello", "lstm"])
    assert_same_structure(from_wolfram(PAGE["scope-encoder"].splitlines()[0]), py)

    one, batch = from_wolfram(PAGE["scope-chain"])
    chain = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=("Varying", 2)))
    assert one == chain(SEQ) and batch == chain([SEQ, [[1, 0]], [[0, 1], [1, 0]]])

    lstm = NetInitialize(LongShortTermMemoryLayer(2, Input=("Varying", 3)))
    graph = NetGraph([lstm], [(NetPort("s0"), NetPort(1, "State")), (NetPort("c0"), NetPort(1, "CellState"))])
    x = {"Input": [[1, 0, 0], [0, 1, 0]], "s0": [1, -1], "c0": [0.5, 0.5]}
    assert from_wolfram(PAGE["scope-initial-state"]) == graph(x)
    assert_same_structure(from_wolfram(PAGE["scope-initial-state"].rsplit("\n", 1)[0]), graph)

    assert from_wolfram(PAGE["scope-final-state-is-last"]) is True
    result = from_wolfram(PAGE["scope-final-state"])
    graph = NetGraph([lstm], [(NetPort(1, "State"), NetPort("state")), (NetPort(1, "CellState"),
                                                                          NetPort("cellstate"))])
    assert result == graph([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(result["state"], result["Output"][-1], rtol=0, atol=0)


def test_dropout_options():
    layer = from_wolfram(PAGE["options-dropout-methods"])
    assert_same_structure(layer, LongShortTermMemoryLayer(10, Dropout={"VariationalInput": 0.1,
                                                                        "VariationalState": 0.5}))
    test, train = from_wolfram(PAGE["options-dropout-train"])
    plain = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2)))  # same seed: same arrays
    assert test == plain(SEQ)
    assert not np.allclose(train, test)


def test_properties():
    first, second = from_wolfram(PAGE["properties-state-object"])
    net = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=("Varying", 2)))
    obj = NetStateObject(net)
    assert first == obj([[1, 2], [3, 4]]) and second == obj([[1, 2], [3, 4]]) and first != second
    assert from_wolfram(PAGE["properties-information"]) == 4 * 3 * (2 + 3 + 1)
    assert from_wolfram(PAGE["properties-options"]) == Options(LongShortTermMemoryLayer)
    net = from_wolfram('NetInitialize[NetChain[{LinearLayer[2], SoftmaxLayer[]}, "Input" -> 3], RandomSeeding -> 5]')
    assert from_wolfram('NetExtract[net, {1, "Weights"}]', net=net).tolist() == NetExtract(net, (1, "Weights")).tolist()
    assert from_wolfram('Information[net, "LayersCount"]', net=net) == Information(net, "LayersCount") == 2
    assert from_wolfram("Options[net]", net=net) == Options(net)


def test_applications_train_as_their_python_forms():
    train, _ = addition_data()
    data = train[:120]
    answers = from_wolfram(PAGE["application-addition"], trainingData=data)
    py = NetTrain(addition_net(), data, MaxTrainingRounds=1, BatchSize=40, RandomSeeding=7,
                  TrainingProgressReporting=None)
    assert answers == py(["25+33", "14+13", "12+75"])

    data = dict(list(comparison_data().items())[:200])
    answers, accuracy = from_wolfram(PAGE["application-comparison"], trainingData=data)
    py = NetTrain(comparison_net(), data, MaxTrainingRounds=2, RandomSeeding=7, TrainingProgressReporting=None)
    assert answers == py(["xyxyxyx", "xxxxyyy", "xxyyyyy"])
    assert all(isinstance(a, str) and a in ("Less", "Greater", "Equal") for a in answers)
    assert accuracy == NetMeasurements(py, data, "Accuracy")


def test_every_page_example_runs_verbatim():
    data = {"application-addition": addition_data()[0][:40],
            "application-comparison": dict(list(comparison_data().items())[:40])}
    for name, code in PAGE.items():
        names = {"trainingData": data[name]} if name in data else {}
        assert from_wolfram(code, **names) is not None, name


def test_net_application_forms():
    chain = NetInitialize(comparison_net())
    names = {"net": chain}
    assert from_wolfram('net["xyx", "Probabilities"]', **names) == chain("xyx", "Probabilities")
    assert from_wolfram('net["xyx", {"TopProbabilities", 2}]', **names) == chain("xyx", ("TopProbabilities", 2))
    lstm = NetInitialize(LongShortTermMemoryLayer(3, Input=("Varying", 2), Dropout=0.5))
    a = from_wolfram('lstm[x, NetEvaluationMode -> "Train", RandomSeeding -> 3]', lstm=lstm, x=SEQ)
    assert a == lstm(SEQ, NetEvaluationMode="Train", RandomSeeding=3)
    states = from_wolfram('net[x, NetPort[All, "States"]]', net=chain, x="xy")
    assert states.keys() == chain("xy", NetPort(All, "States")).keys()
    arr = from_wolfram('lstm[NumericArray[{{1, 2}, {3, 4}}, "Real32"]]', lstm=lstm)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32  # NumericArray in, NumericArray out


def test_train_data_forms_and_options_as_rules():
    net = NetInitialize(LinearLayer(1, Input=1), RandomSeeding=1)
    xs, ys = [[1.0], [2.0], [3.0]], [[2.0], [4.0], [6.0]]
    opts = dict(MaxTrainingRounds=3, RandomSeeding=2, TrainingProgressReporting=None, BatchSize=3)
    want = NetTrain(net, list(zip(xs, ys)), **opts)
    rules = "{" + ", ".join(f"{{{x[0]}}} -> {{{y[0]}}}" for x, y in zip(xs, ys)) + "}"
    common = "MaxTrainingRounds -> 3, RandomSeeding -> 2, TrainingProgressReporting -> None, BatchSize -> 3"
    for code in (f"NetTrain[net, {rules}, {common}]", f"NetTrain[net, xs -> ys, {common}]",
                 f'NetTrain[net, <|"Input" -> xs, "Output" -> ys|>, {common}]',
                 f'NetTrain[net, {rules}, "TrainedNet", {common}, Method -> {{"ADAM"}}]'):
        got = from_wolfram(code, net=net, xs=xs, ys=ys)
        assert_same_net(got, want)
    res = from_wolfram(f'r = NetTrain[net, {rules}, All, {common}]; r["TotalRounds"]', net=net)
    assert res == 3
    sgd = from_wolfram(f'NetTrain[net, {rules}, {common}, Method -> {{"SGD", "Momentum" -> 0.5}}]', net=net)
    assert_same_net(sgd, NetTrain(net, list(zip(xs, ys)), **opts, Method=("SGD", {"Momentum": 0.5})))


# ---- pure functions -------------------------------------------------------------------------------
def test_pure_functions_are_tensor_functions_of_elementwise_and_threading_layers():
    x = np.array([-1.5, -0.25, 0.0, 0.5, 2.0], dtype=np.float32)
    layer = from_wolfram('ElementwiseLayer[Tanh[#] + #^2 - Ramp[-#]/2 + LogisticSigmoid[#]*Exp[-#^2] &, '
                         '"Input" -> 5]')
    want = np.tanh(x) + x ** 2 - np.maximum(-x, 0) / 2 + 1 / (1 + np.exp(-x)) * np.exp(-(x ** 2))
    np.testing.assert_allclose(layer(x.tolist()), want, rtol=1e-6, atol=1e-6)
    two = from_wolfram("ThreadingLayer[#1 * #2 - 1 &]")
    a, b = [[1.0, 2.0], [3.0, -4.0]], [[0.5, 2.0], [1.0, 0.25]]
    np.testing.assert_allclose(two([a, b]), np.array(a) * np.array(b) - 1, rtol=1e-6)
    assert from_wolfram("ThreadingLayer[Times]")([[1, 2], [3, 4]]) == [3.0, 8.0]
    assert from_wolfram("(#1 * #2 - 1 &)[3, 2]") == 5
    t = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    fn = from_wolfram("Sin[#]^2 + Sqrt[#] &")
    assert torch.autograd.gradcheck(fn, (t,))
    for name, want in (("Cos", np.cos), ("Sqrt", np.sqrt), ("Abs", np.abs)):
        y = from_wolfram(f'ElementwiseLayer[{name}, "Input" -> 2]')([0.25, 0.5])
        np.testing.assert_allclose(y, want([0.25, 0.5]), rtol=1e-6)
    assert from_wolfram('ElementwiseLayer["ReLU", "Input" -> 2]')([-1.0, 2.0]) == [0.0, 2.0]


def test_a_pure_function_refuses_what_is_not_arithmetic():
    for code in ("ElementwiseLayer[Table[#, 3] &]", "ElementwiseLayer[# + x &]", 'ElementwiseLayer[StringLength[#] &]'):
        with pytest.raises(NotSupportedError):
            from_wolfram(code)
    assert from_wolfram("ElementwiseLayer[# + c &, \"Input\" -> 1]", c=2)([1.0]) == [3.0]  # a bound number


# ---- round trips --------------------------------------------------------------------------------
SEQ2 = [[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]]
LAYERS = {
    "Linear": (lambda: LinearLayer(2, Input=3, LearningRateMultipliers={"Biases": 0}), [0.5, -1.0, 2.0]),
    "Linear-inf-multiplier": (lambda: LinearLayer(2, Input=3, LearningRateMultipliers=math.inf), [1.0, 2.0, 3.0]),
    "Elementwise-name": (lambda: ElementwiseLayer("Ramp", Input=3), [0.5, -1.0, 2.0]),
    "Softmax": (lambda: SoftmaxLayer(Input=3), [0.5, -1.0, 2.0]),
    "Dropout": (lambda: DropoutLayer(0.25, Input=3), [0.5, -1.0, 2.0]),
    "SequenceLast": (lambda: SequenceLastLayer(Input=("Varying", 2)), SEQ2),
    "SequenceMost": (lambda: SequenceMostLayer(Input=("Varying", 2)), SEQ2),
    "SequenceRest": (lambda: SequenceRestLayer(Input=("Varying", 2)), SEQ2),
    "SequenceReverse": (lambda: SequenceReverseLayer(Input=("Varying", 2)), SEQ2),
    "Aggregation": (lambda: AggregationLayer("Max", 1, Input=("Varying", 2)), SEQ2),
    "Aggregation-default-levels": (lambda: AggregationLayer("Mean", Input=(3, 2)), SEQ2),
    "Catenate": (lambda: CatenateLayer(Input=[2, 3]), [[1.0, 2.0], [3.0, 4.0, 5.0]]),
    "Catenate-sequences": (lambda: CatenateLayer(-1, Input=[("Varying", 2), ("Varying", 1)]),
                           [SEQ2, [[1.0], [2.0], [3.0]]]),
    "Total": (lambda: TotalLayer(Input=[2, 2]), [[1.0, 2.0], [3.0, 4.0]]),
    "Threading": (lambda: ThreadingLayer("Subtract", Input=[2, 2]), [[1.0, 2.0], [3.0, 5.0]]),
    "UnitVector": (lambda: UnitVectorLayer(4), [1, 4, 2]),
    "Embedding": (lambda: EmbeddingLayer(3, 5), [1, 5, 2]),
    "Embedding-sequence-input": (lambda: EmbeddingLayer(2, 4, Input="Varying"), [1, 2, 4]),
    "LSTM": (lambda: LongShortTermMemoryLayer(3, Input=("Varying", 2), Dropout={"VariationalInput": 0.1,
                                                                                 "VariationalState": 0.5}), SEQ2),
    "LSTM-fixed-length": (lambda: LongShortTermMemoryLayer(2, Input=(3, 2), Output=(3, 2), Dropout=0.2), SEQ2),
    "LSTM-encoder": (lambda: LongShortTermMemoryLayer(
        2, Input=NetEncoder(("Characters", [DigitCharacter, "+"], "UnitVector"))), "12+3"),
    "GRU": (lambda: GatedRecurrentLayer(3, Input=("Varying", 2), Dropout={"StateUpdate": 0.3},
                                        LearningRateMultipliers={"ResetGateBiases": 2.5}), SEQ2),
    "BasicRecurrent": (lambda: BasicRecurrentLayer(2, Input=("Varying", Automatic)), None),
    "CrossEntropyLoss": (lambda: CrossEntropyLossLayer("Probabilities", Input=3),
                         {"Input": [0.2, 0.3, 0.5], "Target": [0.0, 1.0, 0.0]}),
    "MeanSquaredLoss": (lambda: MeanSquaredLossLayer(Input=2), {"Input": [1.0, 2.0], "Target": [0.0, 2.0]}),
    "MeanAbsoluteLoss": (lambda: MeanAbsoluteLossLayer(Input=2), {"Input": [1.0, 2.0], "Target": [0.0, 2.0]}),
    "NetMap": (lambda: NetMapOperator(LinearLayer(2), Input=("Varying", 2)), SEQ2),
    "NetBidirectional": (lambda: NetBidirectionalOperator(LongShortTermMemoryLayer(2), Input=("Varying", 2)), SEQ2),
    "NetBidirectional-pair": (lambda: NetBidirectionalOperator((GatedRecurrentLayer(2), BasicRecurrentLayer(2)),
                                                               "Total", Input=("Varying", 2)), SEQ2),
    "Chain-names-and-coders": (lambda: NetChain(
        {"rnn": LongShortTermMemoryLayer(4), "last": SequenceLastLayer(), "lin": 3, "soft": SoftmaxLayer()},
        Input=NetEncoder(("Characters", "abc", "UnitVector"), IgnoreCase=True),
        Output=NetDecoder(("Class", ["x", 2, 3.5]))), "abC"),
    "Chain-scalar": (lambda: NetChain([EmbeddingLayer(2), GatedRecurrentLayer(3), SequenceLastLayer(),
                                       LinearLayer(1)], Input=NetEncoder(("Characters", "0123456789+")),
                                      Output="Scalar"), "1+2"),
    "Graph": (lambda: NetGraph(
        {"lstm": LongShortTermMemoryLayer(3, Input=("Varying", 2)), "last": SequenceLastLayer(),
         "head": NetChain([LinearLayer(3), ElementwiseLayer("Tanh")]), "cat": CatenateLayer()},
        [("lstm", "last", "head"), (NetPort("s0"), NetPort("lstm", "State")), (["head", "last"], "cat"),
         (NetPort("lstm", "CellState"), NetPort("cT"))], s0=3), {"Input": SEQ2, "s0": [0.1, 0.2, 0.3]}),
}


@pytest.mark.parametrize("case", list(LAYERS))
def test_every_layer_and_container_round_trips_through_wolfram_code(case):
    make, x = LAYERS[case]
    bare = make()
    assert_same_structure(bare, from_wolfram(to_wolfram(bare)))
    if x is None:
        return
    net = NetInitialize(bare, RandomSeeding=7)
    back = from_wolfram(to_wolfram(net))
    assert_same_structure(net, back)
    assert back(x) == net(x)


def test_a_layer_taken_out_of_a_chain_keeps_the_input_the_chain_inferred():
    chain = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer(), LinearLayer(2)],
                                   Input=("Varying", 2)))
    for i in (1, 2, 3):
        layer = NetExtract(chain, i)
        back = from_wolfram(to_wolfram(layer))
        assert back.input_ports() == layer.input_ports() and back.output_ports() == layer.output_ports()
    assert to_wolfram(NetExtract(NetChain([LinearLayer(2)], Input=3), 1)) == 'LinearLayer[2, "Input" -> 3]'


def test_export_and_import_by_their_wolfram_names(tmp_path):
    net = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=("Varying", 2)))
    path = str(tmp_path / "net.wlnet")
    assert from_wolfram("Export[path, net]", path=path, net=net) == path
    assert_same_net(from_wolfram(f"Import[{to_wolfram(path)}]"), net)


def test_a_state_object_and_options_round_trip():
    net = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=("Varying", 2)))
    obj = NetStateObject(net, {(1, "State"): [0.1, -0.2, 0.3], (1, "CellState"): [1.0, 2.0, 3.0]})
    back = from_wolfram(to_wolfram(obj))
    assert_same_net(back.net, net)
    assert back([[1, 2]]) == obj([[1, 2]])
    opts = {"MaxTrainingRounds": 5, "Method": ("ADAM", {"LearningRateSchedule": "Cosine"}), "BatchSize": Automatic,
            "ValidationSet": wlnet.Scaled(0.1), "TrainingProgressReporting": None}
    text = to_wolfram(opts)
    assert text.startswith("{MaxTrainingRounds -> 5, Method -> {\"ADAM\", \"LearningRateSchedule\" -> \"Cosine\"}")
    back = from_wolfram(text)
    assert back.keys() == opts.keys() and back["Method"] == opts["Method"] and back["ValidationSet"].f == 0.1


def test_pure_functions_and_symbols_print_back_as_wolfram_code():
    layer = from_wolfram('ElementwiseLayer[Tanh[#] + #^2 - (1 - #)/(2*#) &, "Input" -> 2]')
    again = from_wolfram(to_wolfram(layer))
    assert to_wolfram(again) == to_wolfram(layer)
    assert again([0.5, 1.5]) == layer([0.5, 1.5])
    dec = from_wolfram('NetDecoder[{"Class", {Less, Greater, "Equal"}}]')
    assert to_wolfram(dec) == 'NetDecoder[{"Class", {Less, Greater, "Equal"}}]'
    assert isinstance(dec.labels[0], Symbol) and dec.labels[0] == "Less"
    with pytest.raises(NotSupportedError, match="Python function"):
        to_wolfram(ElementwiseLayer(lambda t: t * 2))


def test_data_values_print_as_wolfram():
    assert to_wolfram([1, 2.5, "a\"b", None, True]) == '{1, 2.5, "a\\"b", None, True}'
    assert to_wolfram(np.array([[1.5e-7, 3.0]], dtype=np.float32)) == 'NumericArray[{{1.5*^-7,3.0}}, "Real32"]'
    assert to_wolfram(np.float32(1e20)) == "1.0*^20" and from_wolfram("1.0*^20") == 1e20
    assert to_wolfram(slice(2, None)) == "2 ;; All" and from_wolfram("2 ;; All") == slice(2, None)
    assert to_wolfram(math.inf) == "Infinity" and to_wolfram(NetPort(All, "States")) == 'NetPort[All, "States"]'


FLOATS = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(1, 3), n=st.integers(1, 3), data=st.data())
def test_any_float32_array_comes_back_bit_for_bit(k, n, data):
    w = np.array(data.draw(st.lists(FLOATS, min_size=n * k, max_size=n * k)), dtype=np.float32).reshape(n, k)
    b = np.array(data.draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=np.float32)
    layer = LinearLayer(n, Weights=w, Biases=b)
    back = from_wolfram(to_wolfram(layer))
    assert np.array_equal(bits(NetExtract(back, "Weights")), bits(w))  # -0.0, subnormals, 3.4e38 included
    assert np.array_equal(bits(NetExtract(back, "Biases")), bits(b))


RECURRENT = st.sampled_from([LongShortTermMemoryLayer, GatedRecurrentLayer, BasicRecurrentLayer])


@st.composite
def random_nets(draw):
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        cls = draw(RECURRENT)
        opts = {}
        if draw(st.booleans()):
            opts["Dropout"] = draw(st.sampled_from([0.25, {"VariationalWeights": 0.1}, {"VariationalInput": 0.5}]))
        layers.append(cls(draw(st.integers(1, 4)), **opts))
    tail = draw(st.sampled_from(["map", "last", "bi", None]))
    if tail == "map":
        layers.append(NetMapOperator(LinearLayer(draw(st.integers(1, 3)))))
    elif tail == "last":
        layers += [SequenceLastLayer(), LinearLayer(draw(st.integers(1, 3))), SoftmaxLayer()]
    elif tail == "bi":
        layers.append(NetBidirectionalOperator(GatedRecurrentLayer(2), draw(st.sampled_from(["Catenate", "Total"]))))
    k = draw(st.integers(1, 3))
    net = NetChain(layers, Input=("Varying", k))
    if draw(st.booleans()):
        net = NetGraph({"body": net, "head": ElementwiseLayer(draw(st.sampled_from(["Tanh", "Ramp"])))},
                       [("body", "head")])
    return NetInitialize(net, RandomSeeding=draw(st.integers(0, 1000))), k


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=random_nets())
def test_random_nets_round_trip(case):
    net, k = case
    back = from_wolfram(to_wolfram(net))
    assert_same_structure(net, back)
    x = [[0.1 * (i + j) for j in range(k)] for i in range(3)]
    assert back(x) == net(x)


# ---- the script form ------------------------------------------------------------------------------
def test_python_m_wlnet_run_prints_the_last_value(tmp_path, capsys):
    from wlnet.__main__ import main

    script = tmp_path / "net.wl"
    script.write_text('(* a notebook cell *)\nnet = NetInitialize@NetChain[{LongShortTermMemoryLayer[3], '
                      'SequenceLastLayer[]}, "Input" -> {"Varying", 2}]\nnet[{{1, 2}, {3, 4}}]\n')
    assert main(["run", str(script)]) == 0
    out = capsys.readouterr().out.strip()
    chain = NetInitialize(NetChain([LongShortTermMemoryLayer(3), SequenceLastLayer()], Input=("Varying", 2)))
    assert from_wolfram(out) == chain([[1, 2], [3, 4]])  # printed as Wolfram code, read back the same
    script.write_text('n = NetTrain[NetInitialize@LinearLayer[1, "Input" -> 1], {{1.} -> {2.}, {2.} -> {4.}}, All, '
                      "MaxTrainingRounds -> 2, TrainingProgressReporting -> None]")
    assert main(["run", str(script)]) == 0
    assert "NetTrainResultsObject" in capsys.readouterr().out
    script.write_text("x = {1, 2\n")
    assert main(["run", str(script)]) == 1
    assert 'expected "}" to close the "{" at line 1, column 5' in capsys.readouterr().err
    assert main(["run", "-e", "m = 3", str(tmp_path / "missing.wl")]) == 2
