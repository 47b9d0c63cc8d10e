"""`train.py fit --help` leads with the project's own options; `--model.help CLASS` lists a model's arguments."""

import contextlib
import io
import re
from pathlib import Path

import pytest

from train import main


def help_text(*args) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code in (0, None)
    return out.getvalue()


@pytest.mark.parametrize("subcommand", ["fit", "validate", "predict"])
def test_help_points_at_the_project_options_before_the_trainer(subcommand):
    head = "\n".join(help_text(subcommand, "--help").splitlines()[:16])
    for pointer in ("--model.help", "--data.help", "configs/", "docs/", "--print_config"):
        assert pointer in head, pointer
    assert "--trainer.accelerator" not in head


def test_model_help_lists_the_class_arguments():
    text = help_text("fit", "--model.help", "lightning_modules.GammaARVM")
    assert "--model.gamma" in text and "--model.n_layer" in text and "--trainer." not in text


def test_the_project_text_comes_from_train_py_and_runtime_names_no_class_of_the_project():
    """runtime/ is plumbing (docs/design.md): the classes named in the help text and the links live in train.py."""
    runtime = Path(__file__).resolve().parents[2] / "runtime"
    named = {path.name: re.findall(r"\b(?:lightning_modules|datamodules|networks)\.\w+", path.read_text()) for path in runtime.glob("*.py")}
    assert not {name: found for name, found in named.items() if found}
