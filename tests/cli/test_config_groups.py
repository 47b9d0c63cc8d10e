"""configs/ as groups: experiment configs reference data/, model/ and callbacks/ files by path, each
value has one source, and the networks' image channels follow the data."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from train import main

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
GROUP_FILES = sorted(p for group in ("data", "model", "callbacks") for p in (CONFIG_DIR / group).rglob("*.yaml"))
USERS = sorted(p for p in CONFIG_DIR.glob("*/*.yaml") if p.parent.name not in ("data", "model", "callbacks"))


def rgb_parquet(path: Path, count: int = 24, size: int = 8) -> Path:
    """A plain parquet file of random RGB PNGs (what a user brings with --data.path X.parquet)."""
    rng = np.random.default_rng(0)
    structs = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB").save(buffer, format="PNG")
        structs.append({"bytes": buffer.getvalue(), "path": None})
    pq.write_table(pa.table({"image": structs}), path)
    return path


def referenced_files(config: Path) -> set[Path]:
    """The group files a config names (relative to itself), and the files those name in turn."""
    found = set()
    for text in re.findall(r"[\w./-]+\.yaml", config.read_text()):
        target = (config.parent / text).resolve()
        if target.is_file() and target.is_relative_to(CONFIG_DIR) and target not in found:
            found |= {target, *referenced_files(target)}
    return found


def test_every_group_file_is_used_by_an_experiment_preset_or_sweep():
    used = set().union(*(referenced_files(config) for config in USERS))
    sweep_args = " ".join((CONFIG_DIR / "sweeps" / name).read_text() for name in ("digits.yaml", "cifar10.yaml"))
    used |= {(CONFIG_DIR.parent / p).resolve() for p in re.findall(r"configs/[\w./-]+\.yaml", sweep_args)}
    used = set().union(used, *(referenced_files(p) for p in list(used) if p.is_file()))
    assert GROUP_FILES and not [str(p.relative_to(CONFIG_DIR)) for p in GROUP_FILES if p.resolve() not in used]


def test_each_checkpoint_and_data_block_is_written_once():
    """The ModelCheckpoint and the CIFAR-10 data block live in their group files, nowhere else."""
    texts = {p: p.read_text() for p in CONFIG_DIR.rglob("*.yaml")}
    checkpoint_files = {p.relative_to(CONFIG_DIR).parts[:2] for p, t in texts.items() if "ModelCheckpoint" in t}
    assert checkpoint_files == {("callbacks", "checkpoint")}
    cifar_files = sorted(str(p.relative_to(CONFIG_DIR)) for p, t in texts.items() if "path: uoft-cs/cifar10" in t)
    assert cifar_files == ["data/cifar10.yaml", "data/cifar10_tokens.yaml"]
    image_channels = sorted(str(p.relative_to(CONFIG_DIR)) for p, t in texts.items() if "image_channels" in t)
    assert image_channels == []  # linked from data.init_args.channels


def test_channels_follow_the_data(tmp_path, in_tmp_dir):
    """`-c configs/blae/digits.yaml --data.path X.parquet --data.channels 3`: the networks are built for RGB."""
    images = rgb_parquet(tmp_path / "rgb.parquet")
    cli = main(["-c", str(CONFIG_DIR / "blae" / "digits.yaml"), "--data.path", str(images), "--data.channels", "3"], run=False)
    assert cli.model.encoder.image_channels == cli.model.decoder.image_channels == 3 == cli.model.hparams.channels
    cli.datamodule.prepare_data()
    cli.datamodule.setup("fit")
    batch = next(iter(cli.datamodule.train_dataloader()))
    assert batch["image"].shape[1] == 3
    assert cli.model.decode(cli.model.encode(batch["image"])).shape == batch["image"].shape
    grey = main(["-c", str(CONFIG_DIR / "vae" / "digits.yaml")], run=False)
    assert grey.model.encoder.image_channels == grey.model.decoder.image_channels == 1


def test_a_second_source_for_the_channels_is_refused():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "-c",
                str(CONFIG_DIR / "blae" / "digits.yaml"),
                "--model.init_args.encoder.init_args.image_channels",
                "3",
                "--print_config",
            ]
        )
    assert exit_info.value.code == 2 and "image_channels" in err.getvalue()


@pytest.mark.parametrize(
    "flag, source",
    [
        ("--model.init_args.image_size", "--data.init_args.image_size"),
        ("--model.init_args.channels", "--data.init_args.channels"),
        ("--model.init_args.decoder.init_args.image_channels", "--data.init_args.channels"),
    ],
)
def test_every_linked_value_is_set_at_its_source_only(flag, source):
    """A flag aimed at a link target would be overwritten by the link in silence: it is refused in one line."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(CONFIG_DIR / "blae" / "digits.yaml"), flag, "16", "--print_config"])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1, err.getvalue()
    assert f"{flag}: follows {source} (linked); set that instead" in lines[0]


def test_a_missing_group_file_fails_the_parse(tmp_path):
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump({"data": str(CONFIG_DIR / "data" / "digits.yaml"), "model": "no_such_model.yaml"}))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(experiment), "--print_config"])
    assert exit_info.value.code == 2 and "no_such_model.yaml" in err.getvalue()
