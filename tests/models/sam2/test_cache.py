"""The frozen-encoder embedding cache: the encoder's values, keys that never go stale, bounds, reuse across runs."""

import json
from pathlib import Path

import pytest
import torch

from segfit.data.synthetic import write_synthetic_images
from segfit.engine.trainer import train
from segfit.models.sam2.build import build_sam2
from segfit.models.sam2.cache import DiskStore, EmbeddingCache, MemoryStore, embedding_cache, nbytes
from segfit.models.sam2.features import image_embeddings
from segfit.models.sam2.recipe import PART_PREFIXES
from segfit.registry import recipe_for
from segfit.spec import load_spec

IMAGE_PATH = PART_PREFIXES["image_encoder"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_synthetic_images(out, num_train=6, num_val=1, size=(120, 160), max_objects=4, seed=2)
    return out


def make_spec(data_dir: Path, run_dir: Path, *overrides: str):
    return load_spec(None, [
        "model.name=sam2", "model.size=test", "model.image_size=256", f"results_dir={run_dir}",
        f"data.train.images={data_dir}/train/images", f"data.train.annotations={data_dir}/train/masks",
        "data.batch_size=2", "train.optim.base_lr=1e-3", "train.log_every=1", "train.eval_every=0",
        "train.checkpoint_every=100", *overrides,
    ])


def frozen_model(image_size: int = 256):
    model = build_sam2("test", image_size=image_size)
    model.requires_grad_(False)
    return model


def entry(value: float, numel: int = 256) -> list[torch.Tensor]:
    return [torch.full((numel,), value), torch.full((numel // 2,), value)]


# ---- stores --------------------------------------------------------------------------------------------------
def test_memory_store_drops_the_least_recently_used_beyond_its_bound():
    size = nbytes(entry(0))
    store = MemoryStore(max_bytes=int(2.5 * size))
    store.put("a", entry(1))
    store.put("b", entry(2))
    assert store.get("a")[0][0] == 1  # "a" is now the most recently used
    store.put("c", entry(3))
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None
    assert len(store) == 2 and store.nbytes == 2 * size <= store.max_bytes
    store.put("huge", entry(4, numel=10_000))  # larger than the whole bound: not kept, nothing evicted
    assert store.get("huge") is None and len(store) == 2


def test_disk_store_stays_within_its_bound_and_survives_a_new_instance(tmp_path):
    first = DiskStore(tmp_path / "cache", max_bytes=10**9)
    first.put("k0", entry(0))
    file_size = (tmp_path / "cache" / "k0.safetensors").stat().st_size
    bound = int(3.5 * file_size)
    store = DiskStore(tmp_path / "cache", max_bytes=bound)  # what a resumed run (a new process) opens
    for i in range(1, 4):
        store.put(f"k{i}", entry(i))
    assert store.get("k1")[1][0] == 1  # read back from disk, and now the most recently used
    for i in range(4, 12):
        store.put(f"k{i}", entry(i))
        on_disk = sum(f.stat().st_size for f in (tmp_path / "cache").iterdir())
        assert on_disk <= bound, f"{on_disk} bytes on disk after entry {i}, bound {bound}"
    assert store.get("k0") is None and store.get("k2") is None  # oldest gone
    assert [t[0].item() for t in store.get("k11")] == [11, 11]
    assert len(store) == 3 and not list((tmp_path / "cache").glob("*.tmp"))
    smaller = DiskStore(tmp_path / "cache", max_bytes=int(1.5 * file_size))
    smaller.put("k12", entry(12))  # a bound lowered between runs holds from the first write
    assert len(smaller) == 1 and smaller.get("k12") is not None


def test_disk_store_writes_nothing_until_used(tmp_path):
    DiskStore(tmp_path / "cache", max_bytes=10**9).get("absent")
    assert not (tmp_path / "cache").exists()


# ---- the cache ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("store", ["memory", "disk"])
def test_cached_embeddings_equal_a_fresh_forward_pass(tmp_path, store):
    model = frozen_model()
    cache = EmbeddingCache(MemoryStore(2**30) if store == "memory" else DiskStore(tmp_path, 2**30), IMAGE_PATH)
    pixels = torch.randn(3, 3, 256, 256)
    expected = image_embeddings(model, pixels, encoder_grad=False)
    cache.embeddings(model, pixels[:2])
    assert (cache.hits, cache.misses) == (0, 2)
    mixed = cache.embeddings(model, pixels[[2, 0, 1]])  # one miss, two hits, in a new order
    assert (cache.hits, cache.misses) == (2, 3)
    for got, want in zip(mixed, expected):
        assert got.shape == want.shape and got.dtype == want.dtype and not got.requires_grad
        # encoded in batches of 2 and 1 vs one batch of 3: other kernel shapes (equal so far; values up to 1e-2)
        torch.testing.assert_close(got, want[[2, 0, 1]], rtol=0, atol=1e-6)


def test_keys_change_with_anything_the_embeddings_depend_on():
    model = frozen_model()
    cache = EmbeddingCache(MemoryStore(2**30), IMAGE_PATH)
    pixels = torch.randn(2, 3, 256, 256)
    keys = cache.keys(model, pixels)
    assert len(set(keys)) == 2 and cache.keys(model, pixels.clone()) == keys
    same_weights = frozen_model()
    same_weights.load_state_dict(model.state_dict())
    assert EmbeddingCache(MemoryStore(1), IMAGE_PATH).keys(same_weights, pixels) == keys  # e.g. a resumed run
    with torch.no_grad():
        same_weights.mask_decoder.iou_prediction_head.proj_out.weight.add_(1)  # not in the image path
    assert EmbeddingCache(MemoryStore(1), IMAGE_PATH).keys(same_weights, pixels) == keys

    changed = {}
    for name, prefix in [("encoder", "vision_encoder.neck."), ("conv_s0", "mask_decoder.conv_s0."),
                         ("no_memory_embedding", "no_memory_embedding")]:
        other = frozen_model()
        other.load_state_dict(model.state_dict())
        with torch.no_grad():
            next(p for n, p in other.named_parameters() if n.startswith(prefix)).view(-1)[0] += 1e-3
        changed[name] = EmbeddingCache(MemoryStore(1), IMAGE_PATH).keys(other, pixels)
    changed["one pixel"] = cache.keys(model, pixels + torch.nn.functional.one_hot(torch.tensor(5), 256) * 1e-6)
    changed["image_size"] = EmbeddingCache(MemoryStore(1), IMAGE_PATH).keys(frozen_model(288), pixels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        changed["bf16"] = cache.keys(model, pixels)
    for name, other_keys in changed.items():
        assert not set(other_keys) & set(keys), f"changing {name} kept a key"


def test_a_trainable_image_path_is_refused():
    model = frozen_model()
    model.mask_decoder.conv_s1.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="mask_decoder.conv_s1.weight"):
        EmbeddingCache(MemoryStore(2**30), IMAGE_PATH).embeddings(model, torch.zeros(1, 3, 256, 256))


@pytest.mark.parametrize(("overrides", "kind"), [
    ((), MemoryStore),
    (("train.embedding_cache.mode=disk",), DiskStore),
    (("train.embedding_cache.mode=off",), None),
    (("model.trainable=[image_encoder,mask_decoder]",), None),
    (("model.lora.rank=4", "model.lora.targets=[image_encoder]"), None),
    (("model.lora.rank=4", "model.lora.targets=[mask_decoder]"), MemoryStore),
])
def test_the_cache_applies_only_to_a_frozen_image_path(data_dir, tmp_path, overrides, kind):
    cache = embedding_cache(make_spec(data_dir, tmp_path, *overrides), IMAGE_PATH)
    assert (cache is None) if kind is None else isinstance(cache.store, kind)


def test_colour_jitter_is_turned_off_with_one_message(data_dir, tmp_path, capsys):
    augment = recipe_for(make_spec(data_dir, tmp_path, "data.augment.color_jitter=0.2")).train_dataset().sources[0].dataset.data.augment
    assert augment.color_jitter == 0 and augment.hflip == 0.5
    assert capsys.readouterr().out.count("colour jitter (data.augment.color_jitter=0.2) is off") == 1
    off = recipe_for(make_spec(data_dir, tmp_path, "data.augment.color_jitter=0.2", "train.embedding_cache.mode=off"))
    assert off.train_dataset().sources[0].dataset.data.augment.color_jitter == 0.2 and capsys.readouterr().out == ""


# ---- training -----------------------------------------------------------------------------------------------
def train_losses(spec) -> tuple[list[float], object]:
    recipe = recipe_for(spec)
    train(recipe, spec)
    lines = (Path(spec.results_dir) / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"], recipe.embedding_cache


@pytest.mark.slow
def test_training_with_the_cache_repeats_the_losses_without_it(data_dir, tmp_path):
    """6 steps of 2 images with flips (6 images give ≤ 12 views, so views repeat): off = memory = disk, the disk run
    stopped after 3 steps and resumed by a new recipe whose store finds the first one's files."""
    common = ("data.augment.hflip=0.5", "data.augment.color_jitter=0", "train.checkpoint_every=3",
              "train.optim.scheduler=constant",  # the same lr whether a run stops at 3 or 6 steps
              "train.prompts.num_correction_clicks=1")  # one mask-input step is enough here, and 4× cheaper
    reference, none = train_losses(make_spec(data_dir, tmp_path / "off", "train.max_steps=6",
                                             "train.embedding_cache.mode=off", *common))
    memory, in_ram = train_losses(make_spec(data_dir, tmp_path / "memory", "train.max_steps=6", *common))
    disk_run = ("train.embedding_cache.mode=disk", "data.num_workers=1", *common)
    _, first = train_losses(make_spec(data_dir, tmp_path / "disk", "train.max_steps=3", *disk_run))
    disk, resumed = train_losses(make_spec(data_dir, tmp_path / "disk", "train.max_steps=6", *disk_run))
    assert none is None and len(reference) == len(disk) == 6
    assert in_ram.hits > 0 and in_ram.hits + in_ram.misses == 12
    assert (first.hits, first.misses) == (0, 6) and resumed.hits == in_ram.hits  # every repeat found on disk
    assert len(list((tmp_path / "disk" / "cache").glob("*.safetensors"))) == first.misses + resumed.misses
    # the cache encodes its misses in other batch shapes than a run without it: a last-bit difference may grow over
    # 6 steps (equal so far); a wrong or stale embedding changes these losses (~9.3) by far more than 1e-5 of them
    torch.testing.assert_close(memory, reference, rtol=1e-5, atol=0)
    torch.testing.assert_close(disk, reference, rtol=1e-5, atol=0)
