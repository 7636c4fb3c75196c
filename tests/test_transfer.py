"""Transfer training end to end: which layers each phase trains, and the frozen-prefix cache.

A tiny VGG16 (random init, 32x32, 32 images) trains one head epoch and one fine-tune epoch, once
with the cache and once without. The checkpoints of every epoch show what changed.
"""

import keras
import numpy as np
import pytest
from conftest import IMAGE_SIZE, run_dirs

import gender.models.layers  # noqa: F401  registers the custom layers for loading
import gender_train
from gender.models import create_model

SEED = 1337  # the trainer's default --seed


def _backbone(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def _changed_layers(before, after) -> set[str]:
    """Names of the layers (backbone and head) whose weights differ between two models."""
    changed = set()
    pairs = list(zip(_backbone(before).layers, _backbone(after).layers))
    pairs += [(a, b) for a, b in zip(before.layers, after.layers) if not isinstance(a, keras.Model)]
    for a, b in pairs:
        if any(not np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights())):
            changed.add(a.name)
    return changed


@pytest.fixture(scope="module")
def vgg16_runs(image_tree, tmp_path_factory):
    """{cache mode: [epoch 1 model, epoch 2 model]} for --cache auto and off."""
    runs = {}
    for cache in ("auto", "off"):
        out = tmp_path_factory.mktemp(f"vgg16-{cache}")
        argv = ["--data", str(image_tree), "--model", "vgg16", "--image-size", str(IMAGE_SIZE),
                "--backbone-weights", "none", "--epochs", "2", "--head-epochs", "1",
                "--trainable-blocks", "1", "--augment", "none", "--batch-size", "8",
                "--cache", cache, "--out", str(out)]  # fmt: skip
        assert gender_train.main(argv) == 0
        (run,) = run_dirs(out)
        runs[cache] = [keras.saving.load_model(run / f"epoch_{i:03d}.keras") for i in (1, 2)]
    return runs


@pytest.mark.slow  # the vgg16_runs fixture trains VGG16 twice: ~45 s on 2 cores
def test_head_phase_trains_only_the_head(vgg16_runs):
    keras.utils.set_random_seed(SEED)  # the trainer seeds, then builds: the same initial weights
    initial = create_model("vgg16", image_size=(IMAGE_SIZE, IMAGE_SIZE), trainable_blocks=0)
    changed = _changed_layers(initial, vgg16_runs["auto"][0])
    assert changed == {"head_dense", "p_woman"}


@pytest.mark.slow  # the vgg16_runs fixture trains VGG16 twice: ~45 s on 2 cores
def test_fine_tune_phase_trains_block5_and_the_head_only(vgg16_runs):
    changed = _changed_layers(*vgg16_runs["auto"])
    assert changed == {"block5_conv1", "block5_conv2", "block5_conv3", "head_dense", "p_woman"}


@pytest.mark.slow  # the vgg16_runs fixture trains VGG16 twice: ~45 s on 2 cores
def test_cached_and_uncached_training_give_the_same_model(vgg16_runs):
    images = np.random.default_rng(0).integers(0, 256, (8, IMAGE_SIZE, IMAGE_SIZE, 3))
    for cached, uncached in zip(vgg16_runs["auto"], vgg16_runs["off"]):
        a = cached.predict(images.astype("float32"), verbose=0)
        b = uncached.predict(images.astype("float32"), verbose=0)
        np.testing.assert_allclose(a, b, atol=1e-5)
    # and training did something: epoch 2 differs from epoch 1
    assert _changed_layers(*vgg16_runs["off"])


@pytest.mark.slow
def test_resnet_fine_tunes_exactly_the_named_stages(image_tree, tmp_path):
    # --trainable-blocks 2 on a ResNet: conv4 and conv5 (less their BatchNorms) and the head
    # change in the fine-tune epoch, through the frozen-prefix cache cut at conv3's output.
    argv = ["--data", str(image_tree), "--model", "resnet50", "--image-size", str(IMAGE_SIZE),
            "--backbone-weights", "none", "--epochs", "2", "--head-epochs", "1",
            "--trainable-blocks", "2", "--augment", "none", "--batch-size", "8",
            "--out", str(tmp_path)]  # fmt: skip
    assert gender_train.main(argv) == 0
    (run,) = run_dirs(tmp_path)
    head, tuned = (keras.saving.load_model(run / f"epoch_{i:03d}.keras") for i in (1, 2))
    base = _backbone(tuned)
    expected = {
        layer.name
        for layer in base.layers
        if layer.weights
        and layer.name.startswith(("conv4_", "conv5_"))
        and not isinstance(layer, keras.layers.BatchNormalization)
    }
    assert _changed_layers(head, tuned) == expected | {"p_woman"}


@pytest.mark.slow  # ~25 s: two trainings of a transfer model
def test_a_phase_caches_no_more_views_than_it_has_epochs(image_tree, tmp_path, capsys):
    # Each epoch feeds every image once from one view: 1 head epoch uses 1 view, the 2
    # fine-tune epochs 2, whatever --cache-views asks.
    argv = ["--data", str(image_tree), "--model", "vgg16", "--image-size", str(IMAGE_SIZE),
            "--backbone-weights", "none", "--epochs", "3", "--head-epochs", "1",
            "--trainable-blocks", "1", "--augment", "flip,brightness", "--cache-views", "4",
            "--batch-size", "8", "--out", str(tmp_path)]  # fmt: skip
    assert gender_train.main(argv) == 0
    out = capsys.readouterr().out
    assert "x 1 views (original)" in out
    assert "x 2 views (original, flip)" in out
    assert "x 4 views" not in out
