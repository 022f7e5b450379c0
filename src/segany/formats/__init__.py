"""Mask and dataset formats at the edge of the library: COCO RLE, SA-1B json, image files."""

from .boxes import mask_bbox_xywh
from .files import atomic_write_bytes, atomic_write_text
from .rle import decode_coco_rle, encode_coco_rle
from .sa1b import Sa1bAnnotation, Sa1bImage, read_sa1b, write_sa1b

__all__ = [
    "Sa1bAnnotation",
    "Sa1bImage",
    "atomic_write_bytes",
    "atomic_write_text",
    "decode_coco_rle",
    "encode_coco_rle",
    "mask_bbox_xywh",
    "read_sa1b",
    "write_sa1b",
]
