"""The direction of imports (STYLE.md section 2), read from every module's imports with ast."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dlcli"
# left to right: a module may import only from its own group or groups to its left
ORDER = [
    {"errors", "registry", "output_text"},
    {"kernels", "tensor"},
    {"activations"},  # the activation table: its rows are ops, which the fused ops (dense, conv, recurrent) read
    {"ops"},
    {"initializers", "layers", "losses", "optimizers", "flat_parameters", "weight_averaging", "schedules", "metrics",
     "sequence_metrics", "decoding", "components", "train.callbacks"},
    {"spec"},
    {"graph"},
    {"checkpoint"},
    {"train"},
    {"export"},
    {"tune"},
    {"report"},
    {"cli"},
]
RANK = {name: i for i, group in enumerate(ORDER) for name in group}
# train/callbacks/ is ranked with the components, not with the rest of train: a spec names callbacks, so spec
# builds its callbacks union from their registry, and they reach the run only through the Run protocol
SUBPACKAGES = {"train.callbacks"}
# `data` needs only errors and registry (and kernels: pure functions over arrays, the CSV number parser), and
# only train and export (and the command line) use it
DATA_MAY_IMPORT = {"errors", "registry", "data", "kernels"}


def _top(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "dlcli" or len(parts) < 2:
        return None
    return ".".join(parts[1:3]) if ".".join(parts[1:3]) in SUBPACKAGES else parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "dlcli":
                found += [(node.lineno, f"dlcli.{alias.name}") for alias in node.names
                          if not alias.name.startswith("__")]  # __version__ is the package, not a module
    return found


def test_no_import_points_right() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        own = rel.parts[0].removesuffix(".py")
        if "/".join(rel.parts[:2]).replace("/", ".") in SUBPACKAGES:
            own = ".".join(rel.parts[:2])
        if own in ("__init__", "__main__"):
            continue
        for line, module in _imports(path):
            target = _top(module)
            if target is None or target == own:
                continue
            if own == "data":
                ok = target in DATA_MAY_IMPORT
            elif target == "data":
                ok = own in ("train", "export", "cli", "report")
            else:
                ok = target in RANK and own in RANK and RANK[target] <= RANK[own]
            if not ok:
                problems.append(f"dlcli/{rel}:{line} imports {module}")
    assert not problems, "imports pointing right:\n" + "\n".join(problems)


def test_only_kernels_import_numba_only_cli_imports_click_only_report_imports_rich() -> None:
    owners = {"numba": "kernels", "click": "cli", "rich": "report"}
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0]
        for line, module in _imports(path):
            lib = module.split(".")[0]
            if lib in owners and own != owners[lib]:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not problems, "\n".join(problems)


def test_every_known_top_level_module_has_a_rank() -> None:
    for path in PACKAGE.iterdir():
        name = path.name.removesuffix(".py")
        if name.startswith("_") or name == "data" or path.suffix not in (".py", ""):
            continue
        assert name in RANK, f"dlcli/{path.name} is not placed in the import order of STYLE.md"


# "never unpickle": a pickle runs code on load. Reading one as data (pickletools.genops) is fine; loading is not.
_UNPICKLING_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib"}


def _unpickling(source: str, filename: str = "<test>") -> list[tuple[int, str]]:
    """(line, what) for each import of a pickle module, pickle/torch load call, or allow_pickle not False."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name.split(".")[0] in _UNPICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in _UNPICKLING_MODULES:
            found.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
            found.append((node.lineno, "from torch import load"))
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and (
                    (func.value.id in _UNPICKLING_MODULES and func.attr in ("load", "loads", "Unpickler"))
                    or (func.value.id == "torch" and func.attr == "load")):
                found.append((node.lineno, f"{func.value.id}.{func.attr}()"))
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not (isinstance(keyword.value, ast.Constant)
                                                          and keyword.value.value is False):
                    found.append((node.lineno, "allow_pickle that is not False"))
    return found


def test_nothing_in_dlcli_unpickles() -> None:
    problems = [f"dlcli/{path.relative_to(PACKAGE)}:{line}: {what}" for path in sorted(PACKAGE.rglob("*.py"))
                for line, what in _unpickling(path.read_text(), str(path))]
    assert not problems, "\n".join(problems)


def test_the_unpickling_check_sees_each_forbidden_form() -> None:
    source = ("import pickle\nfrom pickle import loads\nimport numpy as np\nimport torch\nimport pickletools\n"
              "pickle.load(f)\npickle.loads(b)\nnp.load(p, allow_pickle=True)\nnp.load(p, allow_pickle=flag)\n"
              "torch.load(p)\nnp.load(p, allow_pickle=False)\nlist(pickletools.genops(b))\n")
    assert [line for line, _ in _unpickling(source)] == [1, 2, 6, 7, 8, 9, 10]


def test_did_you_mean_comes_from_registry_suggest_only() -> None:
    allowed = {"registry.py"}
    users = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                   if any(module == "difflib" for _, module in _imports(path)))
    assert [name for name in users if name not in allowed] == [], users
