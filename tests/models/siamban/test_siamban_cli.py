"""End to end through the command line: synth → check → train → evaluate → export → inference (PyTorch and ONNX)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segfit.cli import main


@pytest.mark.slow
def test_siamban_commands_end_to_end(tmp_path):
    data = tmp_path / "data"
    assert main(["data", "synth", "--kind", "tracking", "--out", str(data), "--num-train", "3", "--num-val", "1",
                 "--size", "72x96", "--num-frames", "6"]) == 0
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
results_dir: {tmp_path / 'run'}
model: {{name: siamban, backbone: tiny, channels: 16}}
data:
  train: {{datasets: [{{format: got10k, images: {data / 'train'}}}]}}
  val: {{format: got10k, images: {data / 'val'}}}
  batch_size: 2
  num_workers: 0
  template_size: 63
  search_size: 127
train: {{max_steps: 2, device: cpu, eval_every: 2, checkpoint_every: 2, unfreeze_step: 1}}
""")
    assert main(["data", "check", "-e", str(spec)]) == 0
    assert main(["train", "-e", str(spec)]) == 0
    assert main(["evaluate", "-e", str(spec)]) == 0
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["num_sequences"] == 1 and 0 <= metrics["success_auc"] <= 1
    assert main(["export", "-e", str(spec)]) == 0
    first = (data / "val" / "seq_000" / "groundtruth.txt").read_text().splitlines()[0]
    box = f"inference.init_box=[{first}]"
    source = f"inference.input={data / 'val' / 'seq_000'}"
    assert main(["inference", "-e", str(spec), source, box]) == 0
    assert main(["inference", "-e", str(spec), source, box, "inference.backend=onnx",
                 f"inference.output_dir={tmp_path / 'onnx'}"]) == 0
    torch_boxes = np.loadtxt(tmp_path / "run" / "inference" / "seq_000.txt", delimiter=",")
    onnx_boxes = np.loadtxt(tmp_path / "onnx" / "seq_000.txt", delimiter=",")
    assert torch_boxes.shape == onnx_boxes.shape == (6, 4)
    np.testing.assert_allclose(torch_boxes[0], [float(v) for v in first.split(",")], atol=0.01)
    video = tmp_path / "run" / "inference" / "seq_000.mp4"
    assert main(["inference", "-e", str(spec), f"inference.input={video}", box, "inference.video=false",
                 f"inference.output_dir={tmp_path / 'from_video'}"]) == 0  # a video file as input
    assert np.loadtxt(tmp_path / "from_video" / "seq_000.txt", delimiter=",").shape == (6, 4)
    assert main(["train", "-e", str(spec), "data.search_size=128"]) == 2  # a spec error, not a traceback
