"""Event files written without TensorFlow read back through TensorBoard's own reader."""

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from ieta_jax.metric_writer import MetricWriter, read_scalars


def test_scalars_text_and_hparams_round_trip(tmp_path):
    with MetricWriter(str(tmp_path), enabled=True) as w:
        w.write_hparams({"beta": 0.1, "loss_type": "sigmoid", "optim": {"lr": 1e-5, "warmup": 3}, "mesh": [8, 1, 1]})
        for step in range(3):
            w.write_scalars(step, {"rewards/accuracies": np.float32(step / 2), "train/learning_rate": 1e-5 * step})
        w.write_text(2, {"samples/completion": "def f():\n    return 1"})

    scalars = read_scalars(str(tmp_path))
    assert scalars["rewards/accuracies"] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert [s for s, _ in scalars["train/learning_rate"]] == [0, 1, 2]
    assert scalars["train/learning_rate"][2][1] == pytest.approx(2e-5)

    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("samples/completion")[0].tensor_proto.string_val[0].decode()
    assert text == "def f():\n    return 1"

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(next(iter(content.values()))).session_start_info
    assert start.hparams["beta"].number_value == pytest.approx(0.1)
    assert start.hparams["loss_type"].string_value == "sigmoid"
    assert start.hparams["optim.warmup"].number_value == 3
    assert start.hparams["mesh"].string_value == "[8, 1, 1]"


def test_disabled_writer_writes_nothing(tmp_path):
    with MetricWriter(str(tmp_path / "off"), enabled=False) as w:
        w.write_scalars(0, {"x": 1.0})
    assert not (tmp_path / "off").exists()


def test_text_that_utf8_cannot_carry_is_written_escaped(tmp_path):
    # a program's lone surrogate reached the held-out samples text and made tensorboard's writer raise mid-run
    with MetricWriter(str(tmp_path), enabled=True) as w:
        w.write_text(1, {"samples/error": "ValueError: bad \ud800 end"})
    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.Tensors("samples/error")[0].tensor_proto.string_val[0].decode() == "ValueError: bad \\ud800 end"
