"""Drop-in at every public module path: each module of the installed ``segment-anything==1.0``
(walked with ``pkgutil``) imports under ``segany`` with the same dotted path, every public name
it defines or re-exports resolves there, and functions, constructors and public methods accept
the official calls.

A module's public names are read from its source: top-level ``def``/``class``/assignments, and
names imported from within the package (``from .x import y``), without a leading underscore.
Signatures are compatible when the official positional parameters are a prefix of ours, by name
and in order; official keyword-only parameters exist here; a parameter with an official default
has one here; extra parameters have defaults; ``*args``/``**kwargs`` are kept. Static methods
stay static. Instance attributes are compared on built objects (SMALL random weights).

Beside the names, the official column store :class:`~segany.utils.amg.MaskData`,
``calculate_stability_score`` (keywords) and the helper methods of ``SamOnnxModel`` are checked
against the official ones on the same inputs.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import segment_anything as official_package
import torch
from segment_anything.automatic_mask_generator import (
    SamAutomaticMaskGenerator as OfficialGenerator,
)
from segment_anything.predictor import SamPredictor as OfficialPredictor
from segment_anything.utils import amg as official_amg
from segment_anything.utils.onnx import SamOnnxModel as OfficialOnnxModel
from segment_anything.utils.transforms import ResizeLongestSide as OfficialResize

import segany
from conftest import SMALL, make_pair
from segany import compat
from segany.utils import amg
from segany.utils.onnx import SamOnnxModel
from segany.utils.transforms import ResizeLongestSide

OFFICIAL = "segment_anything"
OURS = "segany"
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
EMPTY = inspect.Parameter.empty


# --- the official public surface ----------------------------------------------------------------


def official_modules() -> list[str]:
    walked = pkgutil.walk_packages(official_package.__path__, prefix=OFFICIAL + ".")
    return [OFFICIAL, *sorted(info.name for info in walked)]


@cache
def public_names(module_name: str) -> tuple[str, ...]:
    """Names ``module_name`` defines at top level or imports from within the package."""
    module = importlib.import_module(module_name)
    tree = ast.parse(Path(module.__file__).read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.ImportFrom):
            internal = node.level > 0 or (node.module or "").startswith(OFFICIAL)
            if internal:
                names += [alias.asname or alias.name for alias in node.names]
    return tuple(dict.fromkeys(n for n in names if not n.startswith("_")))


def ours_path(module_name: str) -> str:
    return OURS + module_name[len(OFFICIAL) :]


MODULES = official_modules()
NAMES = [(module, name) for module in MODULES for name in public_names(module)]
CALLABLES = [
    (module, name)
    for module, name in NAMES
    if callable(getattr(importlib.import_module(module), name))
]


@pytest.fixture(autouse=True)
def keep_segany_build_sam_function():
    """Importing the module ``segany.build_sam`` may rebind ``segany.build_sam`` to the module
    (see :func:`test_build_sam_module_does_not_shadow_the_function`); put the function back so
    one failure does not spread to other tests in the session."""
    yield
    if not callable(segany.build_sam):
        segany.build_sam = compat.build_sam


def test_the_walk_finds_the_official_surface():
    assert {"segment_anything.utils.onnx", "segment_anything.build_sam"} <= set(MODULES)
    assert "MaskData" in public_names("segment_anything.utils.amg")
    assert "sam_model_registry" in public_names("segment_anything")
    assert "SamOnnxModel" in public_names("segment_anything.utils.onnx")
    assert "torch" not in public_names("segment_anything.utils.onnx")


@pytest.mark.parametrize("module", MODULES)
def test_module_path_imports(module):
    importlib.import_module(ours_path(module))


@pytest.mark.parametrize(("module", "name"), NAMES, ids=[f"{m}.{n}" for m, n in NAMES])
def test_public_name_resolves(module, name):
    ours = importlib.import_module(ours_path(module))
    assert hasattr(ours, name), f"{ours_path(module)} has no {name}"
    theirs = getattr(importlib.import_module(module), name)
    mine = getattr(ours, name)
    assert callable(mine) == callable(theirs)
    assert inspect.isclass(mine) == inspect.isclass(theirs)
    if isinstance(theirs, dict):  # sam_model_registry
        assert isinstance(mine, dict) and set(theirs) <= set(mine)


# --- signatures ---------------------------------------------------------------------------------


def signature_problems(theirs, mine) -> list[str]:
    """Why a call written for ``theirs`` could fail on ``mine`` (empty: compatible)."""
    a = inspect.signature(theirs).parameters
    b = inspect.signature(mine).parameters
    problems = []
    theirs_pos = [p.name for p in a.values() if p.kind in POSITIONAL]
    mine_pos = [p for p in b.values() if p.kind in POSITIONAL]
    if [p.name for p in mine_pos[: len(theirs_pos)]] != theirs_pos:
        problems.append(f"positional {theirs_pos} != {[p.name for p in mine_pos]}")
    kinds = {p.kind for p in b.values()}
    for p in a.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL and p.kind not in kinds:
            problems.append("no *args")
        elif p.kind is inspect.Parameter.VAR_KEYWORD and p.kind not in kinds:
            problems.append("no **kwargs")
        elif (
            p.kind is inspect.Parameter.KEYWORD_ONLY
            and p.name not in b
            and inspect.Parameter.VAR_KEYWORD not in kinds
        ):
            problems.append(f"no keyword {p.name}")
        if p.default is not EMPTY and p.name in b and b[p.name].default is EMPTY:
            problems.append(f"{p.name} has no default")
    for p in b.values():
        required = p.default is EMPTY and p.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if required and p.name not in a:
            problems.append(f"extra required parameter {p.name}")
    return problems


def public_methods(cls: type) -> dict[str, object]:
    """The official class's own public methods (static and class methods included), as stored
    in the class body."""
    return {
        name: value
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or isinstance(value, (staticmethod, classmethod)))
    }


@pytest.mark.parametrize(("module", "name"), CALLABLES, ids=[f"{m}.{n}" for m, n in CALLABLES])
def test_signatures_are_compatible(module, name):
    theirs = getattr(importlib.import_module(module), name)
    mine = getattr(importlib.import_module(ours_path(module)), name, None)
    if mine is None:
        pytest.fail(f"{ours_path(module)} has no {name}")
    if isinstance(theirs, dict):
        return
    if not inspect.isclass(theirs):
        assert signature_problems(theirs, mine) == []
        return
    problems = {"__init__": signature_problems(theirs.__init__, mine.__init__)}
    for method, stored in public_methods(theirs).items():
        if not hasattr(mine, method):
            problems[method] = ["missing"]
            continue
        mine_stored = inspect.getattr_static(mine, method)
        if isinstance(stored, staticmethod) and not isinstance(mine_stored, staticmethod):
            problems[method] = ["not a static method"]
            continue
        problems[method] = signature_problems(getattr(theirs, method), getattr(mine, method))
    assert {k: v for k, v in problems.items() if v} == {}


def test_signature_check_catches_renames():
    def official(masks, mask_threshold, threshold_offset): ...

    def renamed(logits, threshold, offset): ...

    def extended(masks, mask_threshold, threshold_offset, *, chunk=None): ...

    def required_extra(masks, mask_threshold, threshold_offset, chunk): ...

    assert signature_problems(official, renamed)
    assert signature_problems(official, extended) == []
    assert signature_problems(official, required_extra)


def test_build_sam_module_does_not_shadow_the_function():
    """``import segany.build_sam`` (the module path) must leave ``segany.build_sam`` the
    builder function, as in the official package."""
    code = (
        "import segany.build_sam, segany\n"
        "from segany import build_sam\n"
        "assert callable(segany.build_sam) and callable(build_sam), segany.build_sam\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# --- instance attributes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair():
    return make_pair(SMALL, seed=1)


def public_attributes(obj) -> set[str]:
    return {k for k in vars(obj) if not k.startswith("_") and k != "training"}


def test_model_tree_attributes(pair):
    ours, theirs = pair
    modules = dict(ours.named_modules())
    missing = []
    for name, module in theirs.named_modules():
        assert name in modules, f"no submodule {name}"
        mine = modules[name]
        assert type(module).__name__ in class_names(mine), name
        missing += [f"{name}.{k}" for k in public_attributes(module) if not hasattr(mine, k)]
    for attribute in ("device", "mask_threshold", "image_format", "pixel_mean", "pixel_std"):
        assert hasattr(ours, attribute)
    assert missing == []


def class_names(value) -> set[str]:
    """The names of ``value``'s class and its bases: a module with segany's speed routes
    installed is a subclass of the reference class with the official name."""
    return {cls.__name__ for cls in type(value).__mro__}


def _official_twin(value) -> str | None:
    """The class name of an official object (for matching to ours), else None."""
    module = type(value).__module__
    return type(value).__name__ if module.startswith(OFFICIAL) else None


@pytest.mark.parametrize("kind", ["SamPredictor", "SamAutomaticMaskGenerator", "SamOnnxModel"])
def test_instance_attributes(pair, kind):
    ours, theirs = pair
    if kind == "SamPredictor":
        mine, official = compat.SamPredictor(ours), OfficialPredictor(theirs)
    elif kind == "SamAutomaticMaskGenerator":
        mine, official = segany.SamAutomaticMaskGenerator(ours), OfficialGenerator(theirs)
    else:
        mine, official = SamOnnxModel(ours, True), OfficialOnnxModel(theirs, True)
    missing = sorted(k for k in public_attributes(official) if not hasattr(mine, k))
    assert missing == []
    for key in public_attributes(official):
        twin = _official_twin(getattr(official, key))
        if twin is not None:  # e.g. the generator's predictor: the same class by name
            assert twin in class_names(getattr(mine, key)), key


def test_resize_longest_side_attributes():
    assert public_attributes(OfficialResize(256)) <= public_attributes(ResizeLongestSide(256))


# --- MaskData -----------------------------------------------------------------------------------


def _columns(rng: np.random.Generator, n: int) -> dict:
    return {
        "boxes": torch.from_numpy(rng.integers(0, 50, (n, 4))),
        "iou_preds": torch.from_numpy(rng.random(n).astype(np.float32)),
        "points": rng.random((n, 2)),
        "rles": [{"size": [4, 5], "counts": [i, 20 - i]} for i in range(n)],
    }


def _as_plain(data) -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            out[key] = ("tensor", value.tolist())
        elif isinstance(value, np.ndarray):
            out[key] = ("array", value.tolist())
        else:
            out[key] = (type(value).__name__, value)
    return out


def test_mask_data_matches_official():
    rng = np.random.default_rng(0)
    first, second = _columns(rng, 6), _columns(rng, 3)
    ours, theirs = amg.MaskData(**first), official_amg.MaskData(**first)
    for data, cls in ((ours, amg.MaskData), (theirs, official_amg.MaskData)):
        data.cat(cls(**second))
        data.cat(cls(extra=list(range(9))))  # a column new here is copied in
        data["scores"] = torch.arange(9.0)
        data.filter(data["iou_preds"] > 0.3)  # bool mask
        assert len(data["rles"]) >= 3
        data.filter(torch.tensor([2, 0, 1]))  # indices
        del data["extra"]
        data["none"] = []
        data.to_numpy()
        assert isinstance(data["iou_preds"], np.ndarray)
    assert _as_plain(ours) == _as_plain(theirs)
    assert next(iter(ours.items()))[0] == "boxes"


def test_mask_data_copies_and_none_columns():
    column = [{"counts": [1]}]
    ours = amg.MaskData()
    ours.cat(amg.MaskData(rles=column))
    assert ours["rles"] == column and ours["rles"] is not column  # cat copies new columns
    ours._stats["gone"] = None
    ours.filter(torch.tensor([True]))
    assert ours["gone"] is None


def test_mask_data_rejects_other_types():
    with pytest.raises(AssertionError):
        amg.MaskData(scores=3.0)
    with pytest.raises(TypeError):
        amg.MaskData()["scores"] = (1, 2)
    data = amg.MaskData(rles=[1])
    data._stats["odd"] = {1: 2}
    with pytest.raises(TypeError):
        data.filter(torch.tensor([0]))
    with pytest.raises(TypeError):
        amg.MaskData(odd=[1]).cat(data)


# --- calculate_stability_score and SamOnnxModel's helpers ---------------------------------------


def test_calculate_stability_score_keywords():
    logits = 3 * torch.randn(2, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    kwargs = dict(masks=logits, mask_threshold=0.0, threshold_offset=1.0)
    expected = official_amg.calculate_stability_score(**kwargs)
    got = amg.calculate_stability_score(**kwargs)
    assert got.dtype == expected.dtype and got.shape == (2, 3)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(
        amg.calculate_stability_score(logits, 0.5, 0.25),
        official_amg.calculate_stability_score(logits, 0.5, 0.25),
    )


@pytest.mark.parametrize("size", [(1500.0, 2250.0), (300.0, 451.0), (1025.0, 7.0)])
def test_onnx_model_resize_longest_image_size(size):
    given = torch.tensor(size)
    expected = OfficialOnnxModel.resize_longest_image_size(given, 1024)
    got = SamOnnxModel.resize_longest_image_size(given, 1024)
    assert got.dtype == torch.int64 and got.tolist() == expected.tolist()


def test_onnx_model_helpers_match_official(pair):
    ours, theirs = pair
    mine, official = SamOnnxModel(ours, True), OfficialOnnxModel(theirs, True)
    assert mine.mask_decoder is ours.mask_decoder and mine.img_size == official.img_size
    assert mine.stability_score_offset == official.stability_score_offset
    generator = torch.Generator().manual_seed(2)
    masks = torch.randn(2, 4, 64, 64, generator=generator)
    scores = torch.rand(2, 4, generator=generator)
    for num_points in (1, 2, 3):
        got = mine.select_masks(masks, scores, num_points)
        expected = official.select_masks(masks, scores, num_points)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b)
    size = torch.tensor([120.0, 180.0])
    torch.testing.assert_close(
        mine.mask_postprocessing(masks, size),
        official.mask_postprocessing(masks, size),
        atol=1e-5,
        rtol=0,
    )


def test_onnx_model_forward_matches_official(pair):
    ours, theirs = pair
    pe = theirs.prompt_encoder
    generator = torch.Generator().manual_seed(4)
    inputs = dict(
        image_embeddings=torch.randn(
            1, pe.embed_dim, *pe.image_embedding_size, generator=generator
        ),
        point_coords=torch.rand(1, 3, 2, generator=generator) * 256,
        point_labels=torch.tensor([[1.0, 0.0, -1.0]]),
        mask_input=torch.randn(1, 1, *pe.mask_input_size, generator=generator),
        has_mask_input=torch.tensor([1.0]),
        orig_im_size=torch.tensor([120.0, 180.0]),
    )
    for flags in [(False, False, False), (True, True, False), (False, False, True)]:
        got = SamOnnxModel(ours, *flags)(**inputs)
        expected = OfficialOnnxModel(theirs, *flags)(**inputs)
        assert len(got) == len(expected)
        assert not any(t.requires_grad for t in got)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a.to(b.dtype), b, atol=1e-4, rtol=0)
    changed = SamOnnxModel(ours, False)
    changed.stability_score_offset = 2.0
    with pytest.raises(ValueError, match="stability_score_offset"):
        changed(**inputs)


# --- postprocess_small_regions ------------------------------------------------------------------


def _blob_masks() -> torch.Tensor:
    """Masks with small holes, small islands, both, neither, and near-duplicates."""
    masks = torch.zeros(5, 40, 50, dtype=torch.bool)
    masks[:, 5:30, 5:35] = True
    masks[0, 10:12, 10:12] = False  # a small hole
    masks[1, 35:37, 40:42] = True  # a small island
    masks[2, 10:12, 10:12] = False
    masks[2, 35:37, 40:42] = True
    masks[4, 5:30, 5:36] = True  # a near-duplicate of the clean mask 3
    return masks


def test_postprocess_small_regions_matches_official():
    masks = _blob_masks()
    columns = dict(
        rles=official_amg.mask_to_rle_pytorch(masks),
        boxes=official_amg.batched_mask_to_box(masks),
        iou_preds=torch.linspace(0.5, 0.9, len(masks)),
        points=np.arange(2 * len(masks), dtype=float).reshape(-1, 2),
    )
    expected = OfficialGenerator.postprocess_small_regions(
        official_amg.MaskData(**columns), 10, 0.7
    )
    SamAutomaticMaskGenerator = segany.SamAutomaticMaskGenerator
    method = inspect.getattr_static(SamAutomaticMaskGenerator, "postprocess_small_regions", None)
    assert isinstance(method, staticmethod), "SamAutomaticMaskGenerator.postprocess_small_regions"
    got = SamAutomaticMaskGenerator.postprocess_small_regions(amg.MaskData(**columns), 10, 0.7)
    assert isinstance(got, amg.MaskData)
    assert _as_plain(got) == _as_plain(expected)
    empty = amg.MaskData(rles=[], boxes=torch.zeros(0, 4))
    assert SamAutomaticMaskGenerator.postprocess_small_regions(empty, 10, 0.7) is empty


# --- image encoder helpers ----------------------------------------------------------------------


def test_image_encoder_helpers_match_official():
    from segment_anything.modeling import image_encoder as official

    from segany.modeling import image_encoder as ours

    generator = torch.Generator().manual_seed(3)
    rel_pos_h = torch.randn(13, 8, generator=generator)  # 2 * 7 - 1: as stored
    rel_pos_w = torch.randn(9, 8, generator=generator)  # resized to 2 * 7 - 1
    for q, k in ((7, 7), (4, 7)):
        expected = official.get_rel_pos(q_size=q, k_size=k, rel_pos=rel_pos_h)
        torch.testing.assert_close(
            ours.get_rel_pos(q_size=q, k_size=k, rel_pos=rel_pos_h), expected
        )
    q = torch.randn(6, 7 * 7, 8, generator=generator)
    attn = torch.randn(6, 7 * 7, 7 * 7, generator=generator)
    kwargs = dict(rel_pos_h=rel_pos_h, rel_pos_w=rel_pos_w, q_size=(7, 7), k_size=(7, 7))
    torch.testing.assert_close(
        ours.add_decomposed_rel_pos(attn, q, **kwargs),
        official.add_decomposed_rel_pos(attn, q, **kwargs),
        atol=1e-5,
        rtol=1e-5,
    )
    x = torch.randn(2, 10, 9, 4, generator=generator)
    windows, pad_hw = ours.window_partition(x, window_size=4)
    expected_windows, expected_pad = official.window_partition(x, window_size=4)
    assert pad_hw == expected_pad
    torch.testing.assert_close(windows, expected_windows)
    torch.testing.assert_close(
        ours.window_unpartition(windows, window_size=4, pad_hw=pad_hw, hw=(10, 9)), x
    )
