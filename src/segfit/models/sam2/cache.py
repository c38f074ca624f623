"""Frozen image-path outputs kept per image view, so a frozen encoder runs once per view instead of every step.

A cached value is what ``features.image_embeddings`` returns for one view (three levels, 16 MiB at 1024² in
fp32). Its key hashes everything the value depends on: the view's pixels exactly as fed to the encoder, the
image-path weights and config (hashed once per model), the device type, the autocast dtype and the torch and
transformers versions. A stale entry can therefore never be hit: nothing asks for its key again, and it ages
out under the size bound. Values live on the CPU (in RAM, or as safetensors files under ``results_dir/cache``)
and are moved to the model's device on use, so CUDA memory is not spent on them.

The image path is deterministic in train mode (no dropout or drop-path in ``Sam2Model``'s vision encoder), so
a cached view gives exactly the embeddings a fresh forward pass would.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import safetensors.torch
import torch
import transformers
from torch import Tensor, nn

from segfit.engine.transfer import host_to_device
from segfit.models.sam2.features import image_embeddings
from segfit.models.sam2.peft import encoder_trains
from segfit.models.sam2.spec import Sam2Spec
from segfit.spec.schema import DataSpec

GIB = 2**30
SUFFIX = ".safetensors"


def nbytes(tensors: list[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class Store(Protocol):
    """Where entries live: a key → the per-level tensors of one view, bounded in bytes."""

    def get(self, key: str) -> list[Tensor] | None: ...

    def put(self, key: str, tensors: list[Tensor]) -> None: ...


class MemoryStore:
    """Entries in RAM; once their total passes ``max_bytes`` the least recently used go first."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[str, list[Tensor]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> list[Tensor] | None:
        tensors = self._entries.get(key)
        if tensors is not None:
            self._entries.move_to_end(key)
        return tensors

    def put(self, key: str, tensors: list[Tensor]) -> None:
        size = nbytes(tensors)
        if size > self.max_bytes or key in self._entries:
            return
        while self._entries and self.nbytes + size > self.max_bytes:
            self.nbytes -= nbytes(self._entries.popitem(last=False)[1])
        self._entries[key] = tensors
        self.nbytes += size


class DiskStore:
    """One safetensors file per entry in ``directory``; file modification times order the LRU eviction.

    Using the files themselves as the index lets a resumed run (a new process) reuse what an earlier one stored,
    and lets processes that share the directory (data-parallel ranks) respect one bound: the directory is listed
    before every write and the oldest files are deleted until the new file fits. Files are written to a temporary
    name and renamed, so a crash never leaves a half-written entry. Nothing touches the disk before the first write.
    """

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._files())

    @property
    def nbytes(self) -> int:
        return sum(size for _, size, _ in self._files())

    def get(self, key: str) -> list[Tensor] | None:
        path = self.directory / f"{key}{SUFFIX}"
        try:
            tensors = safetensors.torch.load_file(path)
            os.utime(path)  # now the most recently used
        except FileNotFoundError:  # never stored, or evicted by another process sharing the directory
            return None
        return [tensors[str(level)] for level in range(len(tensors))]

    def put(self, key: str, tensors: list[Tensor]) -> None:
        data = safetensors.torch.save({str(level): t.contiguous() for level, t in enumerate(tensors)})
        if len(data) > self.max_bytes:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._make_room(len(data))  # also enforces a bound that shrank since the files were written
        tmp = self.directory / f"{key}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.directory / f"{key}{SUFFIX}")

    def _files(self) -> list[tuple[int, int, Path]]:
        """(modification time in ns, size, path) of every entry, oldest first."""
        files = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                stat = path.stat()
            except FileNotFoundError:  # deleted by another process since the listing
                continue
            files.append((stat.st_mtime_ns, stat.st_size, path))
        return sorted(files)

    def _make_room(self, incoming: int) -> None:
        files = self._files()
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total + incoming <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size


class EmbeddingCache:
    """Image embeddings of a frozen image path, computed once per view and then read from ``store``.

    ``image_path_prefixes`` name the parameters and buffers whose values the embeddings depend on (the recipe's
    ``PART_PREFIXES["image_encoder"]``); they must all be frozen. ``hits`` and ``misses`` count views.
    """

    def __init__(self, store: Store, image_path_prefixes: tuple[str, ...]):
        self.store = store
        self.prefixes = image_path_prefixes
        self.hits = 0
        self.misses = 0
        self._model: weakref.ref[nn.Module] | None = None
        self._fingerprint = b""

    def embeddings(self, model: nn.Module, pixels: Tensor, digests: list[str] | None = None) -> list[Tensor]:
        """``features.image_embeddings(model, pixels, encoder_grad=False)``, reading views seen before from the store.

        ``digests`` are the views' ``pixel_digest``s when the caller made them on the host (the training batches do,
        in the loader's workers); without them the pixels are read back from the device. Only views computed here
        (misses) go device → host; hits are copied to the device without waiting for it.
        """
        keys = self.keys(model, pixels, digests)
        found = [self.store.get(key) for key in keys]
        missing = [i for i, tensors in enumerate(found) if tensors is None]
        if missing:
            computed = image_embeddings(model, pixels[missing], encoder_grad=False)
            for row, i in enumerate(missing):
                found[i] = [level[row].to("cpu", copy=True) for level in computed]  # a copy: a view would pin the batch
                self.store.put(keys[i], found[i])
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        return [host_to_device(torch.stack([views[level] for views in found]), pixels.device)
                for level in range(len(found[0]))]

    def keys(self, model: nn.Module, pixels: Tensor, digests: list[str] | None = None) -> list[str]:
        """One key per view of ``pixels`` (B, 3, H, W), for ``model`` under the current autocast state."""
        device = pixels.device.type
        autocast = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        context = self.fingerprint(model) + f"|{device}|{autocast}|{pixels.dtype}|{tuple(pixels.shape[1:])}".encode()
        if digests is None:
            digests = [pixel_digest(view) for view in pixels.detach().cpu()]
        return [hashlib.sha256(context + digest.encode()).hexdigest() for digest in digests]

    def fingerprint(self, model: nn.Module) -> bytes:
        """Hash of the image path's weights and config, computed once per model object."""
        if self._model is not None and self._model() is model:
            return self._fingerprint
        digest = hashlib.sha256()
        config = model.config
        for text in (type(model).__name__, config.vision_config.to_json_string(), str(config._attn_implementation),
                     torch.__version__, transformers.__version__):
            digest.update(text.encode() + b"\0")
        trainable = [name for name, p in model.named_parameters() if p.requires_grad and name.startswith(self.prefixes)]
        if trainable:
            raise RuntimeError(
                f"train.embedding_cache: the image path trains ({', '.join(trainable[:3])}, ...), so its outputs change "
                "every step and cannot be cached; set train.embedding_cache.mode=off"
            )
        tensors = [*model.named_parameters(), *model.named_buffers()]
        for name, tensor in sorted((n, t) for n, t in tensors if n.startswith(self.prefixes)):
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
        self._model, self._fingerprint = weakref.ref(model), digest.hexdigest().encode()
        return self._fingerprint


def pixel_digest(view: Tensor) -> str:
    """SHA-256 of one view's pixels exactly as fed to the encoder (dtype and bytes)."""
    return hashlib.sha256(view.contiguous().cpu().view(torch.uint8).numpy().tobytes()).hexdigest()


def embedding_cache(spec: Sam2Spec, image_path_prefixes: tuple[str, ...]) -> EmbeddingCache | None:
    """The cache ``train.embedding_cache`` asks for, or None when it is off or the image path trains (LoRA included)."""
    if spec.train.embedding_cache.mode == "off" or encoder_trains(spec.model):
        return None
    cfg = spec.train.embedding_cache
    max_bytes = int(cfg.max_gb * GIB)
    store = MemoryStore(max_bytes) if cfg.mode == "memory" else DiskStore(Path(spec.results_dir) / "cache", max_bytes)
    return EmbeddingCache(store, image_path_prefixes)


def without_color_jitter(data: DataSpec) -> DataSpec:
    """``data`` with colour jitter off, saying so once: a jittered view is new every step and could never be reused."""
    if data.augment.color_jitter <= 0:
        return data
    print(f"train.embedding_cache: colour jitter (data.augment.color_jitter={data.augment.color_jitter:g}) is off while "
          "the embedding cache is on, because a jittered view is new every step and its embeddings could never be "
          "reused; horizontal flips stay (each flipped view is cached on its own). Set train.embedding_cache.mode=off "
          "to train with colour jitter.")
    return replace(data, augment=replace(data.augment, color_jitter=0.0))
