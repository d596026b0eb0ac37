"""Figures render by themselves in a notebook: each has _repr_png_ (and _repr_svg_) giving an
image, and stays a matplotlib Figure (savefig, axes)."""

import io
import pickle

import pytest
from matplotlib.figure import Figure

import wlnet as w
from wlnet.show.graphics import WLFigure, figure

PNG = b"\x89PNG\r\n\x1a\n"


def net():
    return w.NetInitialize(w.NetChain([w.LinearLayer(3), w.SoftmaxLayer()], Input=2,
                                      Output=w.NetDecoder(("Class", ["a", "b", "c"]))), RandomSeeding=1)


def check(fig):
    assert isinstance(fig, Figure) and isinstance(fig, WLFigure)
    png = fig._repr_png_()
    assert png[:8] == PNG and len(png) > 1000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
    assert width > 50 and height > 50
    svg = fig._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")  # still a Figure
    assert buffer.getvalue()[:8] == PNG


def test_summary_graphic_is_an_image():
    check(w.Information(net(), "SummaryGraphic"))


def test_confusion_matrix_plot_is_an_image():
    data = [([1.0, 0.0], "a"), ([0.0, 1.0], "b"), ([1.0, 1.0], "c")]
    check(w.NetMeasurements(net(), data, "ConfusionMatrixPlot"))


def test_a_figure_pickles_and_draws_alike():
    fig = figure(figsize=(2, 2), dpi=50)
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    again = pickle.loads(pickle.dumps(fig))
    assert isinstance(again, WLFigure) and again._repr_png_()[:8] == PNG


def test_ipython_shows_the_figure_as_png_without_a_backend():
    formatters = pytest.importorskip("IPython.core.formatters")
    fig = w.Information(net(), "SummaryGraphic")
    png = formatters.PNGFormatter()(fig)
    assert png is not None and png[:8] == PNG


def test_loss_plots_of_training_results_are_images():
    net = w.NetInitialize(w.LinearLayer(1, Input=1), RandomSeeding=2)
    data = [([x], [2.0 * x]) for x in (0.0, 0.5, 1.0, 1.5)]
    res = w.NetTrain(net, data, w.All, MaxTrainingRounds=3, BatchSize=2, ValidationSet=data[:2],
                     TrainingProgressReporting=None)
    check(res["LossPlot"])
    evolution = res["LossEvolutionPlot"]
    check(evolution)
    lines = evolution.axes[0].get_lines()
    assert [len(line.get_xdata()) for line in lines] == [6, 3, 3]  # batches, rounds, validations
    assert list(lines[1].get_xdata()) == [2, 4, 6]
    for fig in res["FinalPlots"].values():
        check(fig)
