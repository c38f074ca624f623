"""The page's HTTP interface (Starlette): static files, the image list, uploads, and prompts answered as masks.

Model work runs in plain (synchronous) handlers, which Starlette runs in worker threads, so the event loop keeps
serving while a model runs; ``Segmenter`` lets one request use the models at a time.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import unquote

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from segfit.data.records import DataError, ImageRecord, VideoRecord
from segfit.metrics.coco_masks import encode as rle_encode
from segfit.serve.images import ImageCatalog, UploadError, mib
from segfit.serve.prompts import Prompt, PromptError
from segfit.serve.session import Answer, Segmenter
from segfit.serve.videos import MAX_PROPAGATED_FRAMES, VideoCatalog, track

STATIC = Path(__file__).parent / "static"

MAX_PROMPT_BYTES = 64 * 2**10
"""A prompt's JSON (64 clicks take about 2 KiB)."""


def create_app(segmenter: Segmenter, catalog: ImageCatalog, videos: VideoCatalog | None = None) -> Starlette:
    """The page for ``segmenter``'s models on ``catalog``'s images (and ``videos``, with video models);
    ``app.state`` holds them (tests reach them)."""
    videos = videos or VideoCatalog({})

    def info(request: Request) -> JSONResponse:
        return JSONResponse({
            "models": [{"name": m.name, "weights": m.weights} for m in segmenter.models],
            "images": [{"id": e.id, "name": e.name, "has_gt": e.has_gt} for e in catalog.entries()],
            "videos": videos.entries() if all(m.video is not None for m in segmenter.models) else [],
            "limits": {"max_bytes": catalog.limits.max_bytes, "max_side": catalog.limits.max_side,
                       "max_tracked_frames": MAX_PROPAGATED_FRAMES},
        })

    def image(request: Request) -> Response:
        record = _record(catalog, request.query_params.get("id", ""))
        return Response(png_bytes(record.image), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    async def upload(request: Request) -> JSONResponse:
        data = await _read_limited(request, catalog.limits.max_bytes)
        try:
            entry = await run_in_threadpool(catalog.add_upload, data, unquote(request.headers.get("x-file-name", "")))
        except UploadError as err:
            raise HTTPException(err.status, str(err)) from err
        return JSONResponse({"id": entry.id, "name": entry.name})

    async def predict(request: Request) -> JSONResponse:
        *_, answers = await _answers(request, segmenter, catalog)
        return JSONResponse({"results": [_answer_json(a) for a in answers]})

    async def coco(request: Request) -> JSONResponse:
        record, prompt, answers = await _answers(request, segmenter, catalog)
        name = PurePath(record.source).name
        headers = {"Content-Disposition": 'attachment; filename="masks_coco.json"'}
        return JSONResponse(coco_json(name, record.size, prompt, answers), headers=headers)

    def video_frame(request: Request) -> Response:
        video = _video(videos, request.query_params.get("id", ""))
        t = request.query_params.get("t", "")
        if not t.isdigit() or int(t) >= len(video.frames):
            raise HTTPException(404, f"t: no frame {t!r} in this {len(video.frames)}-frame video")
        return Response(png_bytes(video.frames[int(t)]), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    async def video_track(request: Request) -> JSONResponse:
        try:
            body = await _json_body(request)
            prompt = Prompt.parse(body, id_key="video")
            start = body.get("frame", 0)
            if not isinstance(start, int) or isinstance(start, bool):
                raise PromptError(f"frame: expected a frame number, got {start!r:.40}")
        except PromptError as err:
            raise HTTPException(400, str(err)) from err
        video = await run_in_threadpool(_video, videos, prompt.image)
        try:
            tracks = await run_in_threadpool(track, segmenter.models, video, start, prompt, segmenter.lock)
        except PromptError as err:
            raise HTTPException(400, str(err)) from err
        return JSONResponse({"start": start, "results": [
            {"model": t.model, "ious": t.ious, "ms": t.ms, "masks_png": [mask_png(m) for m in t.masks]} for t in tracks]})

    def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/info", info),
        Route("/api/image", image),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/coco", coco, methods=["POST"]),
        Route("/api/video/frame", video_frame),
        Route("/api/video/track", video_track, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC)),
    ], exception_handlers={HTTPException: _error_json})
    app.state.segmenter, app.state.catalog, app.state.videos = segmenter, catalog, videos
    return app


def _record(catalog: ImageCatalog, id: str) -> ImageRecord:
    return _lookup(catalog, id, f"image: no image with id {id!r} (uploads are kept for a while only)")


def _video(videos: VideoCatalog, id: str) -> VideoRecord:
    return _lookup(videos, id, f"video: no video with id {id!r}")


def _lookup(catalog: ImageCatalog | VideoCatalog, id: str, unknown: str) -> Any:
    """``catalog.get(id)``: an id it never gave is a 404 saying ``unknown``, a file that fails to read a 422."""
    try:
        return catalog.get(id)
    except KeyError as err:
        raise HTTPException(404, unknown) from err
    except DataError as err:
        raise HTTPException(422, str(err)) from err


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await _read_limited(request, MAX_PROMPT_BYTES))
    except ValueError as err:
        raise PromptError(f"body: not valid JSON ({err})") from err


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    """The body, refused as soon as it passes ``max_bytes`` (declared or sent) instead of after reading it all."""
    too_large = HTTPException(413, f"the request is larger than the {mib(max_bytes)} allowed here")
    if int(request.headers.get("content-length") or 0) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _answers(request: Request, segmenter: Segmenter,
                   catalog: ImageCatalog) -> tuple[ImageRecord, Prompt, list[Answer]]:
    try:
        prompt = Prompt.parse(await _json_body(request))
    except PromptError as err:
        raise HTTPException(400, str(err)) from err
    record = await run_in_threadpool(_record, catalog, prompt.image)
    try:
        return record, prompt, await run_in_threadpool(segmenter.segment, record, prompt)
    except PromptError as err:
        raise HTTPException(400, str(err)) from err


def _answer_json(answer: Answer) -> dict[str, Any]:
    return {"model": answer.model, "score": answer.score, "iou": answer.iou, "encode_ms": answer.encode_ms,
            "decode_ms": answer.decode_ms, "area": int(answer.mask.sum()), "mask_png": mask_png(answer.mask)}


def mask_png(mask: np.ndarray) -> str:
    """An H×W bool mask as a base64 PNG of 0 / 255: what the page draws and offers as the download."""
    return base64.b64encode(png_bytes(mask.astype(np.uint8) * 255)).decode("ascii")


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)  # level 1: masks compress well enough, fast
    return buffer.getvalue()


def coco_json(file_name: str, hw: tuple[int, int], prompt: Prompt, answers: list[Answer]) -> dict[str, Any]:
    """One COCO image with one annotation per model (compressed RLE); ``model``, ``score`` and the prompt are extra
    keys that COCO readers ignore."""
    annotations = []
    for i, answer in enumerate(answers, start=1):
        ys, xs = np.nonzero(answer.mask)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)] if len(xs) else [0, 0, 0, 0]
        annotations.append({"id": i, "image_id": 1, "category_id": 1, "segmentation": rle_encode(answer.mask),
                            "area": int(answer.mask.sum()), "bbox": bbox, "iscrowd": 0, "model": answer.model,
                            "score": answer.score})
    return {
        "images": [{"id": 1, "file_name": file_name, "height": hw[0], "width": hw[1]}],
        "categories": [{"id": 1, "name": "object"}],
        "annotations": annotations,
        "prompt": {"points": prompt.points, "labels": prompt.labels, "box": prompt.box},
    }


async def _error_json(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, HTTPException)
    return JSONResponse({"error": err.detail}, status_code=err.status_code)
