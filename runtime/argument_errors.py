"""A command-line or config mistake as one line that names the culprit first (``did you mean`` where it applies).

jsonargparse answers a typo in a config key with the whole usage (about 50 lines) followed by a
nested "Does not validate against any of the Union subtypes ..." report, and its error carries no
more than that text. ``argument_error_line`` turns the message into one line: the offending flag (or
config file and key), what is wrong with it, and the closest valid names (Python 3.11's argparse makes
no suggestions), which jsonargparse itself resolves from the class that its message names.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser

from runtime.errors import squeeze

_NOT_ACCEPTED = re.compile(r"""(?:Option|Key) ['"]([\w.]+)['"] (?:is not accepted|is not expected)(?: before subcommand '(\w+)')?""")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.+)")
_CLASS_PROBLEM = re.compile(r"Problem with given class_path '([\w.]+)'")
_NO_ATTRIBUTE = re.compile(r"module '([\w.]+)' has no attribute '(\w+)'")
_REQUIRED = re.compile(r"the following arguments are required: (.+)")
_YAML_TEXT = '"<unicode string>"'
"""What jsonargparse's YAML errors name instead of the file: it parses the file's text, not the file."""
_SUB_CONFIG = re.compile(r"sub-config file (\S+?):")


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidates of ``name``, or ``""``."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def init_parameter_names(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` takes, as jsonargparse resolves them (``**kwargs`` followed up the classes)."""
    parser = ArgumentParser(exit_on_error=False)
    try:
        parser.add_class_arguments(cls, fail_untyped=False)
        keys = parser.get_defaults().keys()
    except Exception:  # a class jsonargparse cannot describe: no suggestion
        return []
    return list(dict.fromkeys(key.split(".")[0] for key in keys))


def import_class(class_path: str | None) -> type | None:
    """The class at a dotted ``class_path``, or None when there is none (or its module fails to import).

    The module is imported by name, not walked attribute by attribute (``pydoc.locate`` would): a package need
    not expose its submodules, e.g. ``torch.optim`` has no attribute ``adam``, yet ``torch.optim.adam.Adam`` exists.
    """
    if not class_path or "." not in class_path:
        return None
    module_name, _, name = class_path.rpartition(".")
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return value if isinstance(value, type) else None


def config_files(argv: list[str]) -> list[Path]:
    """The ``-c``/``--config`` files of a command line, in order."""
    files = []
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            files.append(Path(argv[i + 1]))
        elif arg.startswith("--config="):
            files.append(Path(arg.split("=", 1)[1]))
    return files


def _load_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def yaml_problem(path: Path) -> str | None:
    """Where and why ``path`` is not valid YAML (``"line 4, column 9: ..."``), or None when it parses (or cannot be read)."""
    try:
        yaml.safe_load(path.read_text())
    except OSError:
        return None
    except yaml.MarkedYAMLError as err:
        mark, context = err.problem_mark, err.context_mark

        def at(m: Any) -> str:
            return f"line {m.line + 1}, column {m.column + 1}"

        where = f"{at(mark)}: " if mark is not None else ""
        within = f" ({err.context} at {at(context)})" if err.context and context is not None else ""
        return f"{where}{err.problem or squeeze(err)}{within}"
    except yaml.YAMLError as err:
        return squeeze(err)
    return None


def referenced_yaml_files(argv: list[str]) -> list[Path]:
    """The YAML files a command line reads: its ``-c`` files, the files they name (``data: ../data/digits.yaml``,
    relative to the naming file, as jsonargparse resolves them), and files given as option values."""
    found: list[Path] = []

    def visit(path: Path) -> None:
        if path in found or len(found) > 100:
            return
        found.append(path)
        tree: Any = [_load_yaml(path)]
        while tree:
            value = tree.pop()
            if isinstance(value, dict):
                tree.extend(value.values())
            elif isinstance(value, list):
                tree.extend(value)
            elif isinstance(value, str) and value.endswith((".yaml", ".yml")):
                reference = Path(os.path.normpath(path.parent / value))
                if reference.is_file():
                    visit(reference)

    for path in config_files(argv):
        visit(path)
    for value in argv:
        if value.endswith((".yaml", ".yml")) and Path(value).is_file():
            visit(Path(value))
    return found


def invalid_yaml_line(message: str, argv: list[str]) -> str:
    """A config file that is not valid YAML, named with the line and column (jsonargparse names ``"<unicode string>"``).

    jsonargparse reads a file named inside a config (``data: ../data/digits.yaml``) from that config's folder,
    and reports its error from there: the folder it changed into is where its path is relative to."""
    files = referenced_yaml_files(argv)
    if match := _SUB_CONFIG.search(message):
        files.insert(0, Path(os.path.abspath(match.group(1))))
    for path in files:
        if (problem := yaml_problem(path)) is not None:
            return f"{path}: not valid YAML at {problem}"
    return squeeze(message.replace(f" in {_YAML_TEXT}", "").replace(_YAML_TEXT, "a config file"))[:400]


def _culprit_flag(argv: list[str], key: str) -> str | None:
    """The command-line flag that set ``key`` (a dotted key or its last part), as the user typed it."""
    leaf = key.split(".")[-1]
    for arg in reversed(argv):
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and (flag[2:] == key or flag[2:].endswith(f".{key}") or flag.endswith(f".{leaf}")):
            return flag
    return None


def _file_with_key(argv: list[str], leaf: str) -> tuple[Path, str] | None:
    """The config file, and the dotted key in it, where ``leaf`` is written (the last file that has it)."""

    def walk(tree: Any, prefix: str):
        if isinstance(tree, dict):
            for name, value in tree.items():
                dotted = f"{prefix}.{name}" if prefix else str(name)
                if name == leaf:
                    yield dotted
                yield from walk(value, dotted)

    found = None
    for path in config_files(argv):
        for dotted in walk(_load_yaml(path), ""):
            found = (path, dotted)
    return found


def not_accepted_line(key: str, argv: list[str], message: str, top_level: Iterable[str]) -> str:
    """``key`` is not an argument of the class (or section) it was given to."""
    flag = _culprit_flag(argv, key)
    in_file = None if flag else _file_with_key(argv, key.split(".")[-1])
    dotted = flag[2:] if flag else (in_file[1] if in_file else key)
    leaf = dotted.split(".")[-1]
    classes = _CLASS_PROBLEM.findall(message)  # jsonargparse names the class whose argument it is, innermost last
    cls = import_class(classes[-1]) if classes else None
    where = flag or (f"{in_file[0]}: {in_file[1]}" if in_file else repr(key))
    if cls is not None:
        return f"{where}: {cls.__module__}.{cls.__qualname__} has no argument {leaf!r}{did_you_mean(leaf, init_parameter_names(cls))}"
    return f"{where}: no such option{did_you_mean(dotted.split('.')[0], top_level)}"


def argument_error_line(message: str, argv: list[str], top_level: Iterable[str] = ()) -> str:
    """One line for a jsonargparse error ``message`` about the command line ``argv``.

    ``top_level``: the first part of every option the parser knows (``trainer``, ``model``, ``data``, ...).
    """
    top_level = list(top_level)
    if _YAML_TEXT in message:
        return invalid_yaml_line(message, argv)
    if match := _NOT_ACCEPTED.search(message):
        key, before_subcommand = match.groups()
        if before_subcommand:
            head = argv[: argv.index(before_subcommand)] if before_subcommand in argv else []
            early = _culprit_flag(head, key) or " ".join(head) or key
            return (
                f"{early} comes before the subcommand: write the subcommand first,"
                f" `train.py {before_subcommand} {' '.join(head) or '-c CONFIG.yaml'} ...`"
            )
        return not_accepted_line(key, argv, message, top_level)
    if match := _NO_ATTRIBUTE.search(message):
        module_name, name = match.groups()
        module = sys.modules.get(module_name)
        classes = [n for n in dir(module) if isinstance(getattr(module, n, None), type)] if module else []
        flag = next((argv[i - 1] for i, arg in enumerate(argv) if arg.endswith(name) and i and argv[i - 1].startswith("--")), None)
        return f"{flag + ': ' if flag else ''}{module_name}.{name} does not exist{did_you_mean(name, classes)}"
    if match := _REQUIRED.search(message):
        return f"{match.group(1)} required: give a config, e.g. `train.py fit -c configs/blae/digits.yaml`"
    if match := _UNRECOGNIZED.search(message):
        first = match.group(1).split()[0]
        if first.startswith("--"):
            option = first[2:].split("=")[0].split(".")[0]
            close = difflib.get_close_matches(option, top_level, n=1, cutoff=0.6)
            return f"{first}: no such option" + (f"; did you mean {first.replace(option, close[0], 1)!r}?" if close else "")
        return f"unexpected argument {first!r}: options start with --, after the subcommand (fit, validate, test, predict)"
    lines = [line.strip().removeprefix("- ") for line in str(message).splitlines()]  # bullets, not a flag's dashes
    useful = [
        line
        for line in lines
        if line and not line.startswith(("Given value", "Subtypes:", "Errors:", "Does not validate", "Expected a <class 'NoneType'>"))
    ]
    return squeeze(" ".join(useful) or message)[:400]
