"""The onnxruntime backend: :class:`OnnxPredictor` has :class:`~segany.Predictor`'s methods
and types (:class:`~segany.Embedding` in, :class:`~segany.Prediction` out), with prompts
checked and mapped by the same :mod:`segany.inference.prompts` as the PyTorch predictors.

Embeddings are interchangeable with the PyTorch predictor's (same encoder fingerprint), so a
server can embed with one backend and decode with the other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import PIXEL_MEAN, PIXEL_STD, SamConfig
from ..inference.embedding import Embedding, low_res_side
from ..inference.predictor import Prediction
from ..inference.prompts import check_embedding, convert_images, embedding_prompts
from ..inference.transforms import preprocess_shape, resize_image
from ..modeling.mask_decoder import output_slice
from ..modeling.prompt_encoder import labelled_points
from ..modeling.sam import normalize_and_pad
from .common import METADATA_PREFIX, require
from .decoder import INPUT_NAMES, OUTPUT_NAMES
from .decoder_hq import HQ_INPUT_NAMES

CPU = torch.device("cpu")


def make_session(
    path: str | os.PathLike[str],
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    spinning: bool = True,
) -> Any:
    """An ``onnxruntime.InferenceSession`` with ``threads`` intra-op threads (default: the
    runtime's choice, one per physical core). ``spinning=False`` stops idle worker threads
    from busy-waiting, which costs a little latency on an idle machine but much more when
    other sessions or processes share the cores."""
    require("onnxruntime")
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such ONNX file")
    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            str(path), options, providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: onnxruntime cannot load it ({exc})") from None


def session_metadata(session: Any) -> dict[str, str]:
    """``segany.*`` metadata of a loaded graph (empty for graphs exported elsewhere)."""
    custom = session.get_modelmeta().custom_metadata_map
    return {
        k[len(METADATA_PREFIX) :]: v for k, v in custom.items() if k.startswith(METADATA_PREFIX)
    }


class OnnxPredictor:
    """:class:`~segany.Predictor`'s API over an exported decoder (and optionally encoder).

    ``decoder`` must be exported without ``return_single_mask`` (the predictor chooses 1 or 3
    masks itself); graphs from the official ``SamOnnxModel`` export load too. Without an
    ``encoder`` graph, :meth:`embed` is unavailable: pass embeddings computed elsewhere (for
    instance by the PyTorch :class:`~segany.Predictor`). ``threads`` sets onnxruntime's
    intra-op threads for both sessions; see :func:`make_session` for ``spinning``.
    """

    def __init__(
        self,
        decoder: str | os.PathLike[str],
        encoder: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        spinning: bool = True,
    ) -> None:
        self.decoder = make_session(decoder, threads, providers, spinning)
        self._check_decoder(Path(decoder))
        meta = session_metadata(self.decoder)
        grid = int(self.decoder.get_inputs()[0].shape[-1])
        self.img_size = int(meta.get("img_size", 16 * grid))
        self.mask_threshold = float(meta.get("mask_threshold", 0.0))
        self.low_res_size = low_res_side(grid)
        self.encoder_id = meta.get("encoder_id", "")
        self.encoder = None
        self.preprocess_in_graph = False
        self.pixel_mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
        self.pixel_std = torch.tensor(PIXEL_STD).view(3, 1, 1)
        if meta.get("config"):
            config = SamConfig.from_json(meta["config"])
            self.pixel_mean = torch.tensor(config.pixel_mean).view(3, 1, 1)
            self.pixel_std = torch.tensor(config.pixel_std).view(3, 1, 1)
        if encoder is not None:
            self.encoder = make_session(encoder, threads, providers, spinning)
            self._check_encoder(Path(encoder), session_metadata(self.encoder))

    @property
    def device(self) -> torch.device:
        return CPU

    def _check_decoder(self, path: Path) -> None:
        names = tuple(i.name for i in self.decoder.get_inputs())
        outputs = [o.name for o in self.decoder.get_outputs()]
        if names not in (INPUT_NAMES, HQ_INPUT_NAMES) or not set(OUTPUT_NAMES) <= set(outputs):
            raise ValueError(
                f"{path}: not a SAM decoder graph (inputs {list(names)}, outputs {outputs}); "
                f"expected inputs {list(INPUT_NAMES)}"
            )
        options = json.loads(session_metadata(self.decoder).get("options", "{}"))
        count = self.decoder.get_outputs()[outputs.index("masks")].shape[1]
        if options.get("return_single_mask") or count == 1:
            raise ValueError(
                f"{path}: exported with return_single_mask; the predictor chooses between 1 and "
                "3 masks itself and needs all 4 (export without --return-single-mask)"
            )

    def _check_encoder(self, path: Path, meta: dict[str, str]) -> None:
        names = [i.name for i in self.encoder.get_inputs()]
        if names not in (["images"], ["image"]):
            raise ValueError(f"{path}: not a segany encoder graph (inputs {names})")
        self.preprocess_in_graph = names == ["image"]
        encoder_id = meta.get("encoder_id", "")
        if self.encoder_id and encoder_id and encoder_id != self.encoder_id:
            raise ValueError(
                f"{path}: this encoder comes from different weights than the decoder "
                f"({encoder_id} vs {self.encoder_id})"
            )
        self.encoder_id = self.encoder_id or encoder_id

    def embed(self, image: np.ndarray, image_format: str = "RGB") -> Embedding:
        """Encode one ``(H, W, 3)`` uint8 image (``RGB`` or ``BGR``)."""
        return self.embed_batch([image], image_format=image_format)[0]

    def embed_batch(
        self, images: Sequence[np.ndarray], image_format: str = "RGB"
    ) -> list[Embedding]:
        """Encode several images (one encoder run each)."""
        if self.encoder is None:
            raise ValueError(
                "no encoder graph loaded: pass encoder=... (segany export onnx "
                "--encoder-output), or embed with the PyTorch Predictor"
            )
        return [self._embed_one(rgb) for rgb in convert_images(images, image_format)]

    def _embed_one(self, rgb: np.ndarray) -> Embedding:
        """Encode one checked, contiguous RGB ``(H, W, 3)`` uint8 image."""
        original = (rgb.shape[0], rgb.shape[1])
        input_size = preprocess_shape(*original, self.img_size)
        if self.preprocess_in_graph:
            feed = {"image": rgb}
        else:
            resized = torch.from_numpy(resize_image(rgb, self.img_size)).permute(2, 0, 1)
            x = normalize_and_pad(resized.float(), self.pixel_mean, self.pixel_std, self.img_size)
            feed = {"images": x[None].numpy()}
        (features,) = self.encoder.run(["image_embeddings"], feed)  # type: ignore[union-attr]
        return Embedding(
            features=torch.from_numpy(features),
            original_size=original,
            input_size=input_size,
            img_size=self.img_size,
            encoder_id=self.encoder_id,
        )

    def _early_feed(self, embedding: Embedding) -> dict[str, np.ndarray]:
        """An HQ-SAM graph's ``interm_embeddings`` input (its masks are SAM's candidates each
        with the HQ mask added, see :mod:`.decoder_hq`); nothing for other graphs."""
        if not _hq_input(self.decoder):
            return {}
        if embedding.early is None:
            raise ValueError("an HQ-SAM decoder graph needs an embedding with early features")
        return {"interm_embeddings": embedding.early.detach().float().cpu().numpy()}

    def check_embedding(self, embedding: Embedding) -> None:
        """``ValueError`` if the embedding does not belong to this model."""
        check_embedding(embedding, self.img_size, self.encoder_id)

    def predict(
        self,
        embedding: Embedding,
        *,
        points: Any = None,
        labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multimask: bool = True,
        return_logits: bool = False,
    ) -> Prediction:
        """Masks for prompts in original-image pixels; see :meth:`segany.Predictor.predict`.

        Each of the K prompt sets is one run of the decoder graph.
        """
        self.check_embedding(embedding)
        prompts = embedding_prompts(
            embedding, CPU, points=points, labels=labels, boxes=boxes, mask_input=mask_input
        )
        count = prompts.size
        merged = labelled_points(prompts.point_pair, prompts.boxes)
        if merged is None:  # a mask prompt alone: no sparse tokens, as in the PyTorch path
            coords, point_labels = torch.zeros(count, 0, 2), torch.zeros(count, 0)
        else:
            coords, point_labels = merged
        zeros = np.zeros((1, 1, self.low_res_size, self.low_res_size), np.float32)
        features = embedding.features.detach().to(torch.float32).cpu().numpy()
        early = self._early_feed(embedding)
        selected = output_slice(multimask)
        results: list[list[np.ndarray]] = [[], [], []]
        for k in range(count):
            has_mask = prompts.mask_input is not None
            feeds = {
                "image_embeddings": features,
                "point_coords": coords[k : k + 1].numpy(),
                "point_labels": point_labels[k : k + 1].numpy(),
                "mask_input": prompts.mask_input[k : k + 1].numpy() if has_mask else zeros,  # type: ignore[index]
                "has_mask_input": np.array([1.0 if has_mask else 0.0]),
                "orig_im_size": np.array(embedding.original_size),
                **early,
            }
            feeds = {name: np.ascontiguousarray(v, np.float32) for name, v in feeds.items()}
            outputs = self.decoder.run(list(OUTPUT_NAMES), feeds)
            for store, output in zip(results, outputs):
                store.append(output[:, selected])
        masks, scores, low_res = (r[0] if count == 1 else np.concatenate(r) for r in results)
        return Prediction(
            masks=masks if return_logits else masks > self.mask_threshold,
            scores=scores,
            low_res_logits=low_res,
        )


def _hq_input(session: Any) -> bool:
    """Whether a decoder graph is HQ-SAM's (it takes the early features)."""
    return any(i.name == "interm_embeddings" for i in session.get_inputs())


def load_onnx(
    decoder: str | os.PathLike[str],
    encoder: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    spinning: bool = True,
) -> OnnxPredictor:
    """The onnxruntime backend: an :class:`OnnxPredictor` over exported graphs."""
    return OnnxPredictor(decoder, encoder, threads=threads, providers=providers, spinning=spinning)
