"""The web app's API (FastAPI test client): uploads, the embedding cache, limits, JSON errors,
exports; the page's static files and headers. The model is the bundled architecture with
seeded random weights (the API does not depend on what the model learnt)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
import httpx
from fastapi.testclient import TestClient
from PIL import Image

from conftest import random_image
from segany import Embedding, Predictor
from segany.formats.images import (
    ImageTooLargeError,
    NotAnImageError,
    decode_image,
)
from segany.formats.rle import decode_coco_rle
from segany.server import EmbeddingCache, Limits, SegmentService, content_key, create_app


def make_client(model, cache_dir, decoder_file, **limits) -> TestClient:
    service = SegmentService(model, cache_dir, Limits(**limits), decoder_path=decoder_file)
    return TestClient(create_app(service, static_dir=None))


@pytest.fixture()
def client(tiny_random, decoder_file, tmp_path):
    with make_client(tiny_random, tmp_path / "cache", decoder_file) as c:
        yield c


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE = random_image(180, 300, seed=1)


def upload(client: TestClient, data: bytes, **kwargs) -> httpx.Response:
    return client.post("/api/images", content=data, **kwargs)


# --------------------------------------------------------------------------- uploads


def test_upload_gives_the_embedding_with_its_shape_and_dtype(client, tiny_random):
    response = upload(client, png(IMAGE))
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["id"] == content_key(png(IMAGE))
    assert (info["width"], info["height"], info["cached"]) == (300, 180, False)
    assert info["embedding"]["shape"] == [1, 256, 16, 16]
    assert info["embedding"]["input_size"] == [154, 256]  # 180 * 256 / 300 rounded

    expected = Predictor(tiny_random).embed(IMAGE).features.numpy()
    exact = client.get(info["embedding"]["url"], params={"dtype": "float32"})
    assert exact.headers["x-embedding-dtype"] == "float32"
    assert exact.headers["x-embedding-shape"] == "1,256,16,16"
    values = np.frombuffer(exact.content, dtype="<f4").reshape(1, 256, 16, 16)
    np.testing.assert_array_equal(values, expected)

    compact = client.get(info["embedding"]["url"])  # float16 by default: half the bytes
    assert compact.headers["x-embedding-dtype"] == "float16"
    assert compact.headers["content-type"] == "application/octet-stream"
    assert len(compact.content) == expected.size * 2
    half = np.frombuffer(compact.content, dtype="<f2").reshape(expected.shape)
    np.testing.assert_allclose(half, expected, rtol=1e-3, atol=1e-4)


def test_second_upload_of_the_same_image_is_a_cache_hit(client):
    first = upload(client, png(IMAGE)).json()
    assert first["cached"] is False
    second = upload(client, png(IMAGE)).json()
    assert second["cached"] is True and second["id"] == first["id"]
    again = client.post(
        "/api/images", files={"file": ("photo.png", png(IMAGE), "image/png")}
    ).json()  # multipart form, as a plain HTML form or curl -F sends it
    assert again["cached"] is True
    assert client.get("/api/status").json()["encoder_runs"] == 1


def test_cache_is_on_disk_and_survives_a_restart(tiny_random, decoder_file, tmp_path):
    with make_client(tiny_random, tmp_path, decoder_file) as c:
        key = upload(c, png(IMAGE)).json()["id"]
    folder = next(tmp_path.glob(f"*/{key}"))
    assert sorted(p.name for p in folder.iterdir()) == ["embedding.safetensors", "image"]
    with make_client(tiny_random, tmp_path, decoder_file) as c:
        info = upload(c, png(IMAGE)).json()
        assert info["cached"] is True
        assert c.get("/api/status").json()["encoder_runs"] == 0


def truncated_png() -> bytes:
    return png(IMAGE)[:3000]


def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buffer, format="PNG")  # 64 MP in ~60 kB
    return buffer.getvalue()


def thin_png() -> bytes:
    return png(np.zeros((1, 3000, 3), np.uint8))  # short side rounds to 0 at the 256 input


def ppm() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(IMAGE).save(buffer, format="PPM")  # an image, but not an accepted format
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "status", "words"),
    [
        (lambda: b"%PDF-1.4 definitely not an image", 415, "not an image"),
        (lambda: b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "not an image"),
        (ppm, 415, "not an image"),
        (truncated_png, 400, "truncated"),
        (lambda: b"x" * 300_000, 413, "larger than the limit"),
        (bomb_png, 413, "too many pixels"),
        (thin_png, 400, "too thin"),
        (lambda: b"", 400, "empty upload"),
    ],
    ids=["pdf", "svg", "ppm", "truncated", "too-many-bytes", "decompression-bomb", "thin", "empty"],
)
def test_bad_uploads_get_4xx_with_a_message(
    tiny_random, decoder_file, tmp_path, make, status, words
):
    limits = {"max_upload_bytes": 200_000, "max_pixels": 4_000_000}
    with make_client(tiny_random, tmp_path, decoder_file, **limits) as c:
        response = upload(c, make())
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        assert words in response.json()["detail"]
        assert c.get("/api/status").json()["cache_entries"] == 0


def test_body_limit_holds_without_content_length(tiny_random, decoder_file, tmp_path):
    def chunks():
        for _ in range(10):
            yield b"\x89PNG" + b"x" * 50_000

    with make_client(tiny_random, tmp_path, decoder_file, max_upload_bytes=200_000) as c:
        response = c.post("/api/images", content=chunks())  # chunked transfer encoding
        assert response.status_code == 413
        assert "larger than the limit" in response.json()["detail"]
        # JSON bodies are bounded too
        key = "0" * 64
        big = {"format": "mask", "masks": [{"size": [1, 1], "counts": [1] * 100_000}]}
        response = c.post(f"/api/images/{key}/export", json=big)
        assert response.status_code == 413


def test_decode_image_checks_pixels_before_decoding():
    with pytest.raises(ImageTooLargeError, match="too many pixels"):
        decode_image(bomb_png(), max_pixels=1_000_000)
    with pytest.raises(NotAnImageError):
        decode_image(ppm())
    assert decode_image(ppm(), formats=None).shape == IMAGE.shape
    np.testing.assert_array_equal(decode_image(png(IMAGE)), IMAGE)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("method", "url", "status", "words"),
    [
        ("get", f"/api/images/{'0' * 64}/embedding", 404, "upload it again"),
        ("get", "/api/images/..%2F..%2Fetc%2Fpasswd/embedding", 404, "no such API route"),
        ("get", "/api/images/ABC/embedding", 422, "image_id"),
        ("get", f"/api/images/{'0' * 64}/embedding?dtype=int8", 422, "dtype"),
        ("post", f"/api/images/{'0' * 64}/everything", 404, "upload it again"),
        ("get", "/api/samples/nothing.png", 404, "no sample named"),
        ("get", "/api/nowhere", 404, "no such API route"),
        ("post", "/api/model", 405, "Method Not Allowed"),
    ],
)
def test_errors_are_json_with_a_readable_message(client, method, url, status, words):
    response = getattr(client, method)(url)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_openapi_schema_and_model_info(client, tiny_random):
    schema = client.get("/openapi.json").json()
    for path in ("/api/images", "/api/images/{image_id}/embedding", "/api/model"):
        assert path in schema["paths"]
    upload_body = schema["paths"]["/api/images"]["post"]["requestBody"]["content"]
    assert {"application/octet-stream", "multipart/form-data"} <= set(upload_body)
    info = client.get("/api/model").json()
    assert info["name"] == "tiny" and info["img_size"] == 256 and info["low_res_size"] == 64
    assert info["embedding_shape"] == [1, 256, 16, 16]


def test_decoder_graph_is_served_and_matches_the_model(client, tiny_random):
    ort = pytest.importorskip("onnxruntime")
    from segany.export import load_onnx

    response = client.get("/api/model/decoder.onnx")
    assert response.status_code == 200
    assert (
        int(response.headers["content-length"]) == client.get("/api/model").json()["decoder_bytes"]
    )
    session = ort.InferenceSession(response.content)
    assert session.get_inputs()[0].name == "image_embeddings"
    assert session.get_outputs()[0].shape[1] == 4  # all masks: the page picks 1 or 3
    path = Path(client.app.state.service.decoder_path)
    embedding = Predictor(tiny_random).embed(IMAGE)
    ours = load_onnx(path).predict(embedding, points=[[100, 60]], labels=[1])
    reference = Predictor(tiny_random).predict(embedding, points=[[100, 60]], labels=[1])
    np.testing.assert_allclose(ours.scores, reference.scores, atol=1e-4)


def test_headers_for_cross_origin_isolation_and_the_page(tiny_random, decoder_file, tmp_path):
    service = SegmentService(tiny_random, tmp_path, decoder_path=decoder_file)
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>page</title>")
    with TestClient(create_app(service, static_dir=static)) as c:
        for url in ("/", "/api/model"):
            response = c.get(url)
            assert response.status_code == 200
            assert response.headers["cross-origin-opener-policy"] == "same-origin"
            assert response.headers["cross-origin-embedder-policy"] == "require-corp"
        assert c.get("/../pyproject.toml").status_code == 404
    with TestClient(create_app(service, static_dir=tmp_path / "missing")) as c:
        response = c.get("/")
        assert response.status_code == 503 and "make web" in response.text


# --------------------------------------------------------------------------- files


def test_samples_and_display_image(client):
    samples = client.get("/api/samples").json()["samples"]
    assert len(samples) >= 3
    data = client.get(samples[0]["url"]).content
    image = np.asarray(Image.open(io.BytesIO(data)))
    assert image.shape == (samples[0]["height"], samples[0]["width"], 3)
    info = upload(client, data).json()
    shown = client.get(info["image_url"])
    assert shown.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(shown.content))), image)


def runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major, zeros first), as the page sends them."""
    flat = mask.T.reshape(-1).astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    lengths = np.diff(np.concatenate([[0], changes]))
    return [int(v) for v in lengths]


def test_export_cutout_mask_and_coco(client):
    info = upload(client, png(IMAGE)).json()
    first = np.zeros((180, 300), bool)
    first[20:90, 40:160] = True
    second = np.zeros((180, 300), bool)
    second[120:170, 200:290] = True
    masks = [{"size": [180, 300], "counts": runs(m)} for m in (first, second)]
    url = f"/api/images/{info['id']}/export"

    response = client.post(url, json={"format": "cutout", "masks": masks[:1]})
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="cutout.png"'
    rgba = np.asarray(Image.open(io.BytesIO(response.content)))
    np.testing.assert_array_equal(rgba[..., 3] > 0, first)
    np.testing.assert_array_equal(rgba[..., :3][first], IMAGE[first])

    cropped = client.post(url, json={"format": "cutout", "masks": masks[:1], "crop": True})
    assert np.asarray(Image.open(io.BytesIO(cropped.content))).shape == (70, 120, 4)

    union = np.asarray(
        Image.open(io.BytesIO(client.post(url, json={"format": "mask", "masks": masks}).content))
    )
    np.testing.assert_array_equal(union == 255, first | second)

    body = {"format": "coco", "masks": masks, "scores": [0.9, 0.8], "file_name": "../x/a.png"}
    coco = client.post(url, json=body).json()
    assert coco["images"][0]["file_name"] == "a.png"
    assert [a["score"] for a in coco["annotations"]] == [0.9, 0.8]
    for annotation, mask in zip(coco["annotations"], (first, second)):
        np.testing.assert_array_equal(decode_coco_rle(annotation["segmentation"]), mask)
        assert annotation["area"] == int(mask.sum())


@pytest.mark.parametrize(
    ("mask", "status", "words"),
    [
        ({"size": [180, 300], "counts": [100, 10]}, 400, "add up to"),
        ({"size": [10, 10], "counts": [100]}, 400, "not the image's"),
        ({"size": [180, 300], "counts": [-5, 54005]}, 400, "negative"),
        ({"size": [180], "counts": [54000]}, 422, "size"),
    ],
)
def test_export_rejects_malformed_masks(client, mask, status, words):
    info = upload(client, png(IMAGE)).json()
    response = client.post(
        f"/api/images/{info['id']}/export", json={"format": "mask", "masks": [mask]}
    )
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


# --------------------------------------------------------------------------- cache


def test_full_cache_evicts_least_recently_used(tiny_random, decoder_file, tmp_path):
    images = [png(random_image(64, 64, seed=s)) for s in range(3)]
    with make_client(tiny_random, tmp_path / "probe", decoder_file) as c:
        upload(c, images[0])
        size = c.app.state.service.cache.total_bytes  # one entry
    limits = {"cache_bytes": int(2.5 * size)}  # room for two entries
    with make_client(tiny_random, tmp_path / "cache", decoder_file, **limits) as c:
        ids = [upload(c, data).json()["id"] for data in images[:2]]
        assert upload(c, images[0]).json()["cached"]  # entry 0 is now the most recently used
        ids.append(upload(c, images[2]).json()["id"])  # evicts entry 1
        status = c.get("/api/status").json()
        assert status["cache_entries"] == 2 and status["cache_evictions"] == 1
        assert status["cache_bytes"] <= status["cache_max_bytes"]
        assert [c.get(f"/api/images/{i}/embedding").status_code for i in ids] == [200, 404, 200]
        assert not upload(c, images[1]).json()["cached"]  # computed again


def test_cache_rejects_malformed_keys(tmp_path):
    cache = EmbeddingCache(tmp_path, max_bytes=10**9)
    for key in ("../../etc", "A" * 64, "0" * 63, "/abs"):
        with pytest.raises(ValueError, match="malformed image id"):
            cache.get(key)
    (tmp_path / ".tmp-crashed").mkdir()
    (tmp_path / ("1" * 64)).mkdir()  # incomplete entry
    EmbeddingCache(tmp_path, max_bytes=10**9)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- concurrency


def test_requests_are_served_while_an_embedding_is_computed(tiny_random, decoder_file, tmp_path):
    """The encoder runs in a worker thread: status and cached embeddings answer meanwhile,
    and concurrent uploads of one image share one encoder run."""
    service = SegmentService(tiny_random, tmp_path, decoder_path=decoder_file)
    app = create_app(service, static_dir=None)
    release = threading.Event()
    entered = threading.Event()
    embed = service.predictor.embed

    def slow_embed(image: np.ndarray) -> Embedding:
        if image.shape[0] == 99:
            entered.set()
            assert release.wait(30)
        return embed(image)

    service.predictor.embed = slow_embed  # type: ignore[method-assign]
    slow = png(random_image(99, 120, seed=5))

    async def scenario() -> None:
        await service.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            ready = (await c.post("/api/images", content=png(IMAGE))).json()
            uploads = [asyncio.create_task(c.post("/api/images", content=slow)) for _ in range(3)]
            while not entered.is_set():
                await asyncio.sleep(0.01)
            for _ in range(20):  # answered while the encoder is busy
                fetched = await c.get(ready["embedding"]["url"])
                assert fetched.status_code == 200
            status = (await c.get("/api/status")).json()
            assert status["pending_embeddings"] == 1
            release.set()
            results = [(await task).json() for task in uploads]
            assert len({r["id"] for r in results}) == 1
            assert sorted(r["cached"] for r in results) == [False, True, True]
            assert (await c.get("/api/status")).json()["encoder_runs"] == 2

    asyncio.run(scenario())


def test_busy_server_answers_503(tiny_random, decoder_file, tmp_path):
    service = SegmentService(
        tiny_random, tmp_path, Limits(max_pending=1), decoder_path=decoder_file
    )
    service.pending = 1  # as if one image were waiting for the encoder
    with TestClient(create_app(service, static_dir=None)) as c:
        response = upload(c, png(IMAGE))
        assert response.status_code == 503 and "busy" in response.json()["detail"]


# --------------------------------------------------------------------------- everything


def test_segment_everything_returns_coco_rle_masks(tiny_random, decoder_file, tmp_path):
    service = SegmentService(
        tiny_random,
        tmp_path,
        decoder_path=decoder_file,
        everything_options={"points_per_side": 8},
    )
    with TestClient(create_app(service, static_dir=None)) as c:
        info = upload(c, png(IMAGE)).json()
        first = c.post(f"/api/images/{info['id']}/everything")
        assert first.status_code == 200, first.text
        masks = first.json()["masks"]
        for record in masks:
            assert decode_coco_rle(record["segmentation"]).shape == (180, 300)
        again = c.post(f"/api/images/{info['id']}/everything").json()
        assert again["seconds"] == 0.0 and again["masks"] == masks  # from the cache


# --------------------------------------------------------------------------- CLI


def test_serve_cli_reports_bad_options_in_one_line(capsys, tmp_path):
    from segany.cli import main

    assert main(["serve", "--port", "70000"]) == 2
    assert capsys.readouterr().err.startswith("error: --port 70000")
    missing = tmp_path / "missing.safetensors"
    assert main(["serve", "--model", str(missing), "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_cached_embedding_loads_as_embedding(client, tiny_random):
    info = upload(client, png(IMAGE)).json()
    service = client.app.state.service
    entry = service.cache.get(info["id"])
    loaded = Embedding.load(entry.embedding_path)
    assert loaded.original_size == (180, 300)
    assert torch.equal(loaded.features, Predictor(tiny_random).embed(IMAGE).features)
    assert json.loads(client.get("/api/status").text)["cache_entries"] == 1
