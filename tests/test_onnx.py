"""ONNX export and the onnxruntime backend.

The decoder tests use the standard 256-dim decoder on a 64x64 embedding grid (img_size 1024)
with a one-block encoder, so graphs have the official shapes while staying cheap. Every case
is checked three ways on identical weights: our graph in onnxruntime against (a) our PyTorch
path (``Sam.decode`` + ``postprocess_masks``) and (b) the graph the official ``SamOnnxModel``
exports. The PyPI ``segment-anything==1.0`` crops with ``int(...)`` while tracing, which bakes
the trace-time image size into its graph, so it is exported at the size the tests use.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from segment_anything.utils.onnx import SamOnnxModel  # noqa: E402

from conftest import SMALL, make_pair, random_image  # noqa: E402
from segany import Embedding, Predictor  # noqa: E402
from segany.checkpoints import save_checkpoint  # noqa: E402
from segany.cli import main as cli_main  # noqa: E402
from segany.export import (  # noqa: E402
    OnnxPredictor,
    export_decoder,
    export_encoder,
    export_onnx,
    load_onnx,
    quantize_onnx,
    read_metadata,
)
from segany.export.common import gelu_approximation  # noqa: E402
from segany.export.decoder import (  # noqa: E402
    INPUT_NAMES,
    STABILITY_OFFSET,
    select_single_mask,
    stability_score,
)
from segany.export.encoder import resize_like_pil  # noqa: E402
from segany.inference.embedding import encoder_id  # noqa: E402
from segany.inference.transforms import preprocess_shape, resize_image  # noqa: E402
from segany.modeling.prompt_encoder import labelled_points  # noqa: E402

# Standard decoder (256-dim, 64x64 grid, 256x256 low-res masks), one-block encoder.
DECODER_CONFIG = SMALL.with_encoder(
    img_size=1024, embed_dim=32, depth=1, num_heads=1, window_size=7, global_attn_indexes=(0,)
)
ORIG = (300, 450)  # the image size of the decoder cases (H, W)
LOGIT_ATOL = 1e-3
MAX_BOUNDARY_FRACTION = 1e-3  # binary masks may differ only where logits are ~0

FLAGS = {
    "default": {},
    "single_mask": {"return_single_mask": True},
    "stability": {"use_stability_score": True},
    "extra_metrics": {"return_extra_metrics": True},
    "gelu_tanh": {"gelu_approximate": True},
    "opset14": {"opset": 14},
    "opset18_single_stability": {
        "opset": 18,
        "return_single_mask": True,
        "use_stability_score": True,
    },
}

# Prompt cases in the model frame, as the PyTorch path takes them: points, labels, box, mask.
CASES = {
    "one_point": ([[500.0, 300.0]], [1], None, False),
    "several_points": ([[500.0, 300.0], [700.0, 200.0], [100.0, 600.0]], [1, 0, 1], None, False),
    "box": (None, None, [100.0, 150.0, 800.0, 600.0], False),
    "box_and_point": ([[400.0, 350.0]], [0], [100.0, 150.0, 800.0, 600.0], False),
    "mask_input": ([[500.0, 300.0]], [1], None, True),
}
# The same cases written by hand in the official graph convention.
OFFICIAL_FEEDS = {
    "one_point": ([[500, 300], [0, 0]], [1, -1]),
    "several_points": ([[500, 300], [700, 200], [100, 600], [0, 0]], [1, 0, 1, -1]),
    "box": ([[100, 150], [800, 600]], [2, 3]),
    "box_and_point": ([[400, 350], [100, 150], [800, 600]], [0, 2, 3]),
    "mask_input": ([[500, 300], [0, 0]], [1, -1]),
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Both runtimes on one thread: on a busy 2-core machine two spinning torch threads make
    the reference computations several times slower; the numbers do not change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair():
    return make_pair(DECODER_CONFIG, seed=3)


@pytest.fixture(scope="module")
def features() -> torch.Tensor:
    return torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def mask_logits() -> torch.Tensor:
    return 4 * torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(6))


@pytest.fixture(scope="module")
def graphs(pair, tmp_path_factory):
    """(ours, official) onnxruntime sessions per flag set, exported on demand."""
    ours_model, official_model = pair
    folder = tmp_path_factory.mktemp("graphs")
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            flags = FLAGS[name]
            ours_path = export_decoder(ours_model, folder / f"ours_{name}.onnx", **flags)
            theirs_path = export_official(official_model, folder / f"official_{name}.onnx", flags)
            cache[name] = (session(ours_path), session(theirs_path))
        return cache[name]

    return get


def session(path: Path, threads: int = 1):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_official(model, path: Path, flags: dict) -> Path:
    """What the official ``scripts/export_onnx_model.py`` does, at our test image size."""
    wrapper = SamOnnxModel(
        model,
        return_single_mask=flags.get("return_single_mask", False),
        use_stability_score=flags.get("use_stability_score", False),
        return_extra_metrics=flags.get("return_extra_metrics", False),
    )
    gelus = [m for m in model.modules() if isinstance(m, torch.nn.GELU)]
    for module in gelus:
        module.approximate = "tanh" if flags.get("gelu_approximate") else "none"
    dummy = {
        "image_embeddings": torch.randn(1, 256, 64, 64),
        "point_coords": torch.randint(0, 1024, (1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(0, 4, (1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor(ORIG, dtype=torch.float),
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                tuple(dummy.values()),
                str(path),
                input_names=list(dummy),
                output_names=["masks", "iou_predictions", "low_res_masks"],
                dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                opset_version=flags.get("opset", 17),
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        for module in gelus:
            module.approximate = "none"
    return path


def official_feeds(case: str, features: torch.Tensor, mask_logits: torch.Tensor) -> dict:
    coords, labels = OFFICIAL_FEEDS[case]
    has_mask = CASES[case][3]
    return {
        "image_embeddings": features.numpy(),
        "point_coords": np.array([coords], np.float32),
        "point_labels": np.array([labels], np.float32),
        "mask_input": mask_logits.numpy() if has_mask else np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.array([1.0 if has_mask else 0.0], np.float32),
        "orig_im_size": np.array(ORIG, np.float32),
    }


def torch_prompts(case: str, mask_logits: torch.Tensor) -> dict:
    points, labels, box, has_mask = CASES[case]
    return {
        "points": None if points is None else (torch.tensor([points]), torch.tensor([labels])),
        "boxes": None if box is None else torch.tensor([box]),
        "mask_input": mask_logits if has_mask else None,
    }


def pytorch_reference(model, features, case, mask_logits, flags) -> list[torch.Tensor]:
    """What the graph should output, computed with the PyTorch path: ``Sam.decode`` for tokens
    0 and 1..3, ``postprocess_masks``, and the official select/stability rules."""
    prompts = torch_prompts(case, mask_logits)
    with torch.inference_mode(), gelu_approximation(model, flags.get("gelu_approximate", False)):
        single, single_iou = model.decode(features, **prompts, multimask_output=False)
        multi, multi_iou = model.decode(features, **prompts, multimask_output=True)
    low_res, scores = torch.cat([single, multi], 1), torch.cat([single_iou, multi_iou], 1)
    if flags.get("use_stability_score"):
        scores = stability_score(low_res, model.mask_threshold, STABILITY_OFFSET)
    if flags.get("return_single_mask"):
        num_points = torch.tensor([[float(len(OFFICIAL_FEEDS[case][1]))]])
        low_res, scores = select_single_mask(low_res, scores, num_points)
    input_size = preprocess_shape(*ORIG, model.img_size)
    masks = model.postprocess_masks(low_res, input_size, ORIG)
    if not flags.get("return_extra_metrics"):
        return [masks, scores, low_res]
    stability = stability_score(masks, model.mask_threshold, STABILITY_OFFSET)
    areas = (masks > model.mask_threshold).sum(dim=(-2, -1))
    return [masks, scores, stability, areas, low_res]


def assert_masks_agree(a: np.ndarray, b: np.ndarray) -> None:
    """Mask logits agree to 1e-3 where they are not tiny; binary masks differ only on a few
    boundary pixels (where the logit is within 1e-2 of the threshold)."""
    assert a.shape == b.shape
    differ = (a > 0) != (b > 0)
    assert differ.mean() <= MAX_BOUNDARY_FRACTION, f"{differ.mean():.2e} of mask pixels differ"
    assert np.all(np.abs(a[differ]) < 1e-2) and np.all(np.abs(b[differ]) < 1e-2)
    np.testing.assert_allclose(a, b, atol=LOGIT_ATOL, rtol=1e-4)


def assert_outputs_agree(ours: list, reference: list, extra: bool) -> None:
    masks, scores, *rest, low_res = ours
    ref_masks, ref_scores, *ref_rest, ref_low_res = [np.asarray(r) for r in reference]
    np.testing.assert_allclose(low_res, ref_low_res, atol=LOGIT_ATOL, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=LOGIT_ATOL, rtol=0)
    assert_masks_agree(masks, ref_masks)
    if extra:
        (stability, areas), (ref_stability, ref_areas) = rest, ref_rest
        np.testing.assert_allclose(stability, ref_stability, atol=LOGIT_ATOL, rtol=0)
        assert areas.dtype == np.int64
        np.testing.assert_allclose(areas, ref_areas, rtol=MAX_BOUNDARY_FRACTION)


@pytest.mark.parametrize("flags", list(FLAGS))
@pytest.mark.parametrize("case", list(CASES))
def test_decoder_graph_matches_pytorch_and_official(
    pair, graphs, features, mask_logits, case, flags
):
    ours_session, official_session = graphs(flags)
    feeds = official_feeds(case, features, mask_logits)
    ours = ours_session.run(None, feeds)
    official = official_session.run(None, feeds)
    extra = FLAGS[flags].get("return_extra_metrics", False)
    count = 1 if FLAGS[flags].get("return_single_mask") else 4
    assert ours[0].shape == (1, count, *ORIG) and ours[-1].shape == (1, count, 256, 256)
    assert_outputs_agree(ours, official, extra)
    reference = pytorch_reference(pair[0], features, case, mask_logits, FLAGS[flags])
    assert_outputs_agree(ours, [r.numpy() for r in reference], extra)


@pytest.mark.parametrize("case", list(CASES))
def test_labelled_points_is_the_official_convention(case, mask_logits):
    prompts = torch_prompts(case, mask_logits)
    coords, labels = labelled_points(prompts["points"], prompts["boxes"])
    expected_coords, expected_labels = OFFICIAL_FEEDS[case]
    assert coords.tolist() == [[[float(v) for v in c] for c in expected_coords]]
    assert labels.tolist() == [expected_labels]


def test_decoder_interface_equals_official(graphs):
    ours, official = graphs("default")
    describe = lambda s: [(i.name, i.type, i.shape) for i in s.get_inputs()]  # noqa: E731
    assert describe(ours) == describe(official)
    assert [i.name for i in ours.get_inputs()] == list(INPUT_NAMES)
    assert [o.name for o in ours.get_outputs()] == [o.name for o in official.get_outputs()]
    assert [o.shape for o in ours.get_outputs()] == [
        [1, 4, "height", "width"],
        [1, 4],
        [1, 4, 256, 256],
    ]


def test_decoder_graph_is_dynamic_in_image_size_and_points(pair, graphs, features, mask_logits):
    """Unlike the PyPI official export, ours follows ``orig_im_size`` at run time."""
    ours_session, _ = graphs("default")
    model = pair[0]
    for size, count in (((1200, 900), 1), ((64, 1500), 6)):
        rng = np.random.default_rng(count)
        coords = rng.random((1, count, 2)).astype(np.float32) * 1000
        labels = rng.integers(-1, 2, (1, count)).astype(np.float32)
        feeds = official_feeds("one_point", features, mask_logits)
        feeds.update(point_coords=coords, point_labels=labels, orig_im_size=np.float32(size))
        masks, _, low_res = ours_session.run(None, feeds)
        with torch.inference_mode():
            sparse = model.prompt_encoder.embed_labelled_points(
                torch.from_numpy(coords), torch.from_numpy(labels)
            )
            dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            ref_low, _ = model.mask_decoder.predict_masks(
                features, model.prompt_encoder.get_dense_pe(), sparse, dense.expand(1, -1, 64, 64)
            )
            ref = model.postprocess_masks(ref_low, preprocess_shape(*size, 1024), size)
        np.testing.assert_allclose(low_res, ref_low.numpy(), atol=LOGIT_ATOL, rtol=0)
        assert_masks_agree(masks, ref.numpy())


def test_export_leaves_model_unchanged(pair, tmp_path):
    model = pair[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_decoder(model, tmp_path / "d.onnx", gelu_approximate=True)
    assert all(m.approximate == "none" for m in model.modules() if isinstance(m, torch.nn.GELU))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    meta = read_metadata(tmp_path / "d.onnx")
    assert meta["kind"] == "decoder" and meta["encoder_id"] == encoder_id(model)
    assert json.loads(meta["options"])["gelu_approximate"] is True


# ----- onnxruntime backend behind the predictor API -----


@pytest.fixture(scope="module")
def onnx_predictor(pair, tmp_path_factory):
    folder = tmp_path_factory.mktemp("backend")
    files = export_onnx(pair[0], folder / "decoder.onnx", encoder_output=folder / "encoder.onnx")
    return load_onnx(files.decoder, files.encoder, threads=1)


PREDICT_CASES = {
    "point_multimask": {"points": [[200, 120]], "labels": [1]},
    "points_single": {"points": [[200, 120], [300, 200]], "labels": [1, 0], "multimask": False},
    "two_boxes": {"boxes": [[20, 30, 300, 250], [100, 100, 400, 280]], "multimask": False},
    "box_and_point": {"boxes": [20, 30, 300, 250], "points": [[150, 150]], "labels": [0]},
    "mask_only": {"mask_input": "logits", "multimask": False},
    "point_and_mask_logits": {
        "points": [[200, 120]],
        "labels": [1],
        "mask_input": "logits",
        "return_logits": True,
    },
}


@pytest.mark.parametrize("case", list(PREDICT_CASES))
def test_onnx_predictor_matches_predictor(pair, onnx_predictor, features, mask_logits, case):
    model = pair[0]
    embedding = Embedding(
        features, ORIG, preprocess_shape(*ORIG, 1024), 1024, encoder_id=encoder_id(model)
    )
    kwargs = dict(PREDICT_CASES[case])
    if kwargs.get("mask_input") == "logits":
        kwargs["mask_input"] = mask_logits[0].numpy()
    ours = onnx_predictor.predict(embedding, **kwargs)
    reference = Predictor(model).predict(embedding, **kwargs)
    assert ours.masks.shape == reference.masks.shape
    assert ours.masks.dtype == reference.masks.dtype
    np.testing.assert_allclose(ours.scores, reference.scores, atol=LOGIT_ATOL, rtol=0)
    np.testing.assert_allclose(
        ours.low_res_logits, reference.low_res_logits, atol=LOGIT_ATOL, rtol=0
    )
    if kwargs.get("return_logits"):
        assert_masks_agree(ours.masks, reference.masks)
    else:
        assert (ours.masks != reference.masks).mean() <= MAX_BOUNDARY_FRACTION


def test_onnx_predictor_embeds_like_predictor(pair, onnx_predictor):
    image = random_image(200, 300, seed=2)
    ours, reference = onnx_predictor.embed(image), Predictor(pair[0]).embed(image)
    assert (ours.original_size, ours.input_size) == (reference.original_size, reference.input_size)
    assert ours.encoder_id == reference.encoder_id
    np.testing.assert_allclose(ours.features, reference.features, atol=LOGIT_ATOL, rtol=0)
    bgr = onnx_predictor.embed(image[..., ::-1].copy(), image_format="BGR")
    np.testing.assert_allclose(bgr.features, ours.features, atol=1e-6, rtol=0)


def test_onnx_predictor_checks_prompts_and_embeddings(onnx_predictor, features):
    embedding = Embedding(features, ORIG, preprocess_shape(*ORIG, 1024), 1024, "other-encoder")
    with pytest.raises(ValueError, match="different image encoder"):
        onnx_predictor.predict(embedding, points=[[1, 1]], labels=[1])
    embedding = Embedding(features, ORIG, preprocess_shape(*ORIG, 1024), 1024)
    with pytest.raises(ValueError, match="labels must be 1"):
        onnx_predictor.predict(embedding, points=[[1, 1]], labels=[2])
    with pytest.raises(ValueError, match="empty prompt"):
        onnx_predictor.predict(embedding)


def test_onnx_predictor_rejects_unusable_graphs(pair, graphs, tmp_path):
    single = export_decoder(pair[0], tmp_path / "single.onnx", return_single_mask=True)
    with pytest.raises(ValueError, match="return_single_mask"):
        OnnxPredictor(single)
    with pytest.raises(ValueError, match="no such ONNX file"):
        OnnxPredictor(tmp_path / "missing.onnx")
    decoder_only = OnnxPredictor(export_decoder(pair[0], tmp_path / "d.onnx"))
    with pytest.raises(ValueError, match="no encoder graph"):
        decoder_only.embed(random_image(10, 10))


def test_onnx_predictor_loads_the_official_graph(pair, graphs, features, tmp_path):
    """The official export (no metadata) works behind the same API."""
    path = export_official(pair[1], tmp_path / "official.onnx", {})
    predictor = OnnxPredictor(path, threads=1)
    embedding = Embedding(features, ORIG, preprocess_shape(*ORIG, 1024), 1024)
    ours = predictor.predict(embedding, points=[[200, 120]], labels=[1])
    reference = Predictor(pair[0]).predict(embedding, points=[[200, 120]], labels=[1])
    np.testing.assert_allclose(ours.scores, reference.scores, atol=LOGIT_ATOL, rtol=0)


# ----- encoder -----


def test_encoder_graph_matches_pytorch(small_model, tmp_path):
    path = export_encoder(small_model, tmp_path / "encoder.onnx")
    session_ = session(path)
    assert [(i.name, i.shape) for i in session_.get_inputs()] == [
        ("images", ["batch", 3, 256, 256])
    ]
    images = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    (ours,) = session_.run(None, {"images": images.numpy()})
    with torch.inference_mode():
        reference = small_model.image_encoder(images)
    np.testing.assert_allclose(ours, reference.numpy(), atol=LOGIT_ATOL, rtol=0)


@pytest.mark.parametrize("size", [(200, 300), (300, 200), (256, 256), (90, 70)])
def test_encoder_graph_with_preprocessing_matches_predictor(small_model, tmp_path_factory, size):
    folder = tmp_path_factory.getbasetemp() / "preprocess"
    path = folder / "encoder.onnx"
    if not path.exists():
        folder.mkdir(exist_ok=True)
        export_encoder(small_model, path, preprocess=True)
    image = random_image(*size, seed=size[0])
    (ours,) = session(path).run(None, {"image": image})
    reference = Predictor(small_model).embed(image).features
    np.testing.assert_allclose(ours, reference.numpy(), atol=LOGIT_ATOL, rtol=0)


@pytest.mark.parametrize(
    "size", [(1200, 1800), (1800, 1200), (534, 800), (480, 640), (1080, 1920), (100, 80)]
)
def test_in_graph_resize_equals_pil(size):
    """Byte-identical to the PIL resize of the PyTorch path for photo shapes. (Pillow 13
    resizes some images taller than 2:1 vertically first; a few pixels then differ by one.)"""
    image = random_image(*size, seed=size[1])
    h, w = preprocess_shape(*size, 1024)
    ours = resize_like_pil(
        torch.from_numpy(image).permute(2, 0, 1), torch.tensor(h), torch.tensor(w)
    )
    assert np.array_equal(ours.permute(1, 2, 0).numpy(), resize_image(image, 1024))


def test_encoder_external_data(small_model, tmp_path):
    path = export_encoder(small_model, tmp_path / "encoder.onnx", external_data=True)
    data = tmp_path / "encoder.onnx.data"
    assert data.is_file() and data.stat().st_size > path.stat().st_size
    images = torch.randn(1, 3, 256, 256)
    (ours,) = session(path).run(None, {"images": images.numpy()})
    with torch.inference_mode():
        np.testing.assert_allclose(
            ours, small_model.image_encoder(images).numpy(), atol=LOGIT_ATOL, rtol=0
        )
    int8 = quantize_onnx(path)
    int8_data = tmp_path / "encoder.int8.onnx.data"
    assert int8_data.is_file() and int8_data.stat().st_size < data.stat().st_size
    (quantized,) = session(int8).run(None, {"images": images.numpy()})
    assert np.corrcoef(quantized.ravel(), ours.ravel())[0, 1] > 0.99


# ----- quantization -----


def test_quantized_decoder_runs_and_stays_close(pair, graphs, features, tmp_path):
    fp32 = export_decoder(pair[0], tmp_path / "decoder.onnx")
    int8 = quantize_onnx(fp32)
    assert int8 == tmp_path / "decoder.int8.onnx"
    assert int8.stat().st_size < fp32.stat().st_size / 2
    assert "quantized" in read_metadata(int8) and read_metadata(int8)["kind"] == "decoder"
    ious = []
    for case in CASES:
        feeds = official_feeds(case, features, torch.zeros(1, 1, 256, 256))
        a, b = session(fp32).run(None, feeds)[0] > 0, session(int8).run(None, feeds)[0] > 0
        ious.append((a & b).sum() / max((a | b).sum(), 1))
    assert np.mean(ious) >= 0.9  # random weights; BENCHMARKS.md measures real-size figures


def test_quantize_errors(tmp_path):
    with pytest.raises(ValueError, match="no such ONNX file"):
        quantize_onnx(tmp_path / "missing.onnx")


# ----- export errors and the command line -----


def test_export_errors(pair, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        export_decoder(pair[0], tmp_path / "no" / "such" / "d.onnx")
    with pytest.raises(ValueError, match="is a folder"):
        export_decoder(pair[0], tmp_path)
    with pytest.raises(ValueError, match="opset 11 is not supported"):
        export_decoder(pair[0], tmp_path / "d.onnx", opset=11)


def test_cli_export(small_model, tmp_path, capsys):
    weights = tmp_path / "small.safetensors"
    save_checkpoint(small_model, weights)
    out = tmp_path / "out"
    out.mkdir()
    code = cli_main(
        [
            "export",
            "onnx",
            "--model",
            str(weights),
            "--output",
            str(out / "decoder.onnx"),
            "--encoder-output",
            str(out / "encoder.onnx"),
            "--encoder-preprocess",
            "--quantize",
            "--return-single-mask",
        ]
    )
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["decoder.int8.onnx", "decoder.onnx", "encoder.int8.onnx", "encoder.onnx"]
    assert "wrote decoder" in capsys.readouterr().out
    meta = read_metadata(out / "decoder.onnx")
    assert json.loads(meta["options"])["return_single_mask"] is True
    assert read_metadata(out / "encoder.onnx")["preprocess"] == "1"


def test_cli_export_errors(tmp_path, capsys):
    code = cli_main(["export", "onnx", "--model", "vit_b", "--output", str(tmp_path / "d.onnx")])
    assert code == 2 and "needs its weights" in capsys.readouterr().err
    missing = str(tmp_path / "missing.pth")
    code = cli_main(
        ["export", "onnx", "--model", "vit_b", "--checkpoint", missing, "--output", "d.onnx"]
    )
    assert code == 2 and "no such checkpoint" in capsys.readouterr().err
    code = cli_main(
        ["export", "onnx", "--model", "vit_b", "--output", str(tmp_path / "x" / "d.onnx")]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err
