"""Label Studio's brush RLE: the ``value.rle`` of a ``brushlabels`` region.

It is not COCO's RLE. Label Studio packs the RGBA pixels of the image (row-major, 4 bytes a
pixel, 255 on the mask) as a bit stream (the ``rle-pack`` format of thi.ng/umbrella), sent as
a list of byte values:

* a header: the number of values (32 bits), the word size minus one (5 bits) and four run-length
  field widths minus one (4 bits each);
* chunks: a flag bit (1: one word repeated, 0: literal words), 2 bits choosing a field width,
  the run length minus one in that many bits, then the repeated word or the literal words;
* zero bits up to a whole byte.

We write repeated-word chunks only (a mask is long runs), choosing the narrowest field per run,
and read both kinds. Everything is vectorised with numpy: no loop over pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WORD_BITS = 8
FIELD_BITS = (3, 4, 8, 16)  # run-length field widths, as Label Studio's own encoder uses
CHANNELS = 4  # RGBA
ON = 255


class BrushRleError(ValueError):
    """A brush RLE that does not decode to the image it claims to cover."""


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths and values of a 1-D array."""
    edges = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], edges])
    lengths = np.diff(np.concatenate([starts, [len(values)]]))
    return lengths, values[starts]


def _bits(codes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """The low ``widths[i]`` bits of each ``codes[i]`` (< 2**32), most significant first, one
    after the other: a 1-D array of 0/1 bytes."""
    table = np.unpackbits(codes.astype(">u4").view(np.uint8).reshape(-1, 4), axis=1)
    keep = np.arange(32)[None, :] >= (32 - widths)[:, None]
    return table[keep]


def encode_brush_rle(mask: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of an ``(H, W)`` bool mask (every channel 255 on the mask)."""
    values = np.repeat(np.asarray(mask, dtype=bool).ravel(), CHANNELS).astype(np.uint8) * ON
    lengths, words = _runs(values)
    # Runs longer than the widest field are split into full pieces and a remainder.
    widest = 1 << FIELD_BITS[-1]
    pieces = (lengths + widest - 1) // widest
    words = np.repeat(words, pieces)
    last = np.cumsum(pieces) - 1
    lengths_split = np.full(int(pieces.sum()), widest, dtype=np.int64)
    lengths_split[last] = lengths - (pieces - 1) * widest
    field = np.searchsorted(1 << np.array(FIELD_BITS), lengths_split)  # narrowest that fits
    size = np.array(FIELD_BITS)[field]
    codes = (
        (1 << (2 + size + WORD_BITS))  # the repeat flag
        | (field << (size + WORD_BITS))
        | ((lengths_split - 1) << WORD_BITS)
        | words.astype(np.int64)
    )
    header_codes = np.array([len(values), WORD_BITS - 1, *(b - 1 for b in FIELD_BITS)])
    header_widths = np.array([32, 5, 4, 4, 4, 4])
    stream = np.concatenate(
        [_bits(header_codes, header_widths), _bits(codes, 3 + size + WORD_BITS)]
    )
    return np.packbits(stream).tolist()  # packbits pads the last byte with zeros


class _BitReader:
    """Big-endian fields from a bit array."""

    def __init__(self, data: Sequence[int]) -> None:
        try:
            raw = np.asarray(data, dtype=np.int64)
        except (TypeError, ValueError):
            raise BrushRleError("the rle must be a list of byte values") from None
        if raw.ndim != 1 or ((raw < 0) | (raw > 255)).any():
            raise BrushRleError("the rle must be a list of byte values (0-255)")
        self.bits = np.unpackbits(raw.astype(np.uint8))
        self.at = 0

    def read(self, width: int, count: int = 1) -> np.ndarray:
        """``count`` fields of ``width`` bits."""
        end = self.at + width * count
        if end > len(self.bits):
            raise BrushRleError("the rle ends in the middle of a run")
        fields = self.bits[self.at : end].reshape(count, width).astype(np.int64)
        self.at = end
        return fields @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))

    def one(self, width: int) -> int:
        return int(self.read(width)[0])


def decode_brush_values(rle: Sequence[int], expected: int | None = None) -> np.ndarray:
    """The flat value array of a brush RLE (for a mask: ``H * W * 4`` RGBA bytes); with
    ``expected``, a header claiming another count is refused before anything is allocated."""
    reader = _BitReader(rle)
    if len(reader.bits) < 53:
        raise BrushRleError("the rle is shorter than its header")
    count, word = reader.one(32), reader.one(5) + 1
    widths = [reader.one(4) + 1 for _ in FIELD_BITS]
    if word > 32:
        raise BrushRleError(f"word size {word} is over 32 bits")
    if expected is not None and count != expected:
        raise BrushRleError(f"the rle holds {count} values; {expected} were expected")
    # Each chunk takes at least 4 bits and covers at most 2**16 values: a bound on what the
    # stream can hold, so a header cannot make us allocate more than the data implies.
    if count > (len(reader.bits) // 4 + 1) << max(widths):
        raise BrushRleError(f"the header claims {count} values, more than the data holds")
    out = np.zeros(count, dtype=np.uint8 if word <= 8 else np.int64)
    i = 0
    while i < count:
        repeat = reader.one(1)
        end = min(count, i + 1 + reader.one(widths[reader.one(2)]))
        out[i:end] = reader.one(word) if repeat else reader.read(word, end - i)
        i = end
    return out


def decode_brush_rle(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """The ``(H, W)`` bool mask of a brush RLE (a pixel is on where its alpha is not 0)."""
    try:
        values = decode_brush_values(rle, height * width * CHANNELS)
    except BrushRleError as exc:
        raise BrushRleError(f"{exc} (a {width}x{height} RGBA image)") from None
    return values.reshape(height, width, CHANNELS)[..., 3] > 0
