"""No collective inside rank-0-only code: a metric computed, a gather or a barrier there hangs DDP.

Static check over the project's own sources: every `if ...is_global_zero:` block and every
`@rank_zero_only` function must be free of collective calls.
"""

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p
    for folder in ("callbacks", "lightning_modules", "metrics", "datamodules", "autoencoder_checkpoint", "runtime")
    for p in (REPO_ROOT / folder).glob("*.py")
)
SOURCES.append(REPO_ROOT / "train.py")
COLLECTIVES = {"compute", "per_sample", "synced_per_sample", "all_gather", "all_reduce", "barrier", "broadcast", "log_dir", "sync"}


def rank_zero_blocks(tree: ast.AST):
    """Bodies that only global rank 0 runs."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "is_global_zero" in ast.unparse(node.test) and "not" not in ast.unparse(node.test):
            yield node.lineno, node.body
        if isinstance(node, ast.FunctionDef) and any("rank_zero_only" in ast.unparse(d) for d in node.decorator_list):
            yield node.lineno, node.body


def collective_calls(body) -> list[str]:
    found = []
    for statement in body:
        for node in ast.walk(statement):
            name = node.func.attr if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            name = name or (node.attr if isinstance(node, ast.Attribute) and node.attr == "log_dir" else None)
            if name in COLLECTIVES:
                found.append(f"{name} (line {getattr(node, 'lineno', '?')})")
    return found


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_collective_in_rank_zero_only_code(source):
    tree = ast.parse(source.read_text())
    offenders = [f"block at line {line}: {calls}" for line, body in rank_zero_blocks(tree) if (calls := collective_calls(body))]
    assert not offenders, f"{source.name}: collectives in rank-0-only code: {offenders}"


def test_the_check_catches_a_metric_computed_on_rank_zero():
    bad = ast.parse("if trainer.is_global_zero:\n    value = metric.compute()\n")
    assert collective_calls(next(rank_zero_blocks(bad))[1]) == ["compute (line 2)"]
