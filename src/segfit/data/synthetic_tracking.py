"""Synthetic box-tracking sequences in the GOT-10k layout, for the demo and the tests.

Each sequence shows one textured object gliding (bouncing off the borders), growing and shrinking, over a dull
textured background that also holds a distractor of another colour; a grey bar crosses the scene in front of
everything, so the target is partly (sometimes fully) covered for a while. The box is the whole object's box,
covered parts included (as GOT-10k annotates); ``cover.label`` gives the visible share in GOT-10k's 0–8 steps
(0: fully covered), ``absence.label`` is 1 where nothing of it is visible. Everything is drawn from
``numpy.random.default_rng([seed, split, sequence])``: same seed, same files.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from segfit.data.synthetic import _background, _object_texture, _with_noise


def write_synthetic_tracking(out_dir: str | Path, num_train: int = 8, num_val: int = 2,
                             size: tuple[int, int] = (120, 160), num_frames: int = 24, seed: int = 0) -> dict[str, Path]:
    """Write ``out_dir/train`` and ``out_dir/val`` (skipped when ``num_val`` is 0), each ``seq_000/00000001.jpg ...``
    with ``groundtruth.txt``, ``absence.label``, ``cover.label`` and a ``list.txt``; returns ``train_images`` and
    ``val_images`` (the split folders)."""
    if num_train < 1 or num_val < 0 or num_frames < 2 or min(size) < 32:
        raise ValueError(f"need num_train ≥ 1, num_val ≥ 0, num_frames ≥ 2 and a size of at least 32×32, got "
                         f"num_train={num_train}, num_val={num_val}, num_frames={num_frames}, size={size}")
    out = Path(out_dir)
    paths = {}
    for split_number, (name, count) in enumerate((("train", num_train), ("val", num_val))):
        if count == 0:
            continue
        split = out / name
        names = [f"seq_{i:03d}" for i in range(count)]
        for i, sequence in enumerate(names):
            frames, boxes, cover = render_sequence(np.random.default_rng([seed, split_number, i]), size, num_frames)
            write_got10k_sequence(split / sequence, frames, boxes, cover)
        (split / "list.txt").write_text("\n".join(names) + "\n")
        paths[f"{name}_images"] = split
    (out / "README.txt").write_text(
        "Synthetic box-tracking sequences written by `segfit data synth --kind tracking` (GOT-10k layout,\n"
        f"{num_frames} frames of {size[0]}x{size[1]}, seed {seed}). Spec lines:\n\ndata:\n  train:\n    datasets:\n"
        f"      - {{format: got10k, images: {out / 'train'}}}\n"
        + (f"  val: {{format: got10k, images: {out / 'val'}}}\n" if num_val else ""))
    return paths


def render_sequence(rng: np.random.Generator, size: tuple[int, int],
                    num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T×H×W×3 uint8 frames, T×4 ``x, y, w, h`` boxes of the whole object, T cover levels 0–8)."""
    h, w = size
    background = _background(rng, h, w)
    distractor = _sprite(rng, min(h, w) * rng.uniform(0.1, 0.16))
    dy, dx = rng.uniform(0, h - distractor[0].shape[0]), rng.uniform(0, w - distractor[0].shape[1])
    _paste(background, *distractor, dx, dy)
    texture, mask = _sprite(rng, min(h, w) * 0.45)
    base = rng.uniform(0.4, 0.7)  # object side as a share of the sprite's
    position = rng.uniform(0.25, 0.75, 2) * (w, h)
    velocity = rng.uniform(-0.04, 0.04, 2) * min(h, w)
    wobble, phase = rng.uniform(0.1, 0.3), rng.uniform(0, 2 * np.pi)
    bar_x, bar_speed, bar_width = rng.uniform(-0.3, 0.3) * w, rng.uniform(0.02, 0.06) * w, rng.uniform(0.08, 0.2) * w
    frames = np.zeros((num_frames, h, w, 3), np.uint8)
    boxes, cover = np.zeros((num_frames, 4)), np.zeros(num_frames, int)
    for t in range(num_frames):
        zoom = base * (1 + wobble * np.sin(phase + t * 2 * np.pi / max(num_frames, 12)))
        side = max(6, round(texture.shape[0] * zoom))
        sprite = (cv2.resize(texture, (side, side)), cv2.resize(mask.astype(np.uint8), (side, side)) > 0)
        position, velocity = _bounce(position + velocity, velocity, side, w, h)
        image = background.copy()
        x0, y0 = position - side / 2
        drawn = _paste(image, *sprite, x0, y0)
        bar = slice(max(0, int(bar_x + bar_speed * t)), max(0, int(bar_x + bar_speed * t + bar_width)))
        image[:, bar] = 0.5
        visible = drawn.copy()
        visible[:, bar] = False
        ys, xs = np.nonzero(sprite[1])
        boxes[t] = (x0 + xs.min(), y0 + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        cover[t] = int(np.ceil(8 * visible.sum() / max(1, drawn.sum()))) if drawn.any() else 0
        frames[t] = _with_noise(rng, image)
    return frames, np.round(boxes, 2), cover


def _sprite(rng: np.random.Generator, side: float) -> tuple[np.ndarray, np.ndarray]:
    """A textured ellipse or rectangle: (S×S×3 float texture, S×S bool mask)."""
    n = max(8, int(side))
    yy, xx = (np.mgrid[0:n, 0:n] - (n - 1) / 2) / (n / 2)
    ratio = rng.uniform(0.5, 1.0)
    mask = (xx**2 + (yy / ratio) ** 2 <= 1) if rng.random() < 0.5 else (np.abs(yy) <= ratio) & (np.abs(xx) <= 0.9)
    return _object_texture(rng, n, n).astype(np.float32), mask


def _paste(image: np.ndarray, texture: np.ndarray, mask: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """Paint ``texture`` where ``mask`` is set, top-left at (x0, y0) (clipped); returns the painted pixels."""
    h, w = image.shape[:2]
    x, y = int(round(x0)), int(round(y0))
    painted = np.zeros((h, w), bool)
    ys, xs = slice(max(y, 0), min(y + mask.shape[0], h)), slice(max(x, 0), min(x + mask.shape[1], w))
    part = mask[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x]
    image[ys, xs][part] = texture[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x][part]
    painted[ys, xs] = part
    return painted


def _bounce(position: np.ndarray, velocity: np.ndarray, side: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the object's centre at least half its side inside the frame, reversing the velocity at a border."""
    low, high = np.array([side / 2, side / 2]), np.array([w - side / 2, h - side / 2])
    velocity = np.where((position < low) | (position > high), -velocity, velocity)
    return np.clip(position, low, np.maximum(low, high)), velocity


def write_got10k_sequence(folder: Path, frames: np.ndarray, boxes: np.ndarray, cover: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{t + 1:08d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    (folder / "groundtruth.txt").write_text("".join(",".join(f"{v:g}" for v in box) + "\n" for box in boxes))
    (folder / "cover.label").write_text("".join(f"{c}\n" for c in cover))
    (folder / "absence.label").write_text("".join(f"{int(c == 0)}\n" for c in cover))
