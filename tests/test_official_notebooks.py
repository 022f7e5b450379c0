"""The official notebooks and scripts, run with only the import changed.

Each function below replays the sequence of API calls of one official notebook or script
(``notebooks/predictor_example.ipynb``, ``automatic_mask_generator_example.ipynb``,
``onnx_model_example.ipynb``, ``scripts/amg.py``, ``scripts/export_onnx_model.py``), written
against a package *name*: the test runs it once with ``segment_anything`` and once with
``segany`` on models with identical weights, and compares every number the official run gives.

What differs from the originals, for both packages alike: models are built in the test (the
SMALL random-weight config of ``conftest``, or the bundled ``tiny`` model with its official
twin) instead of from a ViT-H checkpoint; images are generated, with prompts scaled from
``truck.jpg`` (1200x1800) to 120x180; the automatic generator uses ``points_per_side=8`` to
stay fast; input sizes follow the model instead of the hard-coded 1024/256; plotting is left
out (the overlay of ``show_anns`` is computed). Two calls are adapted to the installed
libraries: ``torch.onnx.export`` gets ``dynamo=False`` (torch >= 2.9 defaults to the dynamo
exporter, which needs ``onnxscript``), and ``quantize_dynamic`` loses ``optimize_model``
(removed from onnxruntime). The PyPI ``SamOnnxModel`` bakes the trace-time image size into its
graph, so the images keep the 2:3 shape of the trace-time ``orig_im_size`` (1500, 2250).
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from conftest import SMALL, build_official, make_pair, random_image
from segany.checkpoints import bundled_weights_path, load
from segany.data.scenes import SceneConfig, generate_scene

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

OFFICIAL = "segment_anything"
PACKAGES = (OFFICIAL, "segany")
ATOL = 1e-4
ONNX_ATOL = 1e-3  # the two graphs order float operations differently
MAX_DIFFERENT_PIXELS = 1e-3

# pycocotools' decode trips a numpy 2 deprecation warning
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def use(package: str, module: str = "") -> Any:
    """``import <package><module>``: the one line that differs between the two runs."""
    return importlib.import_module(package + module)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread: on the shared 2-core machine two spinning threads are slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    ours, theirs = make_pair(SMALL, seed=5)
    return {"segany": ours, "segment_anything": theirs}


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    return random_image(120, 180, seed=1), random_image(90, 160, seed=2)


def as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def assert_same(ours: Any, theirs: Any, atol: float = ATOL, where: str = "") -> None:
    """Same shapes and dtypes; floats within ``atol``; binary masks equal but for a few pixels
    whose logits sit on the threshold."""
    a, b = as_numpy(ours), as_numpy(theirs)
    assert a.shape == b.shape, where
    assert a.dtype == b.dtype, where
    if a.dtype == bool:
        assert (a != b).mean() <= MAX_DIFFERENT_PIXELS, where
    else:
        np.testing.assert_allclose(a, b, atol=atol, rtol=0, err_msg=where)


def assert_same_results(ours: dict, theirs: dict, atol: float = ATOL) -> None:
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        if isinstance(value, (tuple, list)) and not isinstance(value[0], str):
            assert len(ours[key]) == len(value), key
            for i, (a, b) in enumerate(zip(ours[key], value)):
                assert_same(a, b, atol, f"{key}[{i}]")
        elif isinstance(value, (tuple, list)):
            assert ours[key] == value, key
        else:
            assert_same(ours[key], value, atol, key)


# --- notebooks/predictor_example.ipynb ----------------------------------------------------------


def predictor_notebook(package: str, sam, image: np.ndarray, image2: np.ndarray) -> dict:
    SamPredictor = use(package).SamPredictor
    ResizeLongestSide = use(package, ".utils.transforms").ResizeLongestSide
    results: dict[str, Any] = {}

    sam.to(device="cpu")
    predictor = SamPredictor(sam)
    predictor.set_image(image)

    # one foreground point, three candidate masks
    input_point, input_label = np.array([[50, 38]]), np.array([1])
    masks, scores, logits = predictor.predict(
        point_coords=input_point, point_labels=input_label, multimask_output=True
    )
    assert masks.shape == (3, *image.shape[:2])
    results["one point"] = (masks, scores, logits)

    # a second point, with the best previous logits as the mask prompt
    input_point, input_label = np.array([[50, 38], [112, 62]]), np.array([1, 1])
    mask_input = logits[np.argmax(scores), :, :]
    results["two points"] = predictor.predict(
        point_coords=input_point,
        point_labels=input_label,
        mask_input=mask_input[None, :, :],
        multimask_output=False,
    )
    input_label = np.array([1, 0])  # ... the second one as background
    results["background point"] = predictor.predict(
        point_coords=input_point,
        point_labels=input_label,
        mask_input=mask_input[None, :, :],
        multimask_output=False,
    )

    # a box, then a box with a background point
    input_box = np.array([42, 60, 70, 88])
    results["box"] = predictor.predict(
        point_coords=None, point_labels=None, box=input_box[None, :], multimask_output=False
    )
    input_point, input_label = np.array([[58, 75]]), np.array([0])
    results["box and point"] = predictor.predict(
        point_coords=input_point, point_labels=input_label, box=input_box, multimask_output=False
    )

    # several boxes at once, in the model's input frame
    input_boxes = torch.tensor(
        [[8, 28, 172, 85], [42, 60, 70, 88], [138, 55, 165, 80], [124, 68, 140, 75]],
        device=predictor.device,
    )
    transformed_boxes = predictor.transform.apply_boxes_torch(input_boxes, image.shape[:2])
    masks, scores, logits = predictor.predict_torch(
        point_coords=None, point_labels=None, boxes=transformed_boxes, multimask_output=False
    )
    assert masks.shape == (4, 1, *image.shape[:2])
    results["boxes"] = (masks, scores, logits)

    # end to end: the model on a batch of two images with their boxes
    resize_transform = ResizeLongestSide(sam.image_encoder.img_size)

    def prepare_image(image, transform, device):
        image = transform.apply_image(image)
        image = torch.as_tensor(image, device=device.device)
        return image.permute(2, 0, 1).contiguous()

    image1_boxes = torch.tensor(input_boxes.tolist(), device=sam.device)
    image2_boxes = torch.tensor(
        [[45, 17, 52, 35], [35, 19, 45, 35], [50, 17, 58, 35], [58, 17, 64, 35]],
        device=sam.device,
    )
    batched_input = [
        {
            "image": prepare_image(image, resize_transform, sam),
            "boxes": resize_transform.apply_boxes_torch(image1_boxes, image.shape[:2]),
            "original_size": image.shape[:2],
        },
        {
            "image": prepare_image(image2, resize_transform, sam),
            "boxes": resize_transform.apply_boxes_torch(image2_boxes, image2.shape[:2]),
            "original_size": image2.shape[:2],
        },
    ]
    batched_output = sam(batched_input, multimask_output=False)
    results["output keys"] = list(batched_output[0].keys())
    for i, output in enumerate(batched_output):
        results[f"batch image {i}"] = tuple(output[key] for key in results["output keys"])
    return results


def test_predictor_notebook(models, images):
    ours = predictor_notebook("segany", models["segany"], *images)
    theirs = predictor_notebook(OFFICIAL, models[OFFICIAL], *images)
    assert_same_results(ours, theirs)
    assert ours["output keys"] == ["masks", "iou_predictions", "low_res_logits"]


# --- notebooks/automatic_mask_generator_example.ipynb -------------------------------------------


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, torch.nn.Module]:
    if bundled_weights_path("tiny") is None:
        pytest.skip("no bundled model")
    ours = load("tiny")
    theirs = build_official(ours.config)
    theirs.load_state_dict(ours.state_dict())
    return {"segany": ours, "segment_anything": theirs}


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return generate_scene(3_000_001, SceneConfig(height=240, width=320)).image  # held out


def annotation_overlay(anns: list[dict]) -> np.ndarray | None:
    """The notebook's ``show_anns`` without matplotlib: largest masks first, each painted with
    a random colour at alpha 0.35 (a fixed seed here, so that two runs can be compared)."""
    if len(anns) == 0:
        return None
    rng = np.random.default_rng(0)
    sorted_anns = sorted(anns, key=(lambda x: x["area"]), reverse=True)
    first = sorted_anns[0]["segmentation"]
    img = np.ones((first.shape[0], first.shape[1], 4))
    img[:, :, 3] = 0
    for ann in sorted_anns:
        img[ann["segmentation"]] = np.concatenate([rng.random(3), [0.35]])
    return img


def amg_notebook(package: str, sam, image: np.ndarray) -> dict:
    SamAutomaticMaskGenerator = use(package).SamAutomaticMaskGenerator
    sam.to(device="cpu")
    mask_generator = SamAutomaticMaskGenerator(sam, points_per_side=8)
    masks = mask_generator.generate(image)
    mask_generator_2 = SamAutomaticMaskGenerator(
        model=sam,
        points_per_side=8,
        pred_iou_thresh=0.86,
        stability_score_thresh=0.92,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=100,
    )
    masks2 = mask_generator_2.generate(image)
    return {
        "masks": masks,
        "keys": list(masks[0].keys()) if masks else [],
        "overlay": annotation_overlay(masks),
        "masks2": masks2,
        "overlay2": annotation_overlay(masks2),
    }


def assert_same_records(ours: list[dict], theirs: list[dict]) -> None:
    """Record by record (the same order): equal fields, IoU and stability within ``ATOL``, a
    box coordinate or a pixel or two of area off only where a logit sits on the threshold."""
    assert len(ours) == len(theirs)
    for mine, official in zip(ours, theirs):
        assert list(mine) == list(official)
        assert mine["point_coords"] == official["point_coords"]
        assert mine["crop_box"] == official["crop_box"]
        assert np.abs(np.subtract(mine["bbox"], official["bbox"])).max() <= 1
        assert abs(mine["area"] - official["area"]) <= 2
        assert mine["predicted_iou"] == pytest.approx(official["predicted_iou"], abs=ATOL)
        assert mine["stability_score"] == pytest.approx(official["stability_score"], abs=ATOL)
        a, b = mine["segmentation"], official["segmentation"]
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert (a != b).mean() <= MAX_DIFFERENT_PIXELS
        else:
            assert a == b


def test_automatic_mask_generator_notebook(tiny_models, scene):
    ours = amg_notebook("segany", tiny_models["segany"], scene)
    theirs = amg_notebook(OFFICIAL, tiny_models[OFFICIAL], scene)
    assert len(theirs["masks"]) >= 1 and len(theirs["masks2"]) >= 3, "the scene should give masks"
    assert ours["keys"] == theirs["keys"]
    assert_same_records(ours["masks"], theirs["masks"])
    assert_same_records(ours["masks2"], theirs["masks2"])
    for key in ("overlay", "overlay2"):
        assert (np.abs(ours[key] - theirs[key]) > 1e-9).any(-1).mean() <= MAX_DIFFERENT_PIXELS


# --- scripts/amg.py -----------------------------------------------------------------------------


# the generator settings the script takes as flags (None: the generator's default)
AMG_SETTINGS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "box_nms_thresh",
    "crop_n_layers",
    "crop_nms_thresh",
    "crop_overlap_ratio",
    "crop_n_points_downscale_factor",
    "min_mask_region_area",
)


def amg_script_args(**given: Any) -> argparse.Namespace:
    """The script's arguments: its defaults (``None`` AMG settings, ``cuda``) updated by
    ``given``."""
    settings = dict.fromkeys(AMG_SETTINGS)
    return argparse.Namespace(**{"device": "cuda", "convert_to_rle": False, **settings, **given})


def write_masks_to_folder(masks: list[dict[str, Any]], path: str) -> None:
    """The script's PNG output: ``<i>.png`` per mask (0/255) and ``metadata.csv``."""
    header = (
        "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
        "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
    )
    rows = [header]
    for i, record in enumerate(masks):
        cv2.imwrite(os.path.join(path, f"{i}.png"), (record["segmentation"] * 255).astype(np.uint8))
        fields = [
            i,
            record["area"],
            *record["bbox"],
            *record["point_coords"][0],
            record["predicted_iou"],
            record["stability_score"],
            *record["crop_box"],
        ]
        rows.append(",".join(str(x) for x in fields))
    with open(os.path.join(path, "metadata.csv"), "w") as f:
        f.write("\n".join(rows))


def amg_script_main(package: str, sam, args: argparse.Namespace) -> None:
    """``main(args)`` of the script, from the model on (the test builds the model)."""
    SamAutomaticMaskGenerator = use(package).SamAutomaticMaskGenerator
    _ = sam.to(device=args.device)
    output_mode = "coco_rle" if args.convert_to_rle else "binary_mask"
    amg_kwargs = {key: getattr(args, key) for key in AMG_SETTINGS if getattr(args, key) is not None}
    generator = SamAutomaticMaskGenerator(sam, output_mode=output_mode, **amg_kwargs)
    if not os.path.isdir(args.input):
        targets = [args.input]
    else:
        names = [
            f for f in os.listdir(args.input) if not os.path.isdir(os.path.join(args.input, f))
        ]
        targets = [os.path.join(args.input, f) for f in names]
    os.makedirs(args.output, exist_ok=True)
    for target in targets:
        image = cv2.imread(target)
        if image is None:  # not an image: skipped
            continue
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        masks = generator.generate(image)
        base = os.path.splitext(os.path.basename(target))[0]
        save_base = os.path.join(args.output, base)
        if output_mode == "binary_mask":
            os.makedirs(save_base, exist_ok=False)
            write_masks_to_folder(masks, save_base)
        else:
            with open(save_base + ".json", "w") as f:
                json.dump(masks, f)


def read_metadata(path: Path) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.parametrize("convert_to_rle", [False, True], ids=["png", "coco_rle"])
def test_amg_script(tiny_models, scene, tmp_path, convert_to_rle):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)  # folders are skipped
    cv2.imwrite(str(folder / "scene.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")  # skipped with a message
    outputs = {}
    for package in PACKAGES:
        outputs[package] = tmp_path / package
        args = amg_script_args(
            input=str(folder),
            output=str(outputs[package]),
            device="cpu",
            convert_to_rle=convert_to_rle,
            points_per_side=8,
            pred_iou_thresh=0.5,
            stability_score_thresh=0.8,
            min_mask_region_area=100,
        )
        amg_script_main(package, tiny_models[package], args)
    ours, theirs = outputs["segany"], outputs[OFFICIAL]
    listing = sorted(p.relative_to(theirs).as_posix() for p in theirs.rglob("*"))
    assert sorted(p.relative_to(ours).as_posix() for p in ours.rglob("*")) == listing
    if convert_to_rle:
        mine, official = (json.loads((d / "scene.json").read_text()) for d in (ours, theirs))
        assert len(official) >= 3
        assert_same_records(mine, official)
        return
    mine, official = (read_metadata(d / "scene" / "metadata.csv") for d in (ours, theirs))
    assert len(official) >= 3 and len(mine) == len(official)
    for a, b in zip(mine, official):
        assert a.keys() == b.keys()
        for key in b:
            assert a[key] == pytest.approx(
                b[key], abs=2 if "bbox" in key or key == "area" else ATOL
            )
    for i in range(len(official)):
        a, b = (
            cv2.imread(str(d / "scene" / f"{i}.png"), cv2.IMREAD_UNCHANGED) for d in (ours, theirs)
        )
        assert a.dtype == b.dtype == np.uint8 and set(np.unique(b)) <= {0, 255}
        assert (a != b).mean() <= MAX_DIFFERENT_PIXELS


# --- notebooks/onnx_model_example.ipynb ---------------------------------------------------------


def dummy_decoder_inputs(sam, seed: int) -> dict[str, torch.Tensor]:
    """The dummy inputs the official notebook and export script trace the decoder with (five
    points, a mask input, a 1500x2250 image), seeded."""
    embed_size = sam.prompt_encoder.image_embedding_size
    generator = torch.Generator().manual_seed(seed)
    high = sam.image_encoder.img_size
    return {
        "image_embeddings": torch.randn(
            1, sam.prompt_encoder.embed_dim, *embed_size, generator=generator
        ),
        "point_coords": torch.randint(0, high, (1, 5, 2), generator=generator).float(),
        "point_labels": torch.randint(0, 4, (1, 5), generator=generator).float(),
        "mask_input": torch.randn(1, 1, *[4 * x for x in embed_size], generator=generator),
        "has_mask_input": torch.tensor([1], dtype=torch.float),
        "orig_im_size": torch.tensor([1500, 2250], dtype=torch.float),
    }


def export_decoder_as_notebook(package: str, sam, path: Path) -> None:
    SamOnnxModel = use(package, ".utils.onnx").SamOnnxModel
    onnx_model = SamOnnxModel(sam, return_single_mask=True)
    dynamic_axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    dummy_inputs = dummy_decoder_inputs(sam, seed=0)
    output_names = ["masks", "iou_predictions", "low_res_masks"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        with open(path, "wb") as f:
            torch.onnx.export(
                onnx_model,
                tuple(dummy_inputs.values()),
                f,
                export_params=True,
                verbose=False,
                opset_version=17,
                do_constant_folding=True,
                input_names=list(dummy_inputs.keys()),
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                dynamo=False,
            )


def quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.quantize import quantize_dynamic

    quantize_dynamic(
        model_input=source,
        model_output=target,
        per_channel=False,
        reduce_range=False,
        weight_type=QuantType.QUInt8,
    )


def onnx_notebook(package: str, sam, image: np.ndarray, onnx_model_path: Path) -> dict:
    """The notebook's "Using an ONNX model" part on the graph at ``onnx_model_path``."""
    SamPredictor = use(package).SamPredictor
    ort_session = ort.InferenceSession(str(onnx_model_path), providers=["CPUExecutionProvider"])
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    image_embedding = predictor.get_image_embedding().cpu().numpy()
    mask_input_size = [4 * x for x in sam.prompt_encoder.image_embedding_size]
    results: dict[str, Any] = {"embedding": image_embedding}

    def run(onnx_coord, onnx_label, onnx_mask_input, onnx_has_mask_input):
        ort_inputs = {
            "image_embeddings": image_embedding,
            "point_coords": onnx_coord,
            "point_labels": onnx_label,
            "mask_input": onnx_mask_input,
            "has_mask_input": onnx_has_mask_input,
            "orig_im_size": np.array(image.shape[:2], dtype=np.float32),
        }
        masks, scores, low_res_logits = ort_session.run(None, ort_inputs)
        return masks > predictor.model.mask_threshold, masks, scores, low_res_logits

    # a point, with a padding point
    input_point, input_label = np.array([[50, 38]]), np.array([1])
    onnx_coord = np.concatenate([input_point, np.array([[0.0, 0.0]])], axis=0)[None, :, :]
    onnx_label = np.concatenate([input_label, np.array([-1])], axis=0)[None, :].astype(np.float32)
    onnx_coord = predictor.transform.apply_coords(onnx_coord, image.shape[:2]).astype(np.float32)
    onnx_mask_input = np.zeros((1, 1, *mask_input_size), dtype=np.float32)
    onnx_has_mask_input = np.zeros(1, dtype=np.float32)
    results["point"] = run(onnx_coord, onnx_label, onnx_mask_input, onnx_has_mask_input)
    low_res_logits = results["point"][3]

    # two points and the previous low-res logits as the mask input
    input_point, input_label = np.array([[50, 38], [112, 62]]), np.array([1, 1])
    onnx_mask_input = low_res_logits
    onnx_coord = np.concatenate([input_point, np.array([[0.0, 0.0]])], axis=0)[None, :, :]
    onnx_label = np.concatenate([input_label, np.array([-1])], axis=0)[None, :].astype(np.float32)
    onnx_coord = predictor.transform.apply_coords(onnx_coord, image.shape[:2]).astype(np.float32)
    onnx_has_mask_input = np.ones(1, dtype=np.float32)
    results["mask input"] = run(onnx_coord, onnx_label, onnx_mask_input, onnx_has_mask_input)

    # a box (two corner points, no padding) and a background point
    input_box = np.array([42, 60, 70, 88])
    input_point, input_label = np.array([[58, 75]]), np.array([0])
    onnx_box_coords = input_box.reshape(2, 2)
    onnx_box_labels = np.array([2, 3])
    onnx_coord = np.concatenate([input_point, onnx_box_coords], axis=0)[None, :, :]
    onnx_label = np.concatenate([input_label, onnx_box_labels], axis=0)[None, :].astype(np.float32)
    onnx_coord = predictor.transform.apply_coords(onnx_coord, image.shape[:2]).astype(np.float32)
    onnx_mask_input = np.zeros((1, 1, *mask_input_size), dtype=np.float32)
    onnx_has_mask_input = np.zeros(1, dtype=np.float32)
    results["box and point"] = run(onnx_coord, onnx_label, onnx_mask_input, onnx_has_mask_input)
    return results


@pytest.fixture(scope="module")
def notebook_graphs(models, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per package: the notebook's exported graph and its quantized copy."""
    folder = tmp_path_factory.mktemp("onnx_notebook")
    graphs = {}
    for package in PACKAGES:
        fp32 = folder / f"{package}_sam_onnx_example.onnx"
        int8 = folder / f"{package}_sam_onnx_quantized_example.onnx"
        export_decoder_as_notebook(package, models[package], fp32)
        quantize(fp32, int8)
        graphs[package] = {"fp32": fp32, "int8": int8}
    return graphs


def test_onnx_notebook(models, images, notebook_graphs):
    image = images[0]
    results = {
        package: onnx_notebook(package, models[package], image, notebook_graphs[package]["fp32"])
        for package in PACKAGES
    }
    ours, theirs = results["segany"], results[OFFICIAL]
    assert ours["point"][1].shape == (1, 1, *image.shape[:2])
    assert_same_results(ours, theirs, atol=ONNX_ATOL)


def test_onnx_notebook_quantized(models, images, notebook_graphs):
    """The notebook runs the quantized graph: the two int8 graphs are quantized separately,
    so only the masks are compared, loosely; each stays close to its fp32 graph."""
    image = images[0]
    masks = {}
    for package in PACKAGES:
        paths = notebook_graphs[package]
        int8 = onnx_notebook(package, models[package], image, paths["int8"])
        fp32 = onnx_notebook(package, models[package], image, paths["fp32"])
        masks[package] = [int8[key][0] for key in ("point", "mask input", "box and point")]
        for key in ("point", "mask input", "box and point"):
            assert int8[key][0].shape == fp32[key][0].shape
    for a, b in zip(masks["segany"], masks[OFFICIAL]):
        union = (a | b).sum()
        assert union == 0 or (a & b).sum() / union >= 0.9


# --- scripts/export_onnx_model.py ---------------------------------------------------------------


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.cpu().numpy()


def export_as_script(
    module: torch.nn.Module,
    dummy_inputs: dict[str, torch.Tensor],
    output: Any,
    opset: int,
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """The script's ``torch.onnx.export`` call (with the TorchScript exporter: torch's default
    one needs onnxscript), its tracer warnings silenced as the script does."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            tuple(dummy_inputs.values()),
            output,
            export_params=True,
            verbose=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=list(dummy_inputs.keys()),
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )


def export_encoder_as_script(sam, output: str, opset: int, encoder_data_file: str | None):
    """The script's ``export_encoder``; returns onnxruntime's outputs on its dummy input."""
    size = sam.image_encoder.img_size
    dynamic_axes = {"x": {0: "batch"}}
    dummy_inputs = {"x": torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))}
    _ = sam.image_encoder(**dummy_inputs)
    output_names = ["image_embeddings"]
    export_as_script(sam.image_encoder, dummy_inputs, output, opset, output_names, dynamic_axes)
    if encoder_data_file:
        from onnx.external_data_helper import convert_model_to_external_data

        onnx_model = onnx.load(output)
        convert_model_to_external_data(
            onnx_model,
            all_tensors_to_one_file=True,
            location=encoder_data_file,
            size_threshold=1024,
            convert_attribute=False,
        )
        onnx.save_model(onnx_model, output)
    ort_inputs = {k: to_numpy(v) for k, v in dummy_inputs.items()}
    return ort.InferenceSession(output, providers=["CPUExecutionProvider"]).run(None, ort_inputs)


def export_decoder_as_script(
    package: str,
    sam,
    output: str,
    opset: int,
    return_single_mask: bool,
    gelu_approximate: bool,
    use_stability_score: bool,
    return_extra_metrics: bool,
):
    """The script's ``export_decoder``; returns onnxruntime's outputs on its dummy inputs."""
    SamOnnxModel = use(package, ".utils.onnx").SamOnnxModel
    onnx_model = SamOnnxModel(
        model=sam,
        return_single_mask=return_single_mask,
        use_stability_score=use_stability_score,
        return_extra_metrics=return_extra_metrics,
    )
    if gelu_approximate:
        for _, m in onnx_model.named_modules():
            if isinstance(m, torch.nn.GELU):
                m.approximate = "tanh"
    dynamic_axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}
    dummy_inputs = dummy_decoder_inputs(sam, seed=2)
    _ = onnx_model(**dummy_inputs)
    output_names = ["masks", "iou_predictions", "low_res_masks"]
    export_as_script(onnx_model, dummy_inputs, output, opset, output_names, dynamic_axes)
    ort_inputs = {k: to_numpy(v) for k, v in dummy_inputs.items()}
    return ort.InferenceSession(output, providers=["CPUExecutionProvider"]).run(None, ort_inputs)


def test_export_script_encoder_and_decoder(models, tmp_path):
    """``run_export`` with the default flags, the encoder's weights in an external data file,
    then ``--quantize-encoder-out`` and ``--quantize-decoder-out``."""
    outputs = {}
    for package in PACKAGES:
        folder = tmp_path / package
        folder.mkdir()
        encoder, decoder = str(folder / "encoder.onnx"), str(folder / "decoder.onnx")
        sam = models[package]
        outputs[package] = {
            "encoder": export_encoder_as_script(sam, encoder, 17, "encoder.data"),
            "decoder": export_decoder_as_script(
                package, sam, decoder, 17, False, False, False, False
            ),
        }
        assert (folder / "encoder.data").stat().st_size > 0
        quantize(Path(encoder), folder / "encoder.int8.onnx")
        quantize(Path(decoder), folder / "decoder.int8.onnx")
        for name in ("encoder.int8.onnx", "decoder.int8.onnx"):
            ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
    ours, theirs = outputs["segany"], outputs[OFFICIAL]
    assert_same_results(ours, theirs, atol=ONNX_ATOL)
    assert ours["decoder"][0].shape == (1, 4, 1500, 2250)


@pytest.mark.parametrize(
    "flags",
    [
        dict(return_single_mask=True, gelu_approximate=True),
        dict(use_stability_score=True, return_extra_metrics=True, opset=14),
        dict(return_single_mask=True, use_stability_score=True),
    ],
    ids=["single_mask+gelu", "stability+extra_metrics+opset14", "single_mask+stability"],
)
def test_export_script_decoder_flags(models, tmp_path, flags):
    settings = dict(
        opset=17,
        return_single_mask=False,
        gelu_approximate=False,
        use_stability_score=False,
        return_extra_metrics=False,
    )
    settings.update(flags)
    outputs = {}
    try:
        for package in PACKAGES:
            path = str(tmp_path / f"{package}.onnx")
            outputs[package] = export_decoder_as_script(package, models[package], path, **settings)
    finally:  # the script switches the model's GELUs for good; the fixture is shared
        for model in models.values():
            for module in model.modules():
                if isinstance(module, torch.nn.GELU):
                    module.approximate = "none"
    ours, theirs = outputs["segany"], outputs[OFFICIAL]
    assert len(ours) == len(theirs) == (5 if settings["return_extra_metrics"] else 3)
    count = 1 if settings["return_single_mask"] else 4
    assert ours[0].shape == (1, count, 1500, 2250)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a.dtype == np.int64:  # areas: a few pixels on the threshold may flip
            np.testing.assert_allclose(a, b, rtol=MAX_DIFFERENT_PIXELS)
        else:
            assert_same(a, b, ONNX_ATOL, f"output {i}")
