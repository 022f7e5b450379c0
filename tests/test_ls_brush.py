"""Label Studio's brush RLE (segany.formats.ls_brush): our encoder and decoder agree with
Label Studio's own (label_studio_sdk.converter.brush, run in Label Studio's environment) both
ways, on masks with single pixels, long runs and runs over the widest length field; broken
input is refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from segany.formats.ls_brush import (
    BrushRleError,
    decode_brush_rle,
    decode_brush_values,
    encode_brush_rle,
)


def masks() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [np.zeros((1, 1), bool), np.ones((2, 3), bool), rng.random((7, 9)) < 0.5]
    speckled = rng.random((40, 60)) < 0.03
    block = np.zeros((180, 200), bool)  # background runs longer than 2**16 RGBA values
    block[60:150, 20:170] = True
    block[0, 0] = block[-1, -1] = True
    full = np.ones((140, 130), bool)  # one run of 72,800 values: split over the widest field
    return [*out, speckled, block, full]


@pytest.mark.parametrize("index", range(6))
def test_our_encoding_round_trips(index):
    mask = masks()[index]
    rle = encode_brush_rle(mask)
    assert all(isinstance(v, int) and 0 <= v < 256 for v in rle)
    assert np.array_equal(decode_brush_rle(rle, *mask.shape), mask)


def test_label_studio_reads_ours_and_we_read_label_studios(label_studio_python):
    from label_studio_server import label_studio_sdk

    cases = masks()
    ours = [{"rle": encode_brush_rle(m), "height": m.shape[0], "width": m.shape[1]} for m in cases]
    theirs = label_studio_sdk(label_studio_python, ours + [{"mask": m.tolist()} for m in cases])
    for mask, decoded in zip(cases, theirs[: len(cases)]):
        assert np.array_equal(np.array(decoded["mask"], bool), mask)
        assert set(decoded["values"]) <= {0, 255}  # RGBA all 255 on the mask, 0 off it
    for mask, encoded in zip(cases, theirs[len(cases) :]):
        assert np.array_equal(decode_brush_rle(encoded["rle"], *mask.shape), mask)


def test_literal_chunks_are_read():
    """Label Studio's page writes literal chunks (flag 0) too: three words 1, 2, 3 and a run."""
    bits = f"{7:032b}{7:05b}" + "".join(f"{w - 1:04b}" for w in (3, 4, 8, 16))
    bits += "0" + "00" + f"{2:03b}" + "".join(f"{v:08b}" for v in (1, 2, 3))
    bits += "1" + "00" + f"{3:03b}" + f"{9:08b}"
    bits += "0" * (-len(bits) % 8)
    data = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode_brush_values(data).tolist() == [1, 2, 3, 9, 9, 9, 9]


def test_broken_input_is_refused():
    rle = encode_brush_rle(np.ones((4, 5), bool))
    with pytest.raises(BrushRleError, match="expected"):
        decode_brush_rle(rle, 5, 5)  # another image size
    with pytest.raises(BrushRleError, match="ends in the middle"):
        decode_brush_rle(rle[:-2], 4, 5)
    with pytest.raises(BrushRleError, match="header"):
        decode_brush_rle(rle[:3], 4, 5)
    with pytest.raises(BrushRleError, match="byte values"):
        decode_brush_rle([*rle[:-1], 300], 4, 5)
    with pytest.raises(BrushRleError, match="more than the data holds"):
        decode_brush_values([255, 255, 255, 255, 0, 0, 0, 0])  # 4 billion values claimed
