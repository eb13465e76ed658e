"""The test suite's own layout: each test file is named after the module (or tool) it tests, and no test file
imports another test file or conftest.py (shared helpers are conftest fixtures)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PACKAGE = ROOT / "maskgit_cli"

# Test files of things other than a module of the package: what each tests.
NOT_MODULES = {
    "test_demo": ROOT / "tools" / "demo.sh",
    "test_readme": ROOT / "README.md",
    "test_emoji64": ROOT / "tools" / "build_emoji64.py",
    "test_openmoji64": ROOT / "tools" / "build_openmoji64.py",
    "test_fluent128": ROOT / "tools" / "build_fluent128.py",
    # test_styles64: the blob64/fluent64/twemoji64/emojione64 sets, and `maskgit fit` on several of their folders
    "test_styles64": ROOT / "tools" / "build_styles64.py",
    "test_compare_baselines": ROOT / "tools" / "compare_baselines.py",
    "test_layout": TESTS,
    # test_cuda: the package's CUDA paths (training, inpainting, resume, torchrun, tokens) on a GPU, across modules
    "test_cuda": PACKAGE,
    "test_gpu_check": ROOT / "tools" / "gpu_check.sh",
    # test_lab_reference: `--lab` against an independent reference of the lab's loop (docs/lab.md), across modules
    "test_lab_reference": ROOT / "docs" / "lab.md",
    # test_torchrun: tokenize and inpaint under torchrun (runtime's process group, vqgan/tokens, decoding/folders)
    "test_torchrun": PACKAGE,
}


def _test_files() -> list[Path]:
    files = sorted(TESTS.glob("test_*.py"))
    assert len(files) > 10, f"no test files found in {TESTS}"
    return files


def _imported_test_modules(path: Path) -> list[str]:
    """The imports in ``path`` that name a test module, conftest or the tests package."""

    def is_test_module(name: str) -> bool:
        first = name.split(".")[0]
        return first in ("tests", "conftest") or first.startswith("test_")

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level > 0:  # `from .conftest import x`, `from . import test_fid`, `from .test_fid import x`
                found.append(f"line {node.lineno}: from {'.' * node.level}{module} import ...")
            elif is_test_module(module):
                found.append(f"line {node.lineno}: from {module} import ...")
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if is_test_module(a.name)]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
            "import_module",
            "__import__",
        ):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and is_test_module(arg.value.lstrip(".")):
                found.append(f"line {node.lineno}: imports {arg.value!r}")
    return found


def test_no_test_file_imports_another_or_conftest():
    offenders = {}
    for path in [*_test_files(), TESTS / "conftest.py"]:
        found = _imported_test_modules(path)
        if found:
            offenders[path.name] = found
    assert not offenders, f"test files must use conftest fixtures, not import test modules: {offenders}"


def module_for(test_name: str, package: Path = PACKAGE) -> Path | None:
    """The module a test file is named after, or None.

    ``test_X`` tests ``maskgit_cli/X.py`` or the package ``maskgit_cli/X/``; ``test_PKG_X`` tests
    ``maskgit_cli/PKG/X.py``; a bare ``test_X`` may also name ``maskgit_cli/PKG/X.py`` when only one library
    sub-package has a module X (where several have one, the name must carry the sub-package: test_vqgan_train).
    The command modules ``maskgit_cli/cli/X.py`` mirror the library's names (cli/inpaint.py runs
    decoding/inpaint.py): a bare name never means them; test_cli.py tests that layer, or test_cli_X.py one module.
    """
    name = test_name.removeprefix("test_")
    for path in (package / f"{name}.py", package / name / "__init__.py"):
        if path.is_file():
            return path
    subpackages = sorted(p.parent.name for p in package.glob("*/__init__.py"))
    pkg, _, module = name.partition("_")
    if module and pkg in subpackages and (package / pkg / f"{module}.py").is_file():
        return package / pkg / f"{module}.py"
    library = [pkg for pkg in subpackages if pkg != "cli"]
    matches = [package / pkg / f"{name}.py" for pkg in library if (package / pkg / f"{name}.py").is_file()]
    return matches[0] if len(matches) == 1 else None


def test_every_test_file_is_named_after_an_existing_module_or_tool():
    unmatched = []
    for path in _test_files():
        if path.stem in NOT_MODULES:
            assert NOT_MODULES[path.stem].exists(), f"{path.name} tests {NOT_MODULES[path.stem]}, which is gone"
            continue
        if module_for(path.stem) is None:
            unmatched.append(path.name)
    hint = "name it test_MODULE.py or test_SUBPACKAGE_MODULE.py after the module of maskgit_cli it tests"
    assert not unmatched, f"{unmatched}: no such module in maskgit_cli ({hint})"


def test_module_for_examples(tmp_path):
    for file in ("weights.py", "cli/__init__.py", "cli/inpaint.py", "vqgan/__init__.py", "vqgan/tokens.py",
                 "vqgan/train.py", "transformer/__init__.py", "transformer/train.py", "data/__init__.py",
                 "data/lab_csv.py", "decoding/__init__.py", "decoding/inpaint.py"):  # fmt: skip
        (tmp_path / file).parent.mkdir(exist_ok=True)
        (tmp_path / file).touch()
    assert module_for("test_weights", tmp_path) == tmp_path / "weights.py"
    assert module_for("test_cli", tmp_path) == tmp_path / "cli" / "__init__.py"
    assert module_for("test_vqgan_tokens", tmp_path) == tmp_path / "vqgan" / "tokens.py"
    assert module_for("test_tokens", tmp_path) == tmp_path / "vqgan" / "tokens.py"  # one module of that name
    assert module_for("test_lab_csv", tmp_path) == tmp_path / "data" / "lab_csv.py"
    assert module_for("test_transformer_train", tmp_path) == tmp_path / "transformer" / "train.py"
    assert module_for("test_train", tmp_path) is None  # vqgan/train.py or transformer/train.py: say which
    assert module_for("test_inpaint", tmp_path) == tmp_path / "decoding" / "inpaint.py"  # not cli/inpaint.py
    assert module_for("test_cli_inpaint", tmp_path) == tmp_path / "cli" / "inpaint.py"
    assert module_for("test_vqgan_model", tmp_path) is None
    assert module_for("test_nothing", tmp_path) is None


def test_imports_of_test_modules_are_found(tmp_path):
    path = tmp_path / "test_example.py"
    path.write_text(
        "import os\nfrom pathlib import Path\nfrom maskgit_cli.weights import save_model\n"  # fine
        "from .conftest import make_images\nfrom . import test_fid\nfrom .test_fid import TinyExtractor\n"
        "import tests.conftest\nfrom tests.test_fid import write_csv\nimport conftest\nimport test_fid as f\n"
        "import importlib\nimportlib.import_module('tests.test_fid')\n"
    )
    found = _imported_test_modules(path)
    assert [line.split(":")[0] for line in found] == [f"line {i}" for i in range(4, 11)] + ["line 12"], found


# The package's layers, bottom first (docs/architecture.md, "Import rule"): a module imports from its own layer and
# the layers below it only, so the pipeline reads top-down and a model never imports a converter or a trainer.
LAYERS = [
    {
        "_version",
        "errors",
        "choices",
        "memory",
        "runtime",
        "progress",
        "weights",
        "model_card",
        "viz",
        "metrics",
        "schedules",
    },
    {"data"},
    {"training"},
    {"vqgan"},
    {"transformer"},
    {"decoding"},
    {"evaluation"},
    {"bench", "fit"},  # fit: every training stage in one command, above the trainers
    # the front ends: web/, the browser page (maskgit serve) over decoding's Inpainter (serve.py: its old import path),
    # then cli/, which starts it
    {"web", "serve"},
    {"cli", "__main__", "__init__"},  # __init__: the lazy `from maskgit_cli import Inpainter`
]


def _layer(module: str) -> int:
    """Layer of ``maskgit_cli.X...`` by its first part X."""
    first = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if first in names)


def _package_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a maskgit_cli module in ``path``, lazy ones inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("maskgit_cli"):
            if node.module == "maskgit_cli":  # from maskgit_cli import x: x may be a module (or __version__)
                found += [(node.lineno, f"maskgit_cli.{a.name}") for a in node.names if a.name != "__version__"]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, f"relative import {'.' * node.level}{node.module or ''}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("maskgit_cli")]
    return found


def test_imports_only_go_down_the_pipeline():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = "maskgit_cli." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = _layer(module)
        for line, target in _package_imports(path):
            if target.startswith("relative import"):
                problems.append(f"{path.relative_to(ROOT)}:{line}: {target} (use absolute imports)")
            elif target != "maskgit_cli" and _layer(target) > own:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {target}, a later stage")
    assert not problems, "\n".join(problems)


def test_every_package_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        module = "maskgit_cli." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        _layer(module)  # StopIteration for a module no layer names


def test_the_layer_rule_catches_an_upward_import(tmp_path):
    fake = tmp_path / "model.py"
    fake.write_text("def f():\n    from maskgit_cli.transformer.lab_import import convert_lab_state_dict\n")
    ((line, target),) = _package_imports(fake)
    assert line == 2 and _layer(target) > _layer("maskgit_cli.vqgan.model")


def test_pyproject_lists_every_package_and_ships_the_default_weights():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {"maskgit_cli." + ".".join(p.parent.relative_to(PACKAGE).parts) for p in PACKAGE.rglob("__init__.py")}
    found = {name.rstrip(".") for name in found}
    assert set(config["packages"]) == found | {"maskgit_cli.default_weights"}
    assert config["package-dir"] == {"maskgit_cli.default_weights": "weights"}
    shipped = config["package-data"]["maskgit_cli.default_weights"]
    assert "*.safetensors" in shipped and (ROOT / "weights" / "maskgit-emoji64.safetensors").is_file()
    assert "card.json" in shipped and (ROOT / "weights" / "card.json").is_file()  # weights/ is a model folder
