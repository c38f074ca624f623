// segfit serve: the prompt (points, labels, box) lives here; the server answers it with one mask per model.
// window.segfit exposes the state (read by the end-to-end test and handy in the browser console).
"use strict";

const COLORS = { base: [30, 144, 255], "fine-tuned": [255, 140, 0] };
const DRAG_PIXELS = 5;  // a press that moves less than this (screen pixels) is a click, not a box

const state = { info: null, imageId: null, image: null, points: [], labels: [], box: null, answers: {}, sent: 0,
                video: null };
window.segfit = state;
const $ = (id) => document.getElementById(id);
const panels = {};

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// selectValue: the picker's value to show ("image:<id>" or "video:<id>"), else the current one.
async function loadInfo(selectValue) {
  state.info = await api("/api/info");
  const group = (label, entries, kind) => {
    const node = document.createElement("optgroup");
    node.label = label;
    node.append(...entries.map((e) => new Option(e.name, `${kind}:${e.id}`)));
    return node;
  };
  const groups = [group("Images", state.info.images, "image")];
  if (state.info.videos.length) groups.push(group("Videos", state.info.videos, "video"));
  $("image-select").replaceChildren(...groups);
  if (!Object.keys(panels).length) state.info.models.forEach(addPanel);
  const value = selectValue || $("image-select").value;
  if (value) { $("image-select").value = value; await choose(value); }
  else showStatus("No images in the spec's data: upload one.");
}

// "image:<id>" or "video:<id>" from the picker.
async function choose(value) {
  const [kind, id] = [value.slice(0, 5), value.slice(6)];
  $("video-controls").hidden = kind !== "video";
  if (kind === "image") {
    state.video = null;
    return selectImage(id, await loadImage(`/api/image?id=${encodeURIComponent(id)}`));
  }
  const frames = state.info.videos.find((v) => v.id === id).frames;
  state.video = { id, frames, t: 0, promptFrame: null, tracks: {}, asked: 0 };
  $("scrub").max = frames - 1;
  $("scrub").value = 0;
  await showFrame(0);
}

function addPanel(model) {
  const node = $("panel-template").content.firstElementChild.cloneNode(true);
  node.dataset.model = model.name;
  node.querySelector(".model").textContent = model.name;
  node.querySelector(".weights").textContent = model.weights;
  const canvas = node.querySelector("canvas");
  attachPointer(canvas);
  $("panels").append(node);
  panels[model.name] = { node, canvas, mask: null };
}

// An image from the server (its error message when it has none) or a data: URL, decoded.
async function loadImage(src) {
  const image = new Image();
  if (src.startsWith("data:")) image.src = src;
  else {
    const response = await fetch(src);
    if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || `HTTP ${response.status}`);
    image.src = URL.createObjectURL(await response.blob());
  }
  try {
    await image.decode();
  } finally {
    if (!src.startsWith("data:")) URL.revokeObjectURL(image.src);  // decoded: the pixels stay with the image
  }
  return image;
}

function selectImage(id, image) {
  Object.assign(state, { imageId: id, image, points: [], labels: [], box: null, answers: {} });
  for (const panel of Object.values(panels)) {
    panel.canvas.width = image.naturalWidth;
    panel.canvas.height = image.naturalHeight;
    panel.mask = null;
    panel.node.querySelector(".figures").textContent = "";
    panel.node.querySelector(".download").hidden = true;
  }
  $("coco").disabled = true;
  showStatus(`${image.naturalWidth}×${image.naturalHeight}: click the object.`);
  redraw();
}

// A video frame: the tracked masks of that frame (if any) over it; the prompt stays on its own frame.
async function showFrame(t) {
  const video = state.video;
  const asked = ++video.asked;
  const frame = await loadImage(`/api/video/frame?id=${encodeURIComponent(video.id)}&t=${t}`);
  if (video !== state.video || asked !== video.asked) return;  // another video or frame was asked for since
  video.t = t;
  if (state.imageId !== `video:${video.id}`) {  // a new video: fresh canvases and prompt
    selectImage(`video:${video.id}`, frame);
    showStatus("Prompt the object on any frame, then track it from there.");
  }
  state.image = frame;
  $("frame-label").textContent = `frame ${t + 1} / ${video.frames}`;
  for (const [model, panel] of Object.entries(panels)) {
    const track = video.tracks[model];
    panel.mask = track && track.layers[t - track.start] || null;
    const iou = track && track.ious[t - track.start];
    panel.node.querySelector(".figures").textContent = iou === undefined || iou === null ? "" : `J ${iou.toFixed(3)}`;
  }
  redraw();
}

// The image pixel (column, row) under the pointer, as segfit's prompts count (the model adds the half pixel).
// Canvas pixels are image pixels, but the canvas may be shown at another size: scale back from inside its border.
function imageXY(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const x = event.clientX - rect.left - canvas.clientLeft, y = event.clientY - rect.top - canvas.clientTop;
  return [Math.min(Math.floor(x * canvas.width / canvas.clientWidth), canvas.width - 1),
          Math.min(Math.floor(y * canvas.height / canvas.clientHeight), canvas.height - 1)].map((v) => Math.max(0, v));
}

function attachPointer(canvas) {
  let start = null;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => { start = { xy: imageXY(canvas, e), x: e.clientX, y: e.clientY }; });
  canvas.addEventListener("pointerup", (e) => {
    if (!start || !state.image) return;
    if (state.video && state.video.promptFrame !== state.video.t) {
      Object.assign(state, { points: [], labels: [], box: null });
      state.video.promptFrame = state.video.t;
    }
    const moved = Math.hypot(e.clientX - start.x, e.clientY - start.y) >= DRAG_PIXELS;
    const xy = imageXY(canvas, e);
    if (moved) {
      const [x0, y0] = start.xy;
      state.box = [Math.min(x0, xy[0]), Math.min(y0, xy[1]), Math.max(x0, xy[0]), Math.max(y0, xy[1])]
        .map((v, i) => Math.max(0, Math.min(v, i % 2 ? canvas.height : canvas.width)));
    } else {
      state.points.push(xy);
      state.labels.push(e.button === 2 || e.shiftKey ? 0 : 1);
    }
    start = null;
    promptChanged();
  });
}

function promptChanged() {
  redraw();
  if (state.video) return;  // a video's prompt is tracked on request
  if (!state.points.length && !state.box) {
    state.answers = {};
    for (const panel of Object.values(panels)) panel.mask = null;
    $("coco").disabled = true;
    redraw();
    return;
  }
  predict();
}

function promptBody() {
  return JSON.stringify({ image: state.imageId, points: state.points, labels: state.labels, box: state.box });
}

async function predict() {
  const sent = ++state.sent;
  document.body.dataset.busy = "1";
  try {
    const { results } = await api("/api/predict", { method: "POST", body: promptBody(),
                                                    headers: { "Content-Type": "application/json" } });
    if (sent !== state.sent) return;  // a newer prompt is on its way
    await Promise.all(results.map(showAnswer));
    const figures = results.map((r) => `${r.model} ${(r.encode_ms + r.decode_ms).toFixed(0)} ms`).join(", ");
    const n = state.points.length;
    const what = [n ? `${n} point${n > 1 ? "s" : ""}` : "", state.box ? "box" : ""].filter(Boolean).join(" + ");
    showStatus(`${what}: ${figures}`);
    $("coco").disabled = false;
  } catch (err) {
    if (sent === state.sent) showStatus(err.message, true);
  } finally {
    if (sent === state.sent) document.body.dataset.busy = "0";
  }
}

// A mask PNG (0 / 255) as a coloured, half-transparent layer.
async function maskLayer(b64, model) {
  const png = await loadImage(`data:image/png;base64,${b64}`);
  const layer = new OffscreenCanvas(png.naturalWidth, png.naturalHeight);
  const ctx = layer.getContext("2d");
  ctx.drawImage(png, 0, 0);
  const pixels = ctx.getImageData(0, 0, layer.width, layer.height);
  const [r, g, b] = COLORS[model] || [0, 200, 0];
  for (let i = 0; i < pixels.data.length; i += 4) pixels.data.set([r, g, b, pixels.data[i] > 127 ? 110 : 0], i);
  ctx.putImageData(pixels, 0, 0);
  return layer;
}

// One model's answer: its mask over the image, its figures, and the same PNG as the download.
async function showAnswer(result) {
  const panel = panels[result.model];
  panel.mask = await maskLayer(result.mask_png, result.model);
  state.answers[result.model] = result;
  const iou = result.iou === null ? "" : ` · IoU ${result.iou.toFixed(3)}`;
  panel.node.querySelector(".figures").textContent = `score ${result.score.toFixed(3)}${iou}`;
  showDownload(panel, `data:image/png;base64,${result.mask_png}`, `${state.imageId.replace(/\W+/g, "_")}_${result.model}.png`,
               "mask PNG");
  redraw();
}

function showDownload(panel, href, fileName, text) {
  const link = panel.node.querySelector(".download");
  Object.assign(link, { href, download: fileName, textContent: text, hidden: false });
}

async function track() {
  const video = state.video;
  if (!state.points.length && !state.box) { showStatus("Prompt the object first (click or drag on a frame).", true); return; }
  const frame = video.promptFrame;
  const n = Math.min(video.frames - frame, state.info.limits.max_tracked_frames);
  showStatus(`tracking frames ${frame + 1}–${frame + n}…`);
  document.body.dataset.busy = "1";
  try {
    const { start, track: trackId, results } = await api("/api/video/track", { method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ video: video.id, frame, points: state.points, labels: state.labels, box: state.box }) });
    for (const result of results) {
      const layers = await Promise.all(result.masks_png.map((b64) => maskLayer(b64, result.model)));
      video.tracks[result.model] = { start, layers, ious: result.ious };
      const query = `track=${encodeURIComponent(trackId)}&model=${encodeURIComponent(result.model)}`;
      showDownload(panels[result.model], `/api/video/masks?${query}`,
                   `${video.id.replace(/\W+/g, "_")}_${result.model}_masks.zip`, "masks ZIP");
    }
    showStatus(`tracked ${n} frames: ${results.map((r) => `${r.model} ${(r.ms / 1000).toFixed(1)} s`).join(", ")}; scrub to see them.`);
    await showFrame(video.t);
  } catch (err) {
    showStatus(err.message, true);
  } finally {
    document.body.dataset.busy = "0";
  }
}

function redraw() {
  const showPrompt = !state.video || state.video.promptFrame === state.video.t;
  for (const panel of Object.values(panels)) {
    const ctx = panel.canvas.getContext("2d");
    if (!state.image) continue;
    ctx.drawImage(state.image, 0, 0);
    if (panel.mask) ctx.drawImage(panel.mask, 0, 0);
    const radius = Math.max(3, panel.canvas.width / 150);
    if (!showPrompt) continue;
    state.points.forEach(([x, y], i) => {
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
      ctx.fillStyle = state.labels[i] ? "#1a9e3a" : "#d0202a";
      ctx.fill();
      ctx.lineWidth = radius / 3;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    });
    if (state.box) {
      const [x0, y0, x1, y1] = state.box;
      ctx.setLineDash([radius * 2, radius]);
      ctx.lineWidth = radius / 2;
      ctx.strokeStyle = "#ffe600";
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.setLineDash([]);
    }
  }
}

async function downloadCoco() {
  try {
    const response = await fetch("/api/coco", { method: "POST", body: promptBody(),
                                                headers: { "Content-Type": "application/json" } });
    if (!response.ok) throw new Error((await response.json()).error);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = `${state.imageId.replace(/\W+/g, "_")}_coco.json`;
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (err) {
    showStatus(err.message, true);
  }
}

// A video file or a zip of frames goes to the video uploads (videos need a video spec), anything else is an image.
async function upload(file) {
  const isVideo = file.type.startsWith("video/") || /\.(zip|mp4|mov|m4v|webm|mkv|avi)$/i.test(file.name);
  const limits = isVideo ? state.info.limits.video : state.info.limits;
  if (!limits) {
    showStatus(`${file.name}: videos need video models (a spec whose data holds davis / sav videos)`, true);
    return;
  }
  if (file.size > limits.max_bytes) {
    showStatus(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; uploads are limited to ${limits.max_bytes / 2 ** 20} MiB`, true);
    return;
  }
  showStatus(`uploading ${file.name}…`);
  document.body.dataset.busy = "1";
  try {
    const entry = await api(isVideo ? "/api/video/upload" : "/api/upload", { method: "POST", body: file,
                                                                         headers: { "X-File-Name": encodeURIComponent(file.name) } });
    await loadInfo(`${isVideo ? "video" : "image"}:${entry.id}`);
  } catch (err) {
    showStatus(`${file.name}: ${err.message}`, true);
  } finally {
    document.body.dataset.busy = "0";
  }
}

$("image-select").addEventListener("change", (e) => choose(e.target.value).catch((err) => showStatus(err.message, true)));
$("scrub").addEventListener("input", (e) => showFrame(Number(e.target.value)).catch((err) => showStatus(err.message, true)));
$("track").addEventListener("click", track);
$("upload").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); e.target.value = ""; });
$("undo").addEventListener("click", () => {
  if (state.points.length) { state.points.pop(); state.labels.pop(); } else state.box = null;
  promptChanged();
});
$("clear").addEventListener("click", () => { state.points = []; state.labels = []; state.box = null; promptChanged(); });
$("coco").addEventListener("click", downloadCoco);
loadInfo().catch((err) => showStatus(err.message, true));
