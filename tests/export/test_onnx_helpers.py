"""The family-neutral ONNX helpers on a toy module: both exporters, dynamic axes, parity numbers and errors."""

import numpy as np
import pytest
import torch
from torch import nn

from segfit.export.onnx import ParityError, check_parity, export_graph, open_session


class Toy(nn.Module):
    """Two inputs with a shared dynamic batch axis, two outputs."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x, offset):
        return self.linear(x) + offset[:, None], x.sum(dim=-1).exp()


NAMES = dict(input_names=["x", "offset"], output_names=["y", "total"])
AXES = {"x": {0: "batch"}, "offset": {0: "batch"}, "y": {0: "batch"}, "total": {0: "batch"}}


def inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((batch, 4)).astype(np.float32),
            "offset": rng.standard_normal(batch).astype(np.float32)}


@pytest.mark.parametrize("exporter, opset", [("legacy", 17), pytest.param("dynamo", 18, marks=pytest.mark.slow)])
def test_export_runs_in_onnxruntime_with_another_batch_size(tmp_path, exporter, opset):
    toy = Toy().eval()
    path = export_graph(toy, [torch.randn(2, 4), torch.randn(2)], tmp_path / "sub" / "toy.onnx", **NAMES,
                        dynamic_axes=AXES, exporter=exporter)
    assert path == tmp_path / "sub" / "toy.onnx" and path.is_file()
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["toy.onnx"]  # weights inside, no .data file
    import onnx

    assert onnx.load(str(path)).opset_import[0].version == opset
    session = open_session(path)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert [i.name for i in session.get_inputs()] == ["x", "offset"]
    feeds = inputs(5)
    y, total = session.run(None, feeds)
    with torch.no_grad():
        expected_y = toy.linear(torch.from_numpy(feeds["x"])) + torch.from_numpy(feeds["offset"])[:, None]
    # ORT vs PyTorch / NumPy kernels: ≤ 6e-8 and ≤ 2e-6 (of exp values up to 8) seen
    np.testing.assert_allclose(y, expected_y.numpy(), atol=1e-6)
    np.testing.assert_allclose(total, np.exp(feeds["x"].sum(-1)), rtol=1e-5)

    diffs = check_parity(toy, session, inputs(7, seed=1), "toy")
    assert set(diffs) == {"y", "total"} and all(0 <= d < 1e-5 for d in diffs.values())


def test_parity_error_names_the_graph_and_the_output(tmp_path):
    toy = Toy().eval()
    path = export_graph(toy, [torch.randn(2, 4), torch.randn(2)], tmp_path / "toy.onnx", **NAMES, dynamic_axes=AXES)
    session = open_session(path)
    with torch.no_grad():
        toy.linear.bias.add_(0.01)  # only the first output changes
    with pytest.raises(ParityError, match=r"toy_graph: output y differs from PyTorch by 0\.01 .* > tolerance 0\.001"):
        check_parity(toy, session, inputs(3), "toy_graph", tolerance=1e-3)
    diff = check_parity(toy, session, inputs(3), "toy_graph", tolerance=0.02)["y"]
    assert diff == pytest.approx(0.01, abs=1e-6)  # the bias shift, plus ORT's rounding vs PyTorch's


def test_nan_and_shape_mismatch_fail_parity(tmp_path):
    toy = Toy().eval()
    path = export_graph(toy, [torch.randn(2, 4), torch.randn(2)], tmp_path / "toy.onnx", **NAMES, dynamic_axes=AXES)
    session = open_session(path)
    feeds = inputs(2)
    with torch.no_grad():
        toy.linear.weight[0, 0] = float("nan")
    with pytest.raises(ParityError, match="output y differs"):
        check_parity(toy, session, feeds, "toy")

    class Wider(Toy):
        def forward(self, x, offset):
            y, total = super().forward(x, offset)
            return torch.cat([y, y], dim=1), total

    with pytest.raises(ParityError, match=r"toy: output y has shape \(2, 3\) in ONNX, \(2, 6\) in PyTorch"):
        check_parity(Wider().eval(), session, feeds, "toy")


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.onnx: ONNX graph not found"):
        open_session(tmp_path / "missing.onnx")
    args = (Toy(), [torch.randn(2, 4), torch.randn(2)], tmp_path / "toy.onnx", NAMES["input_names"], NAMES["output_names"])
    with pytest.raises(ValueError, match="exporter: unknown value 'jit'"):
        export_graph(*args, exporter="jit")
    with pytest.raises(ValueError, match="opset: the dynamo exporter needs opset ≥ 18, got 17"):
        export_graph(*args, exporter="dynamo", opset=17)
