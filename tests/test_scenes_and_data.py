"""The scene generator, SA-1B shards, dataset readers and training-example preprocessing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from segany.data import (
    CocoInstances,
    GeneratedScenes,
    Sa1bFolder,
    SceneConfig,
    generate_scene,
    open_dataset,
    write_generated_shards,
)
from segany.formats import decode_coco_rle, encode_coco_rle, mask_bbox_xywh, read_sa1b
from segany.formats.boxes import masks_to_boxes
from segany.train.batching import collate, prepare_example


def test_scenes_are_deterministic_and_varied():
    a, b, c = generate_scene(7), generate_scene(7), generate_scene(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.image.shape == (256, 256, 3)
    assert a.masks.dtype == bool and a.masks.shape[1:] == (256, 256)
    shapes = {s.split("-")[-1] for seed in range(40) for s in generate_scene(seed).shapes}
    assert {"polygon", "ellipse", "star", "ring", "bar", "blob"} <= shapes


def test_parts_lie_inside_their_whole_and_make_clicks_ambiguous():
    found = 0
    for seed in range(30):
        scene = generate_scene(seed)
        for index, parent in enumerate(scene.parents):
            if parent >= 0:
                part, whole = scene.masks[index], scene.masks[parent]
                assert (part & ~whole).sum() == 0  # nested: a click on the part is in both
                assert part.sum() < whole.sum()
                found += 1
    assert found >= 5


def test_visible_masks_respect_occlusion():
    for seed in range(20):
        scene = generate_scene(seed)
        wholes = [m for m, p in zip(scene.masks, scene.parents) if p < 0]
        if len(wholes) > 1:
            stacked = np.stack(wholes).sum(axis=0)
            assert stacked.max() == 1  # visible whole objects never overlap
        assert all(m.sum() >= SceneConfig().min_visible_pixels for m in scene.masks)


def test_rle_round_trip_and_bbox_convention():
    mask = np.zeros((7, 9), dtype=bool)
    mask[2:5, 3:8] = True
    rle = encode_coco_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [7, 9]
    assert np.array_equal(decode_coco_rle(rle), mask)
    assert mask_bbox_xywh(mask) == [3, 2, 4, 2]  # w = x_max - x_min over inclusive indices
    one = np.zeros((3, 3), dtype=bool)
    one[1, 1] = True
    assert mask_bbox_xywh(one) == [1, 1, 0, 0]
    assert mask_bbox_xywh(np.zeros((3, 3), dtype=bool)) == [0, 0, 0, 0]


def test_shards_round_trip_through_sa1b_reader(tmp_path):
    assert write_generated_shards(tmp_path, 100, 3, progress=False) == 3
    assert write_generated_shards(tmp_path, 100, 4, progress=False) == 1  # resumable
    folder, generated = Sa1bFolder(tmp_path), GeneratedScenes(100, 4)
    assert len(folder) == 4
    for i in range(4):
        assert np.array_equal(folder[i].image, generated[i].image)
        assert np.array_equal(folder[i].masks, generated[i].masks)
    info, annotations = read_sa1b(sorted(tmp_path.glob("*.json"))[0])
    assert info.width == 256 and info.file_name.endswith(".png")
    assert all(a.area == int(a.mask().sum()) for a in annotations)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_coco_reader(tmp_path):
    from pycocotools import mask as mask_utils

    image = np.full((40, 50, 3), 120, dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    square = np.zeros((40, 50), dtype=np.uint8, order="F")
    square[5:15, 10:30] = 1
    rle = mask_utils.encode(square)
    rle["counts"] = rle["counts"].decode()
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 50}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 200,
                "bbox": [10, 5, 20, 10],
                "segmentation": [[10, 5, 30, 5, 30, 15, 10, 15]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 1,
                "area": 200,
                "bbox": [10, 5, 20, 10],
                "segmentation": rle,
            },
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    dataset = open_dataset(str(tmp_path / "ann.json"), str(tmp_path))
    assert isinstance(dataset, CocoInstances) and len(dataset) == 1
    sample = dataset[0]
    assert sample.masks.shape == (1, 40, 50)  # the crowd region is skipped
    assert abs(int(sample.masks[0].sum()) - 200) <= 60  # polygon rasterisation


def test_open_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="generated:START:COUNT"):
        open_dataset("generated:abc")
    with pytest.raises(ValueError, match="not a dataset"):
        open_dataset(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no SA-1B json"):
        open_dataset(str(tmp_path))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="needs the image folder"):
        open_dataset(str(tmp_path / "x.json"))


def test_prepare_example_geometry_and_filters():
    from segany.data.datasets import MaskSample

    image = np.zeros((100, 200, 3), dtype=np.uint8)
    masks = np.zeros((3, 100, 200), dtype=bool)
    masks[0, 10:30, 20:60] = True
    masks[1] = True  # covers > 90%: dropped
    masks[2, 50:100, 100:200] = True
    rng = np.random.default_rng(0)
    example = prepare_example(MaskSample(image, masks, "x"), 64, max_masks=5, rng=rng)
    assert example.image.shape == (3, 32, 64)  # longest side 64, not padded
    assert example.masks.shape == (2, 64, 64)  # padded to the square input
    assert not example.masks[:, 32:].any()
    torch.testing.assert_close(
        example.boxes[0], torch.tensor([6.0, 3.0, 19.0, 9.0]), atol=1, rtol=0
    )
    limited = prepare_example(MaskSample(image, masks, "x"), 64, max_masks=1, rng=rng)
    assert limited.masks.shape[0] == 1
    assert prepare_example(MaskSample(image, masks[1:2], "x"), 64, 5, rng) is None
    batch = collate([example, None, limited])
    assert len(batch.images) == 2 and batch.masks.shape[0] == 3
    assert batch.image_index.tolist() == [0, 0, 1]


def test_masks_to_boxes_inclusive():
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 0] = True
    assert masks_to_boxes(torch.from_numpy(masks)).tolist() == [
        [3.0, 2.0, 8.0, 4.0],
        [0.0, 9.0, 0.0, 9.0],
    ]
