"""Video evaluation: the clip generator's exact masks, the DAVIS measures on cases with known
answers, and ``segany eval-video`` end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from segany.cli import main
from segany.data.clips import ClipConfig, clip_script, generate_clip, render_clip, render_frame
from segany.evaluate import tracking
from segany.evaluate.clip_files import read_clip_truth
from segany.evaluate.video import (
    Statistics,
    boundary_f_measure,
    boundary_map,
    boundary_tolerance,
    region_similarity,
    score_object,
)
from segany.video import TrackedMask

SMALL = ClipConfig(height=96, width=128, frames=12, blur_sigma=0.0, noise_sigma=0.0)
MAGENTA = np.array([255.0, 0.0, 255.0], dtype=np.float32)


# -- the clip generator -----------------------------------------------------------------------


def test_clip_is_determined_by_its_seed():
    first, again, other = generate_clip(5, SMALL), generate_clip(5, SMALL), generate_clip(6, SMALL)
    assert np.array_equal(first.frames, again.frames)
    assert first.masks.keys() == again.masks.keys()
    assert all(np.array_equal(first.masks[k], again.masks[k]) for k in first.masks)
    assert not np.array_equal(first.frames, other.frames)
    assert first.frames.shape == (12, 96, 128, 3) and first.frames.dtype == np.uint8


def test_masks_are_the_pixels_each_object_paints_and_visible_parts_never_overlap():
    """Recolour one object's sprite to a colour found nowhere else: with blur and noise off,
    exactly its visible mask turns that colour, frame by frame (occluded parts stay hidden)."""
    occluded = 0
    for seed in range(4):
        script = clip_script(seed, SMALL)
        clip = render_clip(script)
        labels = np.zeros(clip.frames.shape[:3], dtype=int)
        for object_id, masks in clip.masks.items():
            assert masks[0].sum() >= SMALL.min_visible_pixels  # every object shows on frame 0
            assert not (labels[masks] > 0).any()  # visible parts are disjoint
            labels[masks] = object_id
            sprite = script.sprites[object_id - 1]
            marked = dataclasses.replace(
                sprite, colour=np.broadcast_to(MAGENTA, sprite.colour.shape).copy()
            )
            sprites = list(script.sprites)
            sprites[object_id - 1] = marked
            recoloured = dataclasses.replace(script, sprites=tuple(sprites))
            for t in range(0, SMALL.frames, 3):
                frame, visible = render_frame(recoloured, t)
                painted = (frame == MAGENTA.astype(np.uint8)).all(axis=-1)
                assert np.array_equal(painted, masks[t]) and np.array_equal(
                    visible[object_id - 1], masks[t]
                )
        # an object drawn behind another loses pixels it would show alone
        for object_id in clip.masks:
            alone = dataclasses.replace(
                script,
                sprites=(script.sprites[object_id - 1],),
                motions=(script.motions[object_id - 1],),
            )
            whole = np.stack([render_frame(alone, t)[1][0] for t in range(SMALL.frames)])
            assert (clip.masks[object_id] <= whole).all()
            occluded += int((whole & ~clip.masks[object_id]).any())
    assert occluded > 0


def test_an_object_that_leaves_the_frame_has_empty_masks_until_it_comes_back():
    """Some object is fully out of sight (its sprite's reach beyond the border) on middle frames
    and seen again later; its masks there are empty."""
    found = False
    for seed in range(10):
        script = clip_script(seed, SMALL)
        clip = render_clip(script)
        for index, (sprite, motion) in enumerate(zip(script.sprites, script.motions)):
            reach = sprite.reach * motion.scale
            x, y = motion.centre[:, 0], motion.centre[:, 1]
            outside = (
                (x + reach < 0)
                | (x - reach > SMALL.width)
                | (y + reach < 0)
                | (y - reach > SMALL.height)
            )
            if not outside.any():
                continue
            masks = clip.masks[index + 1]
            assert not masks[outside].any()
            last_out = int(np.flatnonzero(outside)[-1])
            assert masks[last_out + 1 :].any(axis=(1, 2)).any()  # it re-enters
            found = True
    assert found


# -- the measures ------------------------------------------------------------------------------


def _square(shift: int = 0) -> np.ndarray:
    mask = np.zeros((100, 100), dtype=bool)
    mask[20:60, 20 + shift : 60 + shift] = True
    return mask


def test_identical_masks_score_one_and_disjoint_ones_zero():
    square = _square()
    assert region_similarity(square, square) == 1.0 and boundary_f_measure(square, square) == 1.0
    far = np.zeros_like(square)
    far[80:95, 80:95] = True
    assert region_similarity(square, far) == 0.0 and boundary_f_measure(square, far) == 0.0


def test_a_square_shifted_by_five_pixels_scores_as_computed_by_hand():
    """40x40 square, shifted 5 px right, 100x100 image: J = 40*35 / (40*45). The boundary of
    each is the 41x41 outline (160 px) of the square grown by one pixel up and left; the
    tolerance is ceil(0.008 * 141.4) = 2 px. Matched within 2 px: 38 px on each of the top and
    bottom rows, 2 + 2 on the right column, none on the left one: 80 of 160, so P = R = F = 0.5."""
    a, b = _square(), _square(5)
    assert boundary_tolerance(a.shape) == 2
    assert boundary_map(a).sum() == 160
    assert region_similarity(a, b) == pytest.approx(1400 / 1800)
    assert boundary_f_measure(a, b) == pytest.approx(0.5)


def test_empty_cases_follow_davis():
    empty, square = np.zeros((50, 50), dtype=bool), _square()[:50, :50]
    assert region_similarity(empty, empty) == 1.0 and boundary_f_measure(empty, empty) == 1.0
    assert region_similarity(square, empty) == 0.0 and boundary_f_measure(square, empty) == 0.0
    assert region_similarity(empty, square) == 0.0 and boundary_f_measure(empty, square) == 0.0


def test_void_pixels_count_for_neither_side():
    truth, prediction = _square(), _square(5)
    void = prediction & ~truth  # the spill-over is void: the prediction is then all right
    assert region_similarity(truth, prediction, void) == pytest.approx(1400 / 1600)
    assert region_similarity(truth, truth | void, void) == 1.0


def test_clip_scores_skip_the_first_and_last_frames_and_summarise_as_davis():
    truth = np.stack([_square()] * 10)
    prediction = truth.copy()
    prediction[0] = prediction[9] = False  # unscored frames: no effect
    prediction[5:9] = False  # lost on 4 of the 8 scored frames
    score = score_object("c", 1, truth, prediction)
    assert score.frames == tuple(range(1, 9))
    assert score.j == (1.0,) * 4 + (0.0,) * 4 and score.f == score.j
    assert score.j_stats == Statistics(mean=0.5, recall=0.5, decay=1.0)
    assert score.jf == 0.5


# -- the runner and the command ----------------------------------------------------------------


def _oracle(drop: int | None):
    """A stand-in for ``track`` that answers each frame with the ground truth, except object
    ``drop``, which it never finds."""

    def fake_track(predictor, frames, prompts, settings=None):
        for index in range(len(frames)):
            yield (
                index,
                {
                    p.object_id: TrackedMask(
                        p.object_id, index, truth[p.object_id][index], 1.0, False
                    )
                    for p in prompts
                    if p.object_id != drop
                },
            )

    truth: dict[int, np.ndarray] = {}
    return truth, fake_track


@pytest.mark.parametrize("prompt", ["box", "point"])
def test_the_runner_prompts_each_object_on_its_first_visible_frame_and_scores_every_object(
    prompt,
):
    clip = generate_clip(3, SMALL)
    truth, fake_track = _oracle(drop=2)
    truth.update(clip.masks)
    case = tracking.ClipCase(clip.name, list(clip.frames), clip.masks)
    report = tracking.evaluate_tracker(None, iter([case]), prompt, tracker=fake_track)
    prompts = tracking.first_prompts(clip.masks, prompt)
    assert [p.frame_index for p in prompts] == [0] * len(clip.masks)
    for p in prompts:
        if prompt == "box":
            ys, xs = np.nonzero(clip.masks[p.object_id][0])
            assert list(p.box) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        else:
            x, y = p.points[0].astype(int)
            assert clip.masks[p.object_id][0][y, x]
    summary = report.summary()
    per_object = summary["clips"][clip.name]["objects"]
    assert all(per_object[str(i)]["J&F"] == 1.0 for i in clip.masks if i != 2)
    # the missed object scores 1 only on scored frames where it is out of sight
    hidden = float(np.mean(~clip.masks[2][1:-1].any(axis=(1, 2))))
    assert per_object["2"]["J"]["mean"] == pytest.approx(hidden)
    n = len(clip.masks)
    assert summary["J&F"] == pytest.approx((n - 1 + hidden) / n)
    assert report.frames == SMALL.frames


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    code = main(["data", "clips", "--output", str(root), "--count", "1", "--frames", "5"])
    assert code == 0
    return root


def test_written_clips_read_back_exactly(heldout):
    clip = generate_clip(1_000_000, ClipConfig(frames=5))
    truth = read_clip_truth(heldout, clip.name)
    assert truth.masks.keys() == clip.masks.keys()
    assert all(np.array_equal(truth.masks[i], clip.masks[i]) for i in clip.masks)
    assert not truth.void.any()
    assert (heldout / "Videos" / f"{clip.name}.mp4").stat().st_size > 0
    with Image.open(heldout / "Annotations" / clip.name / "00000.png") as png:
        assert png.mode == "P" and png.getpalette()[3:6] == [128, 0, 0]  # DAVIS's colours


def test_eval_video_end_to_end_writes_a_report(heldout, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["eval-video", "--data", str(heldout), "--output", str(report_path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert 0.0 <= report["J&F"] <= 1.0 and report["J&F"] > 0.3  # a real tracker, not noise
    assert report["J&F"] == pytest.approx((report["J"]["mean"] + report["F"]["mean"]) / 2)
    assert report["frames"] == 5 and report["frames_per_second"] > 0
    assert report["protocol"]["first_and_last_frames_scored"] is False
    mean_row = next(line for line in out.splitlines() if line.startswith("mean"))
    assert f"{report['J&F']:.3f}" in mean_row


@pytest.mark.parametrize(
    "setup, data, message",
    [
        (None, "missing", "no such"),
        ("empty-clip", "root", "no annotation PNGs"),
        ("no-frames", "root", "no frames"),
        (None, "clips:5", "expected clips:START:COUNT"),
    ],
)
def test_bad_data_is_one_error_line_and_exit_2(tmp_path, capsys, setup, data, message):
    root = tmp_path / "root"
    if setup:
        (root / "Annotations" / "a").mkdir(parents=True)
    if setup == "no-frames":
        label = np.zeros((8, 8), np.uint8)
        label[2:5, 2:5] = 1
        Image.fromarray(label).save(root / "Annotations" / "a" / "00000.png")
    spec = str(tmp_path / data) if not data.startswith("clips") else data
    assert main(["eval-video", "--data", spec]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
