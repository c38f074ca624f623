"""The page's HTTP interface (Starlette): static files, the image list, uploads, and prompts answered as masks.

Model work runs in plain (synchronous) handlers, which Starlette runs in worker threads, so the event loop keeps
serving while a model runs; ``Segmenter`` lets one request use the models at a time.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path, PurePath
from typing import Any, AsyncIterator
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
from segfit.serve.coco import coco_json
from segfit.serve.images import ImageCatalog, UploadError, mib
from segfit.serve.prompts import Prompt, PromptError
from segfit.serve.session import Answer, Segmenter
from segfit.serve.track_download import TrackStore, masks_zip
from segfit.serve.videos import MAX_PROPAGATED_FRAMES, UPLOAD_FILE, VideoCatalog, track

STATIC = Path(__file__).parent / "static"

MAX_PROMPT_BYTES = 64 * 2**10
"""A prompt's JSON (64 clicks take about 2 KiB)."""


def create_app(segmenter: Segmenter, catalog: ImageCatalog, videos: VideoCatalog | None = None) -> Starlette:
    """The page for ``segmenter``'s models on ``catalog``'s images (and ``videos``, with video models);
    ``app.state`` holds them (tests reach them)."""
    videos = videos or VideoCatalog({})
    tracked = TrackStore()
    video_models = all(m.video is not None for m in segmenter.models)
    video_limits = videos.limits

    def info(request: Request) -> JSONResponse:
        return JSONResponse({
            "models": [{"name": m.name, "weights": m.weights} for m in segmenter.models],
            "images": [{"id": e.id, "name": e.name, "has_gt": e.has_gt} for e in catalog.entries()],
            "videos": videos.entries() if video_models else [],
            "limits": {"max_bytes": catalog.limits.max_bytes, "max_side": catalog.limits.max_side,
                       "max_tracked_frames": MAX_PROPAGATED_FRAMES,
                       "video": {"max_bytes": video_limits.max_bytes, "max_frames": video_limits.max_frames,
                                 "max_side": video_limits.max_side} if video_models else None},
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
        track_id = tracked.add(video.source, video.frame_names[start:start + len(tracks[0].masks)], tracks)
        return JSONResponse({"start": start, "track": track_id, "results": [
            {"model": t.model, "ious": t.ious, "ms": t.ms, "masks_png": [mask_png(m) for m in t.masks]} for t in tracks]})

    async def video_upload(request: Request) -> JSONResponse:
        if not video_models:
            raise HTTPException(400, "video: the served models are image models (the spec's data has no videos), "
                                     "so videos cannot be tracked here")
        try:
            with videos.upload_folder() as folder:
                await _save_limited(request, video_limits.max_bytes, folder / UPLOAD_FILE)
                name = unquote(request.headers.get("x-file-name", ""))
                return JSONResponse(await run_in_threadpool(videos.add_upload, folder, name))
        except UploadError as err:
            raise HTTPException(err.status, str(err)) from err

    def video_masks(request: Request) -> Response:
        track_id, model = request.query_params.get("track", ""), request.query_params.get("model", "")
        try:
            kept = tracked.get(track_id)
        except KeyError as err:
            raise HTTPException(404, f"track: no track with id {track_id!r} (the newest few are kept)") from err
        if model not in kept.masks:
            raise HTTPException(404, f"model: no model {model!r} in this track ({', '.join(kept.masks)})")
        headers = {"Content-Disposition": f'attachment; filename="{kept.video}_{model}_masks.zip"'}
        return Response(masks_zip(kept, model), media_type="application/zip", headers=headers)

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
        Route("/api/video/upload", video_upload, methods=["POST"]),
        Route("/api/video/masks", video_masks),
        Mount("/static", StaticFiles(directory=STATIC)),
    ], exception_handlers={HTTPException: _error_json})
    app.state.segmenter, app.state.catalog, app.state.videos, app.state.tracked = segmenter, catalog, videos, tracked
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
    return b"".join([chunk async for chunk in _limited_chunks(request, max_bytes)])


async def _save_limited(request: Request, max_bytes: int, path: Path) -> None:
    """The body written to ``path`` as it arrives: a video need not fit in memory."""
    with open(path, "wb") as file:
        async for chunk in _limited_chunks(request, max_bytes):
            file.write(chunk)


async def _limited_chunks(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    """The body, refused as soon as it passes ``max_bytes`` (declared or sent) instead of after reading it all."""
    too_large = HTTPException(413, f"the request is larger than the {mib(max_bytes)} allowed here")
    if int(request.headers.get("content-length") or 0) > max_bytes:
        raise too_large
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        yield chunk


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


async def _error_json(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, HTTPException)
    return JSONResponse({"error": err.detail}, status_code=err.status_code)
