"""Shared export plumbing: output checks, the GELU switch, tracing to ONNX, metadata and the
external-data layout for graphs over 2 GB.

Exporter: the TorchScript one (``torch.onnx.export(..., dynamo=False)``), which runs on every
torch this package supports and needs no onnxscript. The decoder's output size depends on the
*values* of ``orig_im_size``; tracing records that as ``Shape``/``Slice`` arithmetic. The
dynamo exporter also handles our wrapper on torch 2.14 (it rejects the official one, whose
``int(...)`` crop is data-dependent), but exports far more slowly and gives a slower graph
in onnxruntime, so it is not used. The TorchScript exporter is deprecated upstream: revisit
when torch drops it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

MIN_OPSET = 14  # scaled_dot_product_attention needs 14
MAX_OPSET = 20  # the newest the TorchScript exporter writes
DEFAULT_OPSET = 17  # as the official script; LayerNormalization is a single node from 17
PROTOBUF_LIMIT = 2**31  # bytes: one .onnx file cannot hold more
METADATA_PREFIX = "segany."


def require(module: str, extra: str = "onnx") -> None:
    """``ImportError`` naming the extra to install when an optional package is missing."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"{module} is not installed; install the ONNX extra: pip install 'segany[{extra}]'"
        )


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ValueError(f"opset {opset} is not supported; use {MIN_OPSET} to {MAX_OPSET}")
    return int(opset)


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """The output path, after checking that its folder exists and is writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; give a file name such as {path / 'model.onnx'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{path}: not writable")
    return path


@contextlib.contextmanager
def gelu_approximation(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Temporarily switch every ``nn.GELU`` to the tanh approximation (for runtimes without
    ``Erf``); the model is restored afterwards."""
    saved = [(m, m.approximate) for m in model.modules() if isinstance(m, nn.GELU)]
    try:
        if enabled:
            for module, _ in saved:
                module.approximate = "tanh"
        yield
    finally:
        for module, value in saved:
            module.approximate = value


def trace_to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: str | os.PathLike[str],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int,
    metadata: Mapping[str, Any],
    output_shapes: Mapping[str, Sequence[int | str]] | None = None,
    external_data: bool | None = None,
) -> Path:
    """Trace ``module`` on ``args`` into ``path`` with ``segany.*`` metadata.

    ``output_shapes`` declares output dimensions (ints, or names for dynamic ones) where
    shape inference leaves generated names.

    ``external_data``: weights in ``<name>.data`` beside the graph; ``None`` chooses it when
    the graph would pass protobuf's 2 GB limit (ViT-H encoder).
    """
    require("onnx")
    import onnx

    path = check_output_path(path)
    opset = check_opset(opset)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        traced = Path(tmp) / "traced.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings
            torch.onnx.export(
                module,
                args,
                str(traced),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(traced), load_external_data=True)
        for output in proto.graph.output:
            if output_shapes and output.name in output_shapes:
                _set_shape(output, output_shapes[output.name])
        size = sum(t.ByteSize() for t in proto.graph.initializer)
        if external_data is None:
            external_data = size > PROTOBUF_LIMIT - 2**26  # leave room for the graph itself
        save_graph(proto, path, metadata, external_data)
    return path


def save_graph(proto: Any, path: Path, metadata: Mapping[str, Any], external_data: bool) -> None:
    """Write the ``onnx.ModelProto`` to ``path`` with ``metadata`` added as ``segany.*``
    properties (non-strings as json); weights in ``<name>.data`` beside it when
    ``external_data``."""
    import onnx

    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = METADATA_PREFIX + key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    data_file = path.with_name(path.name + ".data")
    if data_file.exists():
        data_file.unlink()  # onnx appends to an existing data file
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=external_data,
        all_tensors_to_one_file=True,
        location=data_file.name,
        size_threshold=1024,
    )


def _set_shape(value_info: Any, dims: Sequence[int | str]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for dim in dims:
        entry = shape.dim.add()
        if isinstance(dim, int):
            entry.dim_value = dim
        else:
            entry.dim_param = dim


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``segany.*`` metadata of an exported graph (empty for foreign graphs)."""
    require("onnx")
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {
        p.key[len(METADATA_PREFIX) :]: p.value
        for p in proto.metadata_props
        if p.key.startswith(METADATA_PREFIX)
    }
