"""A net imported from torch or ONNX keeps its source's conventions at its ports: torch's
nn.Embedding and an ONNX Gather take 0-based ids, and so does the net made from them; the Class
encoder's default form is Wolfram's (the index)."""

import warnings

import numpy as np
import pytest
import torch

import wlnet as w

pytest.importorskip("onnx")


class TextClassifier(torch.nn.Module):
    """ids (B, T), 0-based → logits (B, 2) from the LSTM's last step."""

    def __init__(self, vocabulary=10):
        super().__init__()
        self.embed = torch.nn.Embedding(vocabulary, 4)
        self.lstm = torch.nn.LSTM(4, 3, batch_first=True)
        self.head = torch.nn.Linear(3, 2)

    def forward(self, ids):
        y, _ = self.lstm(self.embed(ids))
        return self.head(y[:, -1])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    torch.manual_seed(0)
    module = TextClassifier().eval()
    path = str(tmp_path_factory.mktemp("onnx") / "classifier.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.tensor([[0, 3, 9, 1]]),), path, input_names=["ids"], output_names=["logits"],
                          dynamic_axes={"ids": {0: "batch", 1: "time"}}, dynamo=False)
    return module, w.Import(path)


IDS = np.array([[0, 3, 9, 1, 2], [4, 0, 0, 7, 8]])  # ids 0 and 9 (= vocabulary − 1) included


def test_an_imported_torch_classifier_takes_torch_ids(classifier):
    module, net = classifier
    with torch.no_grad():
        expected = module(torch.from_numpy(IDS)).numpy()
    np.testing.assert_allclose(net(IDS), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net(IDS.tolist()), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net(IDS[0].tolist()), expected[0], rtol=1e-5, atol=1e-6)


def test_ids_outside_the_sources_range_are_an_error_naming_the_port(classifier):
    _, net = classifier
    with pytest.raises(w.InputError, match=r'port "ids".*integer ids between 0 and 9.*step 2 is 10'):
        net([[1, 10, 2]])  # the 1-based form of ids, which the net used to want
    with pytest.raises(w.InputError, match="between 0 and 9"):
        net([[-1, 2]])


def test_a_wlnet_export_of_the_import_keeps_the_ids(classifier, tmp_path):
    module, net = classifier
    path = str(tmp_path / "again.onnx")
    w.Export(path, net)
    again = w.Import(path)
    with torch.no_grad():
        expected = module(torch.from_numpy(IDS)).numpy()
    np.testing.assert_allclose(again(IDS), expected, rtol=1e-5, atol=1e-6)
    assert again.encoders["ids"] == w.NetEncoder(("Integers", 10, 0))


def test_from_torch_maps_an_embedding_with_its_ids():
    torch.manual_seed(1)
    embed = torch.nn.Embedding(6, 3)
    lstm = torch.nn.LSTM(3, 2, batch_first=True)
    net = w.from_torch(torch.nn.Sequential(embed, lstm))
    x = torch.tensor([[0, 5, 2], [1, 1, 4]])
    with torch.no_grad():
        expected = lstm(embed(x))[0].numpy()
    np.testing.assert_allclose(net(x.numpy()), expected, rtol=1e-5, atol=1e-6)
    module = w.to_torch(net)  # the plain module takes torch's ids too
    with torch.no_grad():
        np.testing.assert_allclose(module(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.from_torch(module)(x.numpy()), expected, rtol=1e-5, atol=1e-6)
    lone = w.from_torch(embed)
    np.testing.assert_allclose(lone([0, 5]), embed.weight.detach().numpy()[[0, 5]], rtol=1e-6)
    with pytest.raises(w.InputError, match="between 0 and 5"):
        lone([6])


def test_from_torch_refuses_an_embedding_it_cannot_keep():
    with pytest.raises(w.NotSupportedError, match="must be the first module"):
        w.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Embedding(3, 2)))
    with pytest.raises(w.NotSupportedError, match="max_norm"):
        w.from_torch(torch.nn.Embedding(3, 2, max_norm=1.0))


def test_integers_encoder_forms():
    enc = w.NetEncoder(("Integers", 4, 0))
    assert enc([0, 3]) == [1, 4]
    assert enc([[0], [1, 2]]) == [[1], [2, 3]]
    assert w.NetEncoder(("Integers", 4, 1))([1, 4]) == [1, 4]
    for bad in [("Integers", 0, 0), ("Integers", 3), ("Integers", 3, 0.5)]:
        with pytest.raises(w.OptionError):
            w.NetEncoder(bad)
    with pytest.raises(w.InputError, match="example 2 is"):
        enc([[1], [0.5]])


def test_class_encoder_default_is_the_index():
    enc = w.NetEncoder(("Class", ["x", "y", "z"]))
    assert enc("z") == 3 and enc.output_type.integer
    assert w.NetEncoder(("Class", ["x", "y", "z"], "UnitVector"))("z") == [0.0, 0.0, 1.0]
    net = w.NetChain([w.UnitVectorLayer()], Input=enc)  # a layer of indices takes the default form as it is
    assert net(["y", "x"]) == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


# ---- NetTrain's data in the forms Python gives it: a DataLoader, a generator object, a list of dicts -------
def _line_net():
    return w.NetInitialize(w.LinearLayer(1, Input=1), RandomSeeding=2)


def test_a_torch_dataloader_is_training_data_and_starts_a_new_epoch():
    xs = torch.linspace(-1, 1, 8).unsqueeze(1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, 2 * xs + 1), batch_size=4)
    res = w.NetTrain(_line_net(), loader, w.All, MaxTrainingRounds=5, RandomSeeding=1, TrainingProgressReporting=None)
    assert res["TotalBatches"] == 5  # 2 batches an epoch: the loader starts again
    # the first batch's loss is the initial net's on the loader's first batch (x = -1, ..., -1/7)
    first = w.NetMeasurements(_line_net(), list(zip(xs[:4].numpy(), (2 * xs[:4] + 1).numpy())), "Loss")
    assert res["BatchLossList"][0] == pytest.approx(first, rel=1e-5)


def test_a_generator_object_gives_batches_until_it_ends():
    def batches(n):
        for i in range(n):
            yield [{"Input": [float(i)], "Output": [2.0 * i + 1]}, {"Input": [0.5], "Output": [2.0]}]

    res = w.NetTrain(_line_net(), batches(4), w.All, MaxTrainingRounds=3, TrainingProgressReporting=None)
    assert res["TotalBatches"] == 3
    with pytest.raises(w.TrainingError, match="the generator object given as training data ended before round 3"):
        w.NetTrain(_line_net(), batches(2), MaxTrainingRounds=3, TrainingProgressReporting=None)


def test_a_list_of_dicts_is_a_batch_of_examples():
    data = [{"Input": [1.0], "Output": [3.0]}, {"Input": [0.0], "Output": [1.0]}]
    res = w.NetTrain(_line_net(), data, w.All, MaxTrainingRounds=2, TrainingProgressReporting=None)
    assert res["TrainingExamples"] == 2 and res["TotalRounds"] == 2
    assert w.NetMeasurements(_line_net(), data, "Loss") == pytest.approx(
        w.NetMeasurements(_line_net(), [([1.0], [3.0]), ([0.0], [1.0])], "Loss"))
