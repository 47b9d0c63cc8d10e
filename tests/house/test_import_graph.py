"""The import graph has no circle and no upward arrow (docs/design.md, "Import rules")."""

from pathlib import Path

from tests.house.import_graph import ALLOWED, REPO_ROOT, cycles, import_graph, package_of, project_modules, upward_arrows


def test_no_module_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_no_package_imports_a_layer_above_it():
    assert upward_arrows(import_graph()) == []


def test_every_package_and_script_has_a_rule():
    assert {package_of(module) for module in import_graph()} - set(ALLOWED) == set()


def test_every_python_file_of_the_project_is_in_the_graph():
    files = {p for p in REPO_ROOT.rglob("*.py") if not ({".venv", "tests", "outputs", "build"} & set(p.relative_to(REPO_ROOT).parts))}
    assert files - set(project_modules().values()) == set()


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_catch_a_planted_circle_and_upward_arrows(tmp_path):
    root = write(
        tmp_path,
        {
            "networks/__init__.py": "",
            "networks/a.py": "from metrics.b import thing\n",  # networks may import nothing of the project
            "metrics/__init__.py": "",
            "metrics/b.py": "def f():\n    import metrics.c  # deferred, still an arrow\n",
            "metrics/c.py": "from . import b\n",  # relative import closes the circle b -> c -> b
            "datamodules/__init__.py": "",
            "datamodules/d.py": "import lightning_modules.e\n",
            "lightning_modules/__init__.py": "",
            "lightning_modules/e.py": "import torch\n",
        },
    )
    graph = import_graph(root)
    assert cycles(graph) == [["metrics.b", "metrics.c"]]
    assert upward_arrows(graph) == ["datamodules.d -> lightning_modules.e", "networks.a -> metrics.b"]


def test_a_clean_planted_tree_passes(tmp_path):
    root = write(
        tmp_path,
        {
            "networks/__init__.py": "",
            "networks/a.py": "import torch\nfrom networks import b\n",
            "networks/b.py": "",
            "metrics/__init__.py": "",
            "metrics/m.py": "from networks.a import x\n",
        },
    )
    graph = import_graph(root)
    assert cycles(graph) == [] and upward_arrows(graph) == []
    assert graph["metrics.m"] == {"networks.a"}
