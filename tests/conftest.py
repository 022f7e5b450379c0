"""Shared fixtures: small model configs and pairs of (segany, official) models with identical
seeded random weights; the data engine's databases (SQLite, and a throwaway PostgreSQL server);
the servers' random-weight tiny model with its decoder graph, and a headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

from segany import Sam, build_model  # with the speed routes, as users get it
from segany.config import TINY, VIT_B, DecoderConfig, SamConfig
from segany.testing import random_state_dict

seg_official = pytest.importorskip("segment_anything")
from segment_anything import modeling as official_modeling  # noqa: E402

# 256-px input, 16x16 grid, window 7 (pads 16 -> 21), two global blocks.
SMALL = VIT_B.with_encoder(
    img_size=256, embed_dim=64, depth=4, num_heads=2, window_size=7, global_attn_indexes=(1, 3)
)
SMALL = SamConfig(name="small", encoder=SMALL.encoder, decoder=DecoderConfig())


def build_official(config: SamConfig, package: ModuleType = official_modeling) -> nn.Module:
    """The official model with the same architecture as ``config``, built from ``package``
    (``segment_anything.modeling``, or ``segment_anything_hq.modeling`` whose ``MaskDecoderHQ``
    serves a config with ``decoder.hq``)."""
    enc, dec = config.encoder, config.decoder
    grid = config.embedding_size
    image_encoder = package.ImageEncoderViT(
        img_size=enc.img_size,
        patch_size=enc.patch_size,
        embed_dim=enc.embed_dim,
        depth=enc.depth,
        num_heads=enc.num_heads,
        mlp_ratio=enc.mlp_ratio,
        out_chans=enc.out_chans,
        qkv_bias=enc.qkv_bias,
        norm_layer=partial(torch.nn.LayerNorm, eps=enc.layer_norm_eps),
        use_rel_pos=enc.use_rel_pos,
        window_size=enc.window_size,
        global_attn_indexes=enc.global_attn_indexes,
    )
    prompt_encoder = package.PromptEncoder(
        embed_dim=dec.embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(enc.img_size, enc.img_size),
        mask_in_chans=dec.mask_in_chans,
    )
    decoder_args = dict(
        num_multimask_outputs=dec.num_multimask_outputs,
        transformer=package.TwoWayTransformer(
            depth=dec.depth,
            embedding_dim=dec.embed_dim,
            mlp_dim=dec.mlp_dim,
            num_heads=dec.num_heads,
        ),
        transformer_dim=dec.embed_dim,
        iou_head_depth=dec.iou_head_depth,
        iou_head_hidden_dim=dec.iou_head_hidden_dim,
    )
    if dec.hq:  # HQ-SAM's decoder also reads the encoder's early features (vit_dim channels)
        mask_decoder = package.MaskDecoderHQ(**decoder_args, vit_dim=enc.embed_dim)
    else:
        mask_decoder = package.MaskDecoder(**decoder_args)
    return package.Sam(
        image_encoder=image_encoder, prompt_encoder=prompt_encoder, mask_decoder=mask_decoder
    ).eval()


def make_pair(config: SamConfig, seed: int = 0) -> tuple[Sam, official_modeling.Sam]:
    ours = build_model(config)
    theirs = build_official(config)
    state = random_state_dict(ours.state_dict(), seed)
    ours.load_state_dict(state, strict=True)
    theirs.load_state_dict(state, strict=True)
    return ours, theirs


@pytest.fixture(scope="session")
def small_pair() -> tuple[Sam, official_modeling.Sam]:
    return make_pair(SMALL, seed=0)


@pytest.fixture(scope="session")
def small_model(small_pair) -> Sam:
    return small_pair[0]


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish random RGB image (noise plus gradients), uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xx / max(width, 1), yy / max(height, 1), (xx + yy) / max(height + width, 1)], -1
    )
    image = 255 * (0.7 * base + 0.3 * rng.random((height, width, 3)))
    return image.clip(0, 255).astype(np.uint8)


# -- the data engine's databases -------------------------------------------------------------
def postgres_required() -> bool:
    """In CI (``CI`` set, or ``SEGANY_REQUIRE_POSTGRES`` as .ci/run sets) a missing PostgreSQL
    fails the tests; on a developer's machine without it they skip, saying how to install it."""
    return bool(os.environ.get("CI") or os.environ.get("SEGANY_REQUIRE_POSTGRES"))


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the whole session (tests/postgres_server.py)."""
    from postgres_server import PostgresMissingError, start_postgres

    try:
        import psycopg  # noqa: F401  (the driver segany uses; in the dev extra)

        server = start_postgres()
    except (PostgresMissingError, ImportError) as exc:
        if postgres_required():
            pytest.fail(f"PostgreSQL is required here: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A ``postgresql://`` URL of a new, empty database: no test sees another's rows."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str | None:
    """A project database of each backend: None (a project's default, SQLite in its folder)
    or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


# -- Label Studio (the ML backend's end-to-end test) -----------------------------------------
def label_studio_required() -> bool:
    """In CI (``CI``, or ``SEGANY_REQUIRE_LABEL_STUDIO`` as .ci/run sets) a missing Label Studio
    environment fails its tests; elsewhere they skip, saying how to install it."""
    return bool(os.environ.get("CI") or os.environ.get("SEGANY_REQUIRE_LABEL_STUDIO"))


@pytest.fixture(scope="session")
def label_studio_python():
    """The Python of Label Studio's own environment (tests/label_studio_server.py)."""
    from label_studio_server import LabelStudioMissingError, venv_python

    try:
        return venv_python()
    except LabelStudioMissingError as exc:
        if label_studio_required():
            pytest.fail(f"Label Studio is required here: {exc}", pytrace=False)
        pytest.skip(f"Label Studio tests skipped: {exc}")


# -- Servers and pages (the server, Label Studio, annotation and browser tests) --------------
@pytest.fixture(scope="module")
def tiny_random() -> Sam:
    """The bundled architecture with seeded random weights, for what does not depend on what
    the model learnt."""
    model = build_model(TINY)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=0))
    return model.eval()


@pytest.fixture(scope="module")
def decoder_file(tiny_random, tmp_path_factory) -> Path:
    """``tiny_random``'s decoder graph, exported once for every server of a module (export
    takes seconds); the annotation page's tests override it with the bundled model's."""
    from segany.server import SegmentService

    return SegmentService(tiny_random, tmp_path_factory.mktemp("decoder")).ensure_decoder()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium (headless) under Playwright, one per module: a module that uses it
    skips itself first when Chromium or Playwright is missing."""
    from playwright.sync_api import sync_playwright

    from segany.server.live import chromium_options

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(**chromium_options())
        yield browser
        browser.close()
