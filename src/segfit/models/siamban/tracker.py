"""The SiamBAN tracker: a template from the first box, then per frame a search crop around the last position,
the best-scoring cell after penalties, and a smoothed box update (no template update, no re-detection).

Per frame: scores = foreground softmax; each cell's box comes from its (l, t, r, b); a change penalty
exp(−(r_c·s_c − 1)·penalty_k) punishes scale change s_c and aspect change r_c against the current box; the
penalised score is blended with a Hanning window (``window_influence``); the best cell's centre is taken and its
size mixed into the current one with weight penalty·score·lr; the box is kept inside the frame and at least 10 px.
The network runs behind two functions, so PyTorch and ONNX Runtime share this code.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from segfit.data.crops import box_center, context_size, crop
from segfit.models.siamban.model import SiamBAN, score_size
from segfit.models.siamban.spec import SiambanTrackerSpec
from segfit.models.siamban.targets import points

TemplateFn = Callable[[np.ndarray], Any]
"""1×3×T×T float32 template crop → kernels (opaque to the tracker)."""
TrackFn = Callable[[Any, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(kernels, 1×3×S×S float32 search crop) → (1×2×n×n scores, 1×4×n×n l, t, r, b)."""
MIN_SIZE = 10


def torch_functions(model: SiamBAN) -> tuple[TemplateFn, TrackFn]:
    device = next(model.parameters()).device

    @torch.no_grad()
    def template(z: np.ndarray) -> list[torch.Tensor]:
        return model.template(torch.from_numpy(z).to(device))

    @torch.no_grad()
    def track(kernels: Sequence[torch.Tensor], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cls, loc = model.track(kernels, torch.from_numpy(x).to(device))
        return cls.float().cpu().numpy(), loc.float().cpu().numpy()

    return template, track


def _change(ratio: np.ndarray) -> np.ndarray:
    return np.maximum(ratio, 1 / ratio)


def _padded_size(w: np.ndarray, h: np.ndarray) -> np.ndarray:
    pad = (w + h) / 2
    return np.sqrt((w + pad) * (h + pad))


class Tracker:
    def __init__(self, template_fn: TemplateFn, track_fn: TrackFn, spec: SiambanTrackerSpec, template_size: int = 127,
                 search_size: int = 255):
        self.template_fn, self.track_fn, self.spec = template_fn, track_fn, spec
        self.template_size, self.search_size = template_size, search_size
        n = score_size(search_size)
        xs, ys = points(n, search_size)
        self.points = np.stack([xs.ravel(), ys.ravel()]) - (search_size - 1) / 2  # relative to the crop centre
        self.window = np.outer(np.hanning(n), np.hanning(n)).ravel()

    def init(self, frame: np.ndarray, box: Sequence[float]) -> None:
        """``frame``: H×W×3 uint8 RGB; ``box``: x, y, w, h of the target."""
        self.center = np.array(box_center(np.asarray(box, float)))
        self.size = np.array(box[2:], float)
        self.pad = frame.reshape(-1, 3).mean(axis=0)
        side = round(context_size(*self.size))
        self.kernels = self.template_fn(self._crop(frame, side, self.template_size))

    def _crop(self, frame: np.ndarray, side: float, out: int) -> np.ndarray:
        patch = crop(frame, tuple(self.center), side, out, self.pad)
        return np.ascontiguousarray(patch.transpose(2, 0, 1)[None], dtype=np.float32)

    def track(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """The target's x, y, w, h in ``frame`` and the chosen cell's foreground score."""
        s_z = context_size(*self.size)
        scale = self.template_size / s_z
        cls, loc = self.track_fn(self.kernels, self._crop(frame, round(s_z * self.search_size / self.template_size),
                                                          self.search_size))
        logits = cls[0].reshape(2, -1)
        score = np.exp(logits[1] - np.logaddexp(logits[0], logits[1]))
        l, t, r, b = loc[0].reshape(4, -1)
        x1, y1, x2, y2 = self.points[0] - l, self.points[1] - t, self.points[0] + r, self.points[1] + b
        w, h = x2 - x1, y2 - y1
        s_c = _change(_padded_size(w, h) / _padded_size(*(self.size * scale)))
        r_c = _change((self.size[0] / self.size[1]) / (w / h))
        penalty = np.exp(-(r_c * s_c - 1) * self.spec.penalty_k)
        pscore = penalty * score * (1 - self.spec.window_influence) + self.window * self.spec.window_influence
        best = int(np.argmax(pscore))
        lr = penalty[best] * score[best] * self.spec.lr
        center = self.center + np.array([x1[best] + x2[best], y1[best] + y2[best]]) / 2 / scale
        size = self.size * (1 - lr) + np.array([w[best], h[best]]) / scale * lr
        height, width = frame.shape[:2]
        self.center = np.clip(center, 0, [width, height])
        self.size = np.clip(size, MIN_SIZE, [max(width, MIN_SIZE), max(height, MIN_SIZE)])
        # the centre convention of ``box_center`` both ways, so a still target gives back its box (the reference
        # writes x = cx − w/2: half a pixel off the x + (w − 1)/2 it reads)
        return np.array([*(self.center - (self.size - 1) / 2), *self.size]), float(score[best])


def track_sequence(tracker: Tracker, frames: Sequence[np.ndarray] | Any, first_box: Sequence[float]) -> np.ndarray:
    """T×4 boxes: the given box for the first frame, the tracker's for the others (``frames`` may be lazy)."""
    boxes = []
    for t, frame in enumerate(frames):
        if t == 0:
            tracker.init(frame, first_box)
            boxes.append(np.asarray(first_box, float))
        else:
            boxes.append(tracker.track(frame)[0])
    return np.stack(boxes)
