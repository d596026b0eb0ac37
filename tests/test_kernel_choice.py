"""The kernel choice measured on the machine: forced choices obeyed, the table written, read,
keyed by the machine, a corrupt or foreign table ignored and measured again, the budget kept,
and the choice never changing a result beyond rounding. Nothing here depends on which kernel
wins on this CPU."""

from __future__ import annotations

import json

import pytest
import torch

import wlnet as w
from wlnet.kernels import cells, choice, dropout, native, recurrence

LSTM, GRU, RNN = cells.LSTM, cells.GRU, cells.RNN
CPU = torch.device("cpu")


def built():
    return native.usable_for(CPU, torch.float32) is not None


needs_native = pytest.mark.skipif(not built(), reason="the native kernel is not built here (the choice is torch's)")


@pytest.fixture
def table(tmp_path, monkeypatch):
    """The table in a temporary folder, this process's choices forgotten before and after."""
    path = tmp_path / choice.TABLE_NAME
    monkeypatch.setattr(choice, "table_path", lambda: path)
    monkeypatch.delenv(choice.ENV, raising=False)
    monkeypatch.delenv("WLNET_GEMM", raising=False)
    choice.reset()
    yield path
    choice.reset()


def fake_times(monkeypatch, times: dict):
    """The measurement replaced by given times (µs by candidate); returns the list of classes measured."""
    measured = []

    def measure(cell, dtype, n, B, T, k, ragged, grad, trials=3):
        measured.append(choice.class_of(cell, dtype, n, B, T, ragged, grad))
        best = min(times, key=times.__getitem__)
        kernel, _, product = best.partition(":")
        return {"kernel": kernel, "gemm": product or None, "times": dict(times), "shape": [B, T, k, n]}

    monkeypatch.setattr(choice, "measure", measure)
    return measured


def test_shape_classes():
    key = choice.class_of(LSTM, torch.float32, 20, 64, 8, True, True)
    assert key == "LongShortTermMemoryLayer|float32|n32|B64|T16|ragged|train"
    assert choice.class_of(LSTM, torch.float32, 17, 50, 16, False, False).split("|")[2:5] == ["n32", "B64", "T16"]
    assert choice.class_of(LSTM, torch.float32, 1024, 1, 1, False, False).split("|")[2:5] == ["n1024", "B1", "T4"]
    assert choice.class_of(GRU, torch.float64, 5, 65, 17, False, True).split("|")[1:5] == ["float64", "n16", "B256",
                                                                                         "T64"]


@needs_native
def test_a_class_is_measured_once_kept_and_read_by_a_later_process(table, monkeypatch):
    measured = fake_times(monkeypatch, {"native:blas": 30.0, "native:aten": 20.0, "fused": 50.0})
    assert recurrence.pick(LSTM, CPU, torch.float32, n=20, grad=True, shape=(64, 8, 2), ragged=True) == \
        ("native", "aten")
    assert recurrence.pick(LSTM, CPU, torch.float32, n=30, grad=True, shape=(60, 7, 2), ragged=True) == \
        ("native", "aten")  # the same class: not measured again
    assert len(measured) == 1
    kept = json.loads(table.read_text())
    assert kept["machine"] == choice.machine() and torch.__version__ in kept["machine"]
    assert kept["choices"][measured[0]]["kernel"] == "native" and kept["choices"][measured[0]]["gemm"] == "aten"
    choice.reset()  # as a new process
    fake_times(monkeypatch, {"fused": 1.0, "native:blas": 9.0})
    assert recurrence.pick(LSTM, CPU, torch.float32, n=20, grad=True, shape=(64, 8, 2), ragged=True) == \
        ("native", "aten")
    assert choice.source[measured[0]] == "kept"
    # another class is measured and added beside the first
    assert recurrence.choose(LSTM, CPU, torch.float32, n=512, grad=False, shape=(64, 32, 16)) == "fused"
    assert len(choice.read_table(table)) == 2


@needs_native
@pytest.mark.parametrize("text", ["{not json", json.dumps({"machine": "another CPU", "choices": {}}), "[1, 2]",
                                  "\x00\x01"])
def test_a_corrupt_or_foreign_table_is_ignored_and_measured_again(table, monkeypatch, text):
    key = choice.class_of(GRU, torch.float32, 8, 4, 3, False, False)
    if text.startswith("{\"machine\""):
        text = json.dumps({"machine": "another CPU", "choices": {key: {"kernel": "fused", "gemm": None}}})
    table.write_text(text)
    measured = fake_times(monkeypatch, {"native:blas": 1.0, "fused": 2.0})
    assert recurrence.pick(GRU, CPU, torch.float32, n=8, grad=False, shape=(4, 3, 2)) == ("native", "blas")
    assert measured == [key]
    assert json.loads(table.read_text())["machine"] == choice.machine()


@needs_native
def test_an_entry_naming_no_kernel_is_ignored(table, monkeypatch):
    key = choice.class_of(RNN, torch.float32, 8, 4, 3, False, False)
    table.write_text(json.dumps({"machine": choice.machine(), "choices": {key: {"kernel": "magic", "gemm": None}}}))
    measured = fake_times(monkeypatch, {"native:aten": 1.0, "fused": 2.0})
    assert recurrence.pick(RNN, CPU, torch.float32, n=8, grad=False, shape=(4, 3, 2)) == ("native", "aten")
    assert measured == [key]


@needs_native
def test_past_the_budget_the_nearest_measured_class_decides(table, monkeypatch):
    measured = fake_times(monkeypatch, {"native:blas": 5.0, "fused": 1.0})
    recurrence.pick(LSTM, CPU, torch.float32, n=256, grad=False, shape=(64, 32, 16))
    monkeypatch.setattr(choice, "_spent", [choice.BUDGET])
    assert recurrence.pick(LSTM, CPU, torch.float32, n=512, grad=False, shape=(64, 32, 16)) == ("fused", None)
    key = choice.class_of(LSTM, torch.float32, 512, 64, 32, False, False)
    assert len(measured) == 1 and choice.source[key] == "nearest"
    # no measured class of that cell and mode: the native kernel on the module's product
    assert recurrence.pick(GRU, CPU, torch.float32, n=512, grad=True, shape=(64, 32, 16)) == ("native", None)


def test_the_measurement_spends_its_budget_and_stops(table, monkeypatch):
    if not built():
        pytest.skip("no native kernel: nothing is measured")
    calls = []

    def slow(*args, **kw):
        calls.append(args)
        choice._spent[0] += 0.6  # as if each measurement took 0.6 s
        return {"kernel": "native", "gemm": None, "times": {}}

    monkeypatch.setattr(choice, "measure", slow)
    for n in (16, 64, 256, 1024):
        recurrence.pick(LSTM, CPU, torch.float32, n=n, grad=True, shape=(8, 4, 2))
    assert len(calls) == 2  # 0.6 s, then 1.2 s ≥ the 1 s budget


@pytest.mark.parametrize("kernel", ["native", "fused", "custom", "unroll"])
def test_a_forced_kernel_is_obeyed_wherever_the_cell_has_it_and_it_takes_the_masks(table, monkeypatch, kernel):
    fake_times(monkeypatch, {"native:blas": 1.0, "fused": 2.0})
    nat = built()
    state_masks = dropout.Masks(s=torch.ones(1, 4, 1))
    unforced = {cell.name: recurrence.choose(cell, CPU, torch.float32, n=32, grad=True, shape=(4, 3, 2))
                for cell in (LSTM, GRU, RNN)}
    unforced_masked = recurrence.choose(LSTM, CPU, torch.float32, state_masks)
    monkeypatch.setenv(choice.ENV, kernel)
    for cell in (LSTM, GRU, RNN):
        got = recurrence.choose(cell, CPU, torch.float32, n=32, grad=True, shape=(4, 3, 2))
        takes = kernel in cell.kernels and (kernel != "native" or nat)
        assert got == (kernel if takes else unforced[cell.name])
    got = recurrence.choose(LSTM, CPU, torch.float32, state_masks)
    # the fused kernel takes no state masks, forced or not
    assert got == (unforced_masked if kernel == "fused" or (kernel == "native" and not nat) else kernel)


def test_forcing_a_kernel_names_it_in_the_table_printout(table, monkeypatch):
    monkeypatch.setenv(choice.ENV, "fused")
    text = choice.describe()
    assert ("WLNET_KERNEL=fused" in text) if built() else ("not built" in text)


@needs_native
def test_the_real_measurement_times_every_candidate_and_picks_the_fastest(table):
    for cell in (LSTM, GRU):
        for grad in (True, False):
            e = choice.measure(cell, torch.float32, 16, 4, 3, 2, True, grad, trials=1)
            assert set(e["times"]) == set(choice.candidates(cell))
            assert all(t > 0 for t in e["times"].values())
            best = min(e["times"], key=e["times"].__getitem__)
            assert best == e["kernel"] + (f":{e['gemm']}" if e["gemm"] else "")
    assert native.gemm() in native.GEMMS  # the module's own product restored


def _net_outputs(env: str | None, monkeypatch, table):
    if env is None:
        monkeypatch.delenv(choice.ENV, raising=False)
    else:
        monkeypatch.setenv(choice.ENV, env)
    choice.reset()
    torch.manual_seed(3)
    net = w.NetInitialize(w.NetChain([w.LongShortTermMemoryLayer(7), w.GatedRecurrentLayer(5),
                                      w.BasicRecurrentLayer(4), w.SequenceLastLayer()], Input=("Varying", 3)),
                          RandomSeeding=5)
    xs = [torch.randn(t, 3, generator=torch.Generator().manual_seed(t)).tolist() for t in (5, 2, 7, 1)]
    with torch.no_grad():
        out = torch.tensor(net(xs))
    module = net.build(trainable=True)
    from wlnet.core.data import Seq
    from wlnet.core.runtime import Ctx

    x = torch.nn.utils.rnn.pad_sequence([torch.tensor(v) for v in xs], batch_first=True)
    lengths = torch.tensor([len(v) for v in xs])
    y, _ = module({"Input": Seq(x, lengths)}, {}, Ctx(True, None))
    y["Output"].square().sum().backward()
    grads = torch.cat([p.grad.reshape(-1) for p in module.parameters()])
    return out, grads


@pytest.mark.parametrize("env", ["fused", "unroll", "custom"] + (["native"] if built() else []))
def test_the_choice_never_changes_a_result_beyond_rounding(table, monkeypatch, env):
    """Values and gradients of a net of the three cells, ragged, on each forced kernel against the
    measured choice: equal to rounding (the kernels sum in different orders)."""
    want, g_want = _net_outputs(None, monkeypatch, table)
    got, g_got = _net_outputs(env, monkeypatch, table)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-5)


def test_the_table_printout_runs_as_a_module():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "wlnet.kernels"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert ("machine:" in done.stdout) if built() else ("not built" in done.stdout)


@needs_native
def test_a_class_another_process_measured_meanwhile_is_read_not_measured_again(table, monkeypatch):
    measured = fake_times(monkeypatch, {"native:blas": 1.0, "fused": 2.0})
    recurrence.pick(GRU, CPU, torch.float32, n=8, grad=False, shape=(4, 3, 2))  # this process read the table
    other = choice.class_of(GRU, torch.float32, 64, 4, 3, False, False)
    kept = json.loads(table.read_text())
    kept["choices"][other] = {"kernel": "fused", "gemm": None, "times": {}}
    table.write_text(json.dumps(kept))  # as another process writes it
    assert recurrence.pick(GRU, CPU, torch.float32, n=64, grad=False, shape=(4, 3, 2)) == ("fused", None)
    assert len(measured) == 1 and choice.source[other] == "kept"
    assert (table.parent / (choice.TABLE_NAME + ".lock")).exists()


@needs_native
def test_forget_drops_the_table_and_the_process_choices(table, monkeypatch):
    measured = fake_times(monkeypatch, {"native:blas": 1.0, "fused": 2.0})
    recurrence.pick(RNN, CPU, torch.float32, n=8, grad=True, shape=(4, 3, 2))
    assert table.exists()
    choice.forget()
    assert not table.exists()
    recurrence.pick(RNN, CPU, torch.float32, n=8, grad=True, shape=(4, 3, 2))
    assert len(measured) == 2 and table.exists()


@needs_native
@pytest.mark.filterwarnings("ignore:.*torch.jit.trace.*:DeprecationWarning")
def test_nothing_is_measured_while_a_trace_records(table, monkeypatch):
    measured = fake_times(monkeypatch, {"native:blas": 1.0, "fused": 2.0})

    def f(x):
        recurrence.pick(GRU, CPU, torch.float32, n=8, grad=False, shape=(4, 3, 2))
        return x * 2

    torch.jit.trace(f, torch.ones(2), check_trace=False)
    assert measured == []
    recurrence.pick(GRU, CPU, torch.float32, n=8, grad=False, shape=(4, 3, 2))
    assert len(measured) == 1  # measured at the first call outside the trace


@needs_native
@pytest.mark.parametrize("cell", [LSTM, GRU, RNN], ids=lambda c: c.name)
def test_the_backward_runs_on_the_matrix_product_its_forward_ran_on(table, monkeypatch, cell):
    lib = native.get()
    before = lib.gemm()
    other = native.GEMMS[1 - before]
    fake_times(monkeypatch, {f"native:{other}": 1.0, f"native:{native.GEMMS[before]}": 2.0, "fused": 3.0})
    seen = []

    class Spy:  # the module, noting the product in effect at each call
        def __getattr__(self, name):
            f = getattr(lib, name)
            if not name.endswith(("forward", "backward", "forward_rows", "backward_rows")):
                return f
            return lambda *args: seen.append((name, native.GEMMS[lib.gemm()])) or f(*args)

    monkeypatch.setattr(native, "get", lambda: Spy())
    g = torch.Generator().manual_seed(1)
    arrays = {name: (torch.randn(shape, generator=g) * 0.3).requires_grad_()
              for name, shape in cell.array_shapes(6, 3).items()}
    x = torch.randn(4, 5, 3, generator=g, requires_grad=True)
    out, _ = recurrence.run(cell, arrays, x, None, ())
    assert lib.gemm() == before  # set around the call only
    out.sum().backward()
    assert [p for _, p in seen] == [other, other] and seen[1][0].endswith(("backward", "backward_rows"))
    assert lib.gemm() == before
