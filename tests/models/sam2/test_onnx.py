"""SAM 2 ONNX graphs and OnnxSam2Predictor against HF Sam2Model / Sam2Predictor, and the CLI on the ONNX files."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from segfit.cli import main
from segfit.export.onnx import open_session
from segfit.models.sam2.automatic import automatic_map
from segfit.models.sam2.spec import Sam2AutomaticSpec
from segfit.models.sam2.build import build_sam2
from segfit.models.sam2.features import image_embeddings
from segfit.models.sam2.onnx import DECODER_FILES, ENCODER_FILE, META_FILE, OnnxSam2Predictor, export_onnx
from segfit.models.sam2.predict import Sam2Predictor, predict_low_res
from segfit.models.sam2.preprocess import preprocess_image
from segfit.models.sam2.weights import save_hf_dir

from assertions import (assert_close_to_scale, assert_same_index_map, assert_same_masks, assert_same_objects,
                        clear_of_threshold)

SIZE = 256
HW = (300, 500)


@pytest.fixture(scope="module")
def model():
    """The test model with every tensor perturbed (logits far from 0), and a stability threshold (SAM 2: 0.98)
    that the single-mask outputs of the prompts below straddle, so both branches of the fallback occur."""
    torch.manual_seed(0)
    model = build_sam2("test", image_size=SIZE).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.25 * torch.randn(param.shape, generator=gen))
    model.mask_decoder.dynamic_multimask_stability_thresh = 0.95
    return model


@pytest.fixture(scope="module")
def onnx_dir(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(model, SIZE, out)
    return out


@pytest.fixture(scope="module")
def predictors(model, onnx_dir, image):
    torch_predictor, onnx_predictor = Sam2Predictor(model, SIZE), OnnxSam2Predictor(onnx_dir, SIZE)
    torch_predictor.set_image(image)
    onnx_predictor.set_image(image)
    return torch_predictor, onnx_predictor


@pytest.fixture(scope="module")
def embeddings(onnx_dir, image):
    """The encoder graph's outputs for the image, as torch tensors."""
    pixels = preprocess_image(image, SIZE)[None].numpy()
    return [torch.from_numpy(e) for e in open_session(onnx_dir / ENCODER_FILE).run(None, {"pixel_values": pixels})]


def test_export_writes_the_graphs_and_their_meta(onnx_dir):
    assert sorted(p.name for p in onnx_dir.iterdir()) == sorted([ENCODER_FILE, *DECODER_FILES.values(), META_FILE])
    meta = json.loads((onnx_dir / META_FILE).read_text())
    assert meta["image_size"] == SIZE and meta["mask_input_size"] == [64, 64]
    assert meta["exporter"] == "legacy" and meta["opset"] == 17
    assert set(meta["graphs"]) == {"image_encoder", "prompt_decoder", "prompt_decoder_single"}
    decoder = meta["graphs"]["prompt_decoder"]
    assert decoder["inputs"] == ["feat_s0", "feat_s1", "image_embed", "input_points", "input_labels", "mask_input",
                                 "has_mask_input"]
    assert decoder["outputs"] == ["pred_masks", "iou_scores", "object_score_logits"]
    for graph in meta["graphs"].values():
        assert set(graph["max_abs_diff"]) == set(graph["outputs"])
        assert all(0 <= diff <= 1e-3 for diff in graph["max_abs_diff"].values())
    session = open_session(onnx_dir / decoder["file"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert shapes["input_points"] == ["num_objects", "num_points", 2] and shapes["has_mask_input"] == ["num_objects"]
    assert shapes["image_embed"] == [1, 32, 16, 16]


def test_encoder_graph_matches_pytorch(model, image, embeddings):
    with torch.no_grad():
        expected = image_embeddings(model, preprocess_image(image, SIZE)[None], encoder_grad=False)
    for got, want in zip(embeddings, expected):
        assert got.shape == want.shape
        assert_close_to_scale(got, want, rel=1e-5)  # ORT vs PyTorch fp32 kernels: ≤ 1e-6 of the scale seen


# 5 objects × 3 points (traced with 2 × 2), model frame: box + click, click + negatives, padding, box alone.
POINTS = torch.tensor([[[20.0, 30.0], [120.0, 140.0], [60.0, 80.0]], [[200.0, 40.0], [10.0, 250.0], [100.0, 100.0]],
                       [[128.0, 128.0], [0.0, 0.0], [0.0, 0.0]], [[140.0, 10.0], [250.0, 90.0], [0.0, 0.0]],
                       [[30.0, 200.0], [90.0, 20.0], [255.0, 255.0]]])
LABELS = torch.tensor([[2, 3, 1], [1, 0, 0], [1, -1, -1], [2, 3, -1], [1, 1, 0]])
HAS_MASK = torch.tensor([True, False, True, True, False])


def run_decoder(onnx_dir, embeddings, multimask, mask_input=None):
    """The decoder graph on POINTS / LABELS, with mask_input for the objects of HAS_MASK (None: no mask prompts)."""
    has_mask = HAS_MASK if mask_input is not None else torch.zeros(5, dtype=torch.bool)
    feeds = dict(zip(("feat_s0", "feat_s1", "image_embed"), (e.numpy() for e in embeddings)))
    feeds.update(input_points=POINTS.numpy(), input_labels=LABELS.numpy(), has_mask_input=has_mask.float().numpy(),
                 mask_input=torch.zeros(5, 1, 64, 64).numpy() if mask_input is None else mask_input.numpy())
    return [torch.from_numpy(o) for o in open_session(onnx_dir / DECODER_FILES[multimask]).run(None, feeds)]


@pytest.mark.parametrize("multimask", [True, False])
def test_decoder_graph_matches_hf_with_other_numbers_of_objects_and_points(model, onnx_dir, embeddings, multimask):
    """Each object with has_mask_input = 1 gets HF's input_masks path, the others HF's no-mask path."""
    mask_input = 40 * torch.randn(5, 1, 64, 64, generator=torch.Generator().manual_seed(2))  # beyond the ±32 clamp
    got = run_decoder(onnx_dir, embeddings, multimask, mask_input)
    with torch.no_grad():
        with_mask = predict_low_res(model, embeddings, POINTS, LABELS, mask_input=mask_input, multimask_output=multimask)
        without = predict_low_res(model, embeddings, POINTS, LABELS, multimask_output=multimask)
    assert [tuple(g.shape) for g in got] == [(5, 3 if multimask else 1, 64, 64), (5, 3 if multimask else 1), (5, 1)]
    for out, a, b in zip(got, with_mask, without):
        expected = torch.where(HAS_MASK.view(-1, *[1] * (a.dim() - 1)), a, b)
        assert not torch.allclose(a, b, atol=1e-3)  # the mask prompt matters
        torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-5)  # ORT vs PyTorch fp32: ≤ 3e-5 seen


def test_single_mask_graph_takes_token_0_or_the_best_multimask_by_stability(model, onnx_dir, embeddings):
    """Without mask prompts, both branches of HF's fallback occur among these objects, as in HF."""
    multi_masks, multi_scores, _ = run_decoder(onnx_dir, embeddings, True)
    single_masks, single_scores, _ = run_decoder(onnx_dir, embeddings, False)
    best = multi_scores.argmax(1)
    # a fallback copies the best multimask score (equal up to the two graphs' rounding); the others are ≥ 0.4 off it
    fallback = torch.isclose(single_scores[:, 0], multi_scores.max(1).values, atol=1e-6, rtol=0)
    assert fallback.tolist() == [False, True, True, False, False]  # stability scores 0.951 0.944 0.915 0.958 0.969
    chosen = multi_masks[fallback, best[fallback]]
    torch.testing.assert_close(single_masks[fallback, 0], chosen, atol=1e-4, rtol=1e-5)  # 2 graphs, fused differently
    with torch.no_grad():
        expected_masks, expected_scores, _ = predict_low_res(model, embeddings, POINTS, LABELS)
    torch.testing.assert_close(single_scores, expected_scores, atol=1e-5, rtol=0)  # ORT vs PyTorch: ≤ 1e-6 seen
    torch.testing.assert_close(single_masks, expected_masks, atol=1e-4, rtol=1e-5)  # ORT vs PyTorch: ≤ 3e-5 seen


PIXEL_POINTS = torch.tensor([[[40.0, 30.0], [120.0, 200.0]], [[450.0, 250.0], [10.0, 290.0]], [[250.0, 150.0], [0.0, 0.0]]])
PIXEL_LABELS = torch.tensor([[1, 0], [1, 1], [1, -1]])
PIXEL_BOXES = torch.tensor([[20.0, 10.0, 200.0, 220.0], [300.0, 100.0, 499.0, 299.0], [100.0, 50.0, 400.0, 250.0]])
CASES = {
    "clicks_multimask": dict(points=PIXEL_POINTS, labels=PIXEL_LABELS, multimask_output=True),
    "clicks_single": dict(points=PIXEL_POINTS, labels=PIXEL_LABELS),
    "clicks_and_boxes": dict(points=PIXEL_POINTS, labels=PIXEL_LABELS, boxes=PIXEL_BOXES),
    "boxes": dict(boxes=PIXEL_BOXES),
    "one_click_best_only": dict(points=PIXEL_POINTS[:, :1], labels=PIXEL_LABELS[:, :1], multimask_output=True,
                                best_only=True),
}


def assert_same_prediction(got, want):
    """ORT vs PyTorch: values within tolerance, mask pixels equal where the logits are clear of the threshold."""
    assert got.masks.shape == want.masks.shape
    torch.testing.assert_close(got.scores, want.scores, atol=1e-3, rtol=0)  # ≤ 2e-6 seen
    torch.testing.assert_close(got.low_res, want.low_res, atol=1e-3, rtol=1e-4)  # ≤ 6e-5 seen (logits up to ±32)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-3, rtol=1e-4)
    assert_same_masks(got.masks, want.logits)
    assert 0.01 < want.masks.float().mean() < 0.99


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_predictor_matches_the_torch_predictor(predictors, case):
    torch_predictor, onnx_predictor = predictors
    assert onnx_predictor.orig_hw == torch_predictor.orig_hw == HW
    assert_same_prediction(onnx_predictor.predict(**CASES[case]), torch_predictor.predict(**CASES[case]))


def test_mask_prompts_refine_the_same_way(predictors):
    torch_predictor, onnx_predictor = predictors
    first = torch_predictor.predict(PIXEL_POINTS, PIXEL_LABELS)
    clicks = dict(points=PIXEL_POINTS[:, :1] + 5, labels=PIXEL_LABELS[:, :1], mask_input=first.low_res)
    assert_same_prediction(onnx_predictor.predict(**clicks), torch_predictor.predict(**clicks))
    mask_only = dict(mask_input=first.low_res.numpy())  # numpy works too
    assert_same_prediction(onnx_predictor.predict(**mask_only), torch_predictor.predict(**mask_only))


SCORE_ATOL = 1e-4
"""Predicted IoUs of ORT and PyTorch differ by ≤ 2e-6 (any thread count here): 50× headroom for other CPUs."""


def test_automatic_map_is_the_same_with_the_onnx_predictor(predictors, image):
    """The same points, masks and objects in the same order; the map's pixels equal wherever no point's logit is
    within rounding of the threshold (ORT and PyTorch round differently: such a pixel may go either way)."""
    torch_predictor, onnx_predictor = predictors
    config = Sam2AutomaticSpec(num_points=12, batch_size=5, overlap_threshold=0.5)
    expected = automatic_map(torch_predictor, image, config=config)
    got = automatic_map(onnx_predictor, image, config=config)
    assert expected.index_map.max() >= 2
    np.testing.assert_array_equal(got.points, expected.points)  # one seeded draw, before either backend runs

    points = torch.from_numpy(expected.points)[:, None]
    clicks = dict(points=points, labels=torch.ones(len(points), 1, dtype=torch.long), multimask_output=True,
                  best_only=True)
    want = torch_predictor.predict(**clicks)
    assert_same_prediction(onnx_predictor.predict(**clicks), want)  # each point's mask (a best-of-3 choice)
    # The masks are stitched in score order: the same order on both backends while no two scores are within
    # twice their backend difference of each other (else either order is right, and the test must change).
    gaps = np.diff(np.sort(want.scores[:, 0].numpy()))
    assert gaps.min() > 2 * SCORE_ATOL, f"near-tied scores ({gaps.min():.1e} apart): the stitching order is a toss-up"
    assert len(got.scores) == len(expected.scores)
    np.testing.assert_allclose(got.scores, expected.scores, atol=SCORE_ATOL, rtol=0)
    clear = clear_of_threshold(want.logits[:, 0]).all(dim=0).numpy()
    assert_same_index_map(got.index_map, expected.index_map, clear)


def test_clear_errors(model, onnx_dir, tmp_path, predictors):
    with pytest.raises(FileNotFoundError, match=f"{META_FILE}: not found; write the ONNX graphs with `segfit export`"):
        OnnxSam2Predictor(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(onnx_dir, partial)
    (partial / DECODER_FILES[False]).unlink()
    with pytest.raises(FileNotFoundError, match="prompt_decoder_single.onnx: ONNX graph not found"):
        OnnxSam2Predictor(partial)
    (partial / META_FILE).write_text('{"image_size": 256}')
    with pytest.raises(ValueError, match="onnx_meta.json: key 'mask_input_size' is missing"):
        OnnxSam2Predictor(partial)
    with pytest.raises(ValueError, match=r"model.image_size: 512 differs from image_size 256 of the ONNX graphs in "
                                         r".*onnx_meta.json"):
        OnnxSam2Predictor(onnx_dir, 512)
    with pytest.raises(ValueError, match="model.image_size: 512 differs from the model's input size 256"):
        export_onnx(model, 512, tmp_path / "x")
    with pytest.raises(RuntimeError, match="call set_image"):
        OnnxSam2Predictor(onnx_dir).predict(PIXEL_POINTS, PIXEL_LABELS)
    with pytest.raises(ValueError, match=r"mask_input: expected \(3, 1, 64, 64\) low-res logits"):
        predictors[1].predict(PIXEL_POINTS, PIXEL_LABELS, mask_input=torch.zeros(3, 1, 32, 32))
    with pytest.raises(ValueError, match="no prompt"):
        predictors[1].predict()


@pytest.fixture(scope="module")
def workspace(model, tmp_path_factory):
    """A synthetic dataset, the perturbed model as an HF directory, and a spec using both."""
    root = tmp_path_factory.mktemp("cli_onnx")
    synth = ["data", "synth", "--out", str(root / "data"), "--num-train", "1", "--num-val", "1", "--size", "96x128"]
    assert main(synth) == 0
    save_hf_dir(model, root / "weights")
    (root / "spec.yaml").write_text(f"""
results_dir: {root}/run
model: {{name: sam2, size: test, image_size: {SIZE}, checkpoint: {root}/weights}}
data:
  train: {{format: labpics, images: {root}/data/train/images, annotations: {root}/data/train/masks}}
""")
    return root


def cli(workspace, *args):
    return main([args[0], "-e", str(workspace / "spec.yaml"), *args[1:]])


def test_inference_backend_onnx_without_graphs_is_a_clear_error(workspace, capsys):
    image = next((workspace / "data" / "val" / "images").iterdir())
    assert cli(workspace, "inference", f"inference.input={image}", "inference.backend=onnx",
               f"inference.onnx_dir={workspace}/nowhere") == 2
    assert f"{workspace}/nowhere/onnx_meta.json: not found" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_exports_onnx_and_infers_with_it_like_torch(workspace, capsys):
    assert cli(workspace, "export", "export.formats=[onnx]") == 0
    out = capsys.readouterr().out
    onnx_dir = workspace / "run" / "export" / "onnx"
    for file in (ENCODER_FILE, *DECODER_FILES.values(), META_FILE):
        assert f"exported: {onnx_dir / file}" in out
    assert out.count("onnx parity") == 3 and "pred_masks" in out and "max abs diff" in out

    image = next((workspace / "data" / "val" / "images").iterdir())
    prompted = ["inference.mode=prompted", "inference.points=[[40,30],[60,50]]", "inference.labels=[1,0]",
                "inference.boxes=[[10,10,60,50]]"]
    for backend in ("torch", "onnx"):
        for mode_args in (prompted, []):
            assert cli(workspace, "inference", f"inference.input={image}", f"inference.backend={backend}", *mode_args,
                       f"inference.output_dir={workspace}/{backend}") == 0
            assert ("weights:" in capsys.readouterr().out) == (backend == "torch")  # onnx never builds the model
    written = sorted(p.name for p in (workspace / "onnx").iterdir())
    assert written == sorted(p.name for p in (workspace / "torch").iterdir())
    maps = {f"{image.stem}_mask1.png", f"{image.stem}_mask2.png", f"{image.stem}_index.png"}
    assert maps <= set(written)
    for name in written:
        got, want = (np.asarray(Image.open(workspace / backend / name)) for backend in ("onnx", "torch"))
        assert got.shape == want.shape and got.dtype == want.dtype, name
        # ORT and PyTorch round differently: a pixel whose logit is within rounding of 0 may flip (the tests above
        # check the parity itself); IoU ≥ 0.99 leaves ~10 such pixels to the ~1000-px objects of these 96×128 maps
        if name in maps:
            assert_same_objects(got, want, min_iou=0.99, name=name)
        else:  # colour and overlay images, drawn from those maps: they differ only where the maps do, and outlines
            assert (got != want).any(axis=-1).mean() <= 0.01, name
