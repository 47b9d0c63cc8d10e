"""NovelSampleQualityCallback on toy models whose copies are known: disjoint reference halves, drawing
until the target number of novel samples (or the cap), novelty against the decoded training images
(copies through a lossy decoder are no novel samples), the FID minimum, and the same rounds on every rank."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks.measurements.base import rank_sample_indices
from callbacks.measurements.held_out_halves import disjoint_halves
from callbacks.measurements.novel_sample_search import draw_novel_samples, next_round_size
from callbacks.measurements.sample_quality import NovelSampleQualityCallback
from imaging.pixels import signed_unit_to_uint8, uint8_to_signed_unit
from lightning_modules.model_outputs import Generated
from metrics.kid_bootstrap import kid_with_interval
from tests.helpers import free_port

SEED = 1234  # the callback's default sample seed: sample i has seed SEED + i


def random_images(num, seed):
    return torch.randint(0, 256, (num, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


class PooledFeatures(nn.Module):
    """Stands in for Inception: 16 pooled grey levels of an image, uint8 (the callback's input) read as
    [-1, 1] like InceptionFeatures reads it; no cache_key, so never cached."""

    def forward(self, images):
        signed = uint8_to_signed_unit(images) if images.dtype == torch.uint8 else images
        return F.adaptive_avg_pool2d(signed.float().mean(1, keepdim=True), 4).flatten(1)  # (B, 16)


class CopiesFirst(LightningModule):
    """Sample i is an exact copy of training image i mod N while i < copies_until, then uniform noise
    (far below 25 dB from every training image: novel). Reconstruction is the identity."""

    def __init__(self, train: torch.Tensor, copies_until: float):
        super().__init__()
        self.train_images, self.copies_until = train, copies_until
        self.dummy = nn.Parameter(torch.zeros(1))

    def sample_image(self, index: int) -> torch.Tensor:
        if index < self.copies_until:
            return self.train_images[index % len(self.train_images)].float() / 127.5 - 1
        return torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(SEED + index)) * 2 - 1

    def generate(self, seeds):
        return Generated(None, torch.stack([self.sample_image(s - SEED) for s in seeds]))

    def reconstruct(self, images):
        return Generated(None, images)

    def validation_step(self, batch, batch_idx):
        return None


def blocky(images):
    """A lossy toy decoder on [-1, 1] images: each 2x2 patch becomes its mean (random noise keeps ~12 dB)."""
    return F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="nearest")


class LossyCopiesFirst(CopiesFirst):
    """CopiesFirst through a lossy autoencoder: sample i < copies_until is the decoded training image i mod N
    (what a copier of its token grid decodes to), later samples decode fresh noise; reconstruct is `blocky`."""

    def sample_image(self, index: int) -> torch.Tensor:
        if index < self.copies_until:
            return self.reconstruct(uint8_to_signed_unit(self.train_images[index % len(self.train_images)])[None]).images[0]
        return blocky(torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(SEED + index)) * 2 - 1)[0]

    def reconstruct(self, images):
        return Generated(None, blocky(images))


class ToyImages(LightningDataModule):
    def __init__(self, train, val):
        super().__init__()
        self.splits = {"train": train, "val": val}

    def images_uint8(self, split):
        return self.splits[split]

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)


TRAIN, VAL = random_images(30, seed=0), random_images(60, seed=1)


def measure(copies_until, model=CopiesFirst, **kwargs) -> dict[str, float]:
    settings = {"num_samples": 20, "max_novel": 10, "max_samples": 200, "reference_limit": 30, "fid_min_n": 10, "num_resamples": 200}
    callback = NovelSampleQualityCallback(PooledFeatures(), feature_cache_dir=None, batch_size=16, **{**settings, **kwargs})
    trainer = Trainer(
        logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=[callback], accelerator="cpu", devices=1
    )
    trainer.validate(model(TRAIN, copies_until), datamodule=ToyImages(TRAIN, VAL))
    return {k.removeprefix("quality/"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("quality/")}


def novel_features(indices, model_class=CopiesFirst):
    model = model_class(TRAIN, copies_until=0)
    return PooledFeatures()(signed_unit_to_uint8(torch.stack([model.sample_image(i) for i in indices])))  # as the callback sees them


def test_disjoint_halves_share_no_image_even_when_the_split_repeats_images():
    images = random_images(20, seed=2)
    images[15] = images[3]  # a duplicate that would land in both halves
    halves = disjoint_halves(images, real_size=10, generator_size=8)
    real, generator = {bytes(x.flatten().tolist()) for x in halves.real}, {bytes(x.flatten().tolist()) for x in halves.generator}
    assert len(halves.real) == 10 and len(halves.generator) == 8 and not real & generator
    assert torch.equal(halves.real, images[:10])
    small = disjoint_halves(images[:6], real_size=10, generator_size=8)  # too few: the generator half takes at most half
    assert len(small.generator) == 3 and len(small.real) == 3


def test_a_model_whose_first_samples_are_copies_reaches_the_target_by_drawing_more():
    """The first 50 samples copy training images: the 20 of a fixed draw hold no novel sample; the
    search draws on and scores exactly samples 50..59, the first 10 novel ones in global order."""
    values = measure(copies_until=50)
    assert values["novel_scored"] == 10 and values["novel_target"] == 10
    assert 60 <= values["samples_drawn"] <= 200
    real = PooledFeatures()(disjoint_halves(VAL, 30, 10).real)
    expected = kid_with_interval(real, novel_features(range(50, 60)), num_resamples=200)
    assert values["kid_novel"] == pytest.approx(expected.kid.item(), rel=1e-5)
    assert values["kid_novel_low"] == pytest.approx(expected.low.item(), rel=1e-5)
    assert values["kid_novel_high"] == pytest.approx(expected.high.item(), rel=1e-5)


def test_a_pure_copier_stops_at_the_cap_with_nothing_scored():
    values = measure(copies_until=float("inf"))
    assert values["novel_scored"] == 0 and values["samples_drawn"] == 200
    assert all(torch.isnan(torch.tensor(values[k])) for k in ("kid_novel", "kid_novel_low", "kid_novel_high", "fid_novel"))


def test_decoded_copies_through_a_lossy_decoder_are_not_novel_while_the_originals_rule_let_them_in():
    """Samples 0..49 decode training images through a lossy decoder, as a copier of their token grids does:
    ~12 dB from the originals (novel under the old rule: samples 0..9 were scored), 100 dB from the decoded
    training images (not novel: the search draws on to the decoded fresh noise of samples 50..59)."""
    model = LossyCopiesFirst(TRAIN, copies_until=50)
    copies, fresh = torch.stack([model.sample_image(i) for i in range(20)]), torch.stack([model.sample_image(i) for i in range(50, 70)])
    settings = {"max_novel": 10, "reference_limit": 30, "feature_cache_dir": None}
    callback, original = (
        NovelSampleQualityCallback(PooledFeatures(), **settings),
        NovelSampleQualityCallback(PooledFeatures(), novel_reference="original", **settings),
    )
    trainer = SimpleNamespace(datamodule=ToyImages(TRAIN, VAL), is_global_zero=True, global_step=0)
    callback.build(trainer, model)
    assert not callback.is_novel(copies).any() and callback.is_novel(fresh).all()
    original.build(trainer, model)
    assert original.is_novel(copies).all() and original.is_novel(fresh).all()  # the old rule: every decoded copy is "novel"

    decoded = measure(copies_until=50, model=LossyCopiesFirst)
    assert decoded["novel_reference_decoded"] == 1.0 and decoded["novel_scored"] == 10 and decoded["samples_drawn"] >= 60
    real = PooledFeatures()(disjoint_halves(VAL, 30, 10).real)
    expected = kid_with_interval(real, novel_features(range(50, 60), LossyCopiesFirst), num_resamples=200)
    assert decoded["kid_novel"] == pytest.approx(expected.kid.item(), rel=1e-5)
    old_rule = measure(copies_until=50, model=LossyCopiesFirst, novel_reference="original")
    assert old_rule["novel_reference_decoded"] == 0.0 and old_rule["novel_scored"] == 10 and old_rule["samples_drawn"] == 20
    copies_kid = kid_with_interval(real, PooledFeatures()(signed_unit_to_uint8(copies[:10])), num_resamples=200)
    assert old_rule["kid_novel"] == pytest.approx(copies_kid.kid.item(), rel=1e-5)  # it scored the copies


def test_a_copier_through_a_lossy_decoder_is_scored_under_the_originals_rule_and_not_under_the_decoded_one():
    assert measure(copies_until=float("inf"), model=LossyCopiesFirst)["novel_scored"] == 0
    assert measure(copies_until=float("inf"), model=LossyCopiesFirst, novel_reference="original")["novel_scored"] == 10


def test_fid_is_printed_from_its_minimum_n_on_and_the_unpaired_reference_covers_zero():
    """At n = fid_min_n both FIDs are numbers; one image short of it both are NaN (KID is unchanged). The
    reference, reconstructions (here: copies) of *other* held-out images, scores ~0: its interval covers 0."""
    at_minimum = measure(copies_until=0, fid_min_n=10)
    assert at_minimum["fid_min_n"] == 10 and at_minimum["fid_novel"] > 0 and at_minimum["reference_fid"] > 0
    below = measure(copies_until=0, fid_min_n=11)
    assert torch.isnan(torch.tensor(below["fid_novel"])) and torch.isnan(torch.tensor(below["reference_fid"]))
    assert below["kid_novel"] == at_minimum["kid_novel"]
    assert at_minimum["reference_kid_low"] < 0 < at_minimum["reference_kid_high"]


def test_settings_that_cannot_give_a_score_are_refused():
    with pytest.raises(ValueError, match="max_novel >= 5"):
        NovelSampleQualityCallback(PooledFeatures(), max_novel=4)
    with pytest.raises(ValueError, match="max_samples >= num_samples"):
        NovelSampleQualityCallback(PooledFeatures(), num_samples=200, max_samples=100)
    with pytest.raises(ValueError, match="novel_reference"):
        NovelSampleQualityCallback(PooledFeatures(), novel_reference="latent")


def test_round_sizes_follow_the_novel_rate_double_when_none_is_novel_and_stop_at_the_cap():
    assert next_round_size(found=0, drawn=200, target=40, cap=2000, min_round=50) == 200
    assert next_round_size(found=10, drawn=200, target=40, cap=2000, min_round=50) == 750  # 1.25 x 30 x 200 / 10
    assert next_round_size(found=39, drawn=200, target=40, cap=2000, min_round=50) == 50
    assert next_round_size(found=1, drawn=200, target=40, cap=2000, min_round=50) == 1800


# ---------------------------------------------------------------------------------------------
# DDP: two gloo ranks run the same rounds and choose the samples one process chooses


class CountingGather:
    """trainer.strategy stand-in: all_gather over the default process group (world 1: identity), counted."""

    def __init__(self, world_size):
        self.world_size, self.calls = world_size, 0

    def all_gather(self, tensor):
        self.calls += 1
        if self.world_size == 1:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return torch.stack(parts)


def search(rank, world_size, copies_until=25):
    """draw_novel_samples on a fake trainer, the first round drawn as generated_samples draws it."""
    strategy = CountingGather(world_size)
    trainer = SimpleNamespace(global_rank=rank, world_size=world_size, strategy=strategy)
    model = CopiesFirst(TRAIN, copies_until)
    train = {bytes(x.flatten().tolist()) for x in TRAIN}

    def is_novel(images):
        uint8 = ((images + 1) * 127.5).round().to(torch.uint8)
        return torch.tensor([bytes(x.flatten().tolist()) not in train for x in uint8])

    share = rank_sample_indices(7, rank, world_size)
    first = model.generate([SEED + i for i in share]).images if len(share) else torch.empty(0)
    draw = draw_novel_samples(trainer, model, is_novel, first, num_samples=7, seed=SEED, target=9, cap=70, batch_size=4)
    return draw, strategy.calls


def ddp_worker(rank, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        torch.save(search(rank, 2), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_run_the_same_rounds_and_choose_the_samples_of_one_process(tmp_path):
    mp.spawn(ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    (single, single_calls), ranks = search(0, 1), [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert single.indices.tolist() == list(range(25, 34)) and single.found == 9
    assert [calls for _, calls in ranks] == [single_calls, single_calls] and single_calls > 2  # several rounds, same on both
    assert all(draw.found == single.found and draw.drawn == single.drawn for draw, _ in ranks)
    indices = torch.cat([draw.indices for draw, _ in ranks])  # rank order: each rank holds its rounds' shares
    assert sorted(indices.tolist()) == single.indices.tolist() and len(set(indices.tolist())) == len(indices)
    images = torch.cat([draw.images for draw, _ in ranks if len(draw.indices)])
    assert torch.equal(images[indices.argsort()], single.images)
