"""The project's import graph: every `from <project module> import name` in the repository resolves
(including the imports inside functions that only run in long jobs, `make demo` and the benchmarks, which
no other test reaches); the model code has one spelling, `qwen2_audio_graft.<module>`; train/ imports its
own modules relatively, so the same files run as `train.*` from a checkout and as `qwen2_audio_graft.train.*`
installed; and no module imports itself through others (a cycle)."""

import ast
import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REMOTE_CODE = ("configuration_qwen2_audio_graft", "modeling_qwen2_audio_graft", "processing_qwen2_audio_graft",
               "pipeline_qwen2_audio_graft")  # fmt: skip
PROJECT = ("train", "mini", "bench", "tests", "qwen2_audio_graft", "qwen2_audio_graft_vllm", *REMOTE_CODE)


def module_name(path: Path) -> str:
    """The name a file imports as: root files are the package qwen2_audio_graft, vllm_plugin's are its own."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if len(parts) == 1 and parts[0] in REMOTE_CODE:
        parts.insert(0, "qwen2_audio_graft")
    if parts[0] == "vllm_plugin":
        parts = parts[1:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(with_vllm: bool = True):
    for path in sorted(ROOT.glob("**/*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0].startswith(".") or parts[0] == "build" or (parts[0] == "vllm_plugin" and not with_vllm):
            continue
        yield path


def absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module an ImportFrom names, its dots resolved against the file's package."""
    if node.level == 0:
        return node.module
    package = module_name(path).split(".")
    package = package if path.name == "__init__.py" else package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def all_imports(path: Path):
    """(line, module, names, relative) of every import in the file, at any depth (inside functions and
    under TYPE_CHECKING too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            yield node.lineno, absolute(path, node), [alias.name for alias in node.names], node.level > 0
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, [], False


def project_imports():
    for path in python_files(with_vllm=False):
        for line, module, names, _ in all_imports(path):
            if names and module.split(".")[0] in PROJECT:
                yield f"{path.relative_to(ROOT)}:{line}", module, names


def resolves(module: str, name: str) -> bool:
    if hasattr(importlib.import_module(module), name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
        return True
    except ImportError:
        return False


def test_every_project_import_resolves():
    found = list(project_imports())
    assert len(found) > 100  # the walk sees the repository
    missing = [f"{where}: {module}.{name}" for where, module, names in found for name in names if not resolves(module, name)]
    assert missing == []


def test_model_code_has_one_spelling_and_train_imports_itself_relatively():
    wrong = []
    for path in python_files():
        where, in_train = path.relative_to(ROOT), path.relative_to(ROOT).parts[0] == "train"
        for line, module, _, relative in all_imports(path):
            if module.split(".")[0] in REMOTE_CODE:
                wrong.append(f"{where}:{line}: {module} (spelled qwen2_audio_graft.{module})")
            if module.startswith("qwen2_audio_graft.train"):
                wrong.append(f"{where}:{line}: {module} (the installed name, the console scripts' alone)")
            if in_train and module.split(".")[0] == "train" and not relative:
                wrong.append(f"{where}:{line}: {module} (train/ imports its own modules relatively)")
    assert wrong == []


def import_graph() -> dict[str, set[str]]:
    """Each project module and the project modules it imports (a package's module named in `from package
    import module` counts as that module)."""
    files = {module_name(path): path for path in python_files()}
    graph = {}
    for name, path in files.items():
        targets = set()
        for _, module, names, _ in all_imports(path):
            for target in [f"{module}.{n}" for n in names if f"{module}.{n}" in files] or [module]:
                if target in files and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module, each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_cycle_through_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle():
    graph = import_graph()
    assert {"train.stages.common", "train.evaluate", "mini.corpus.jobs"} <= set(graph)
    assert "train.evaluation.listening" in graph["train.stages.common"]
    assert cycles(graph) == []


def test_one_process_loads_each_module_under_one_name():
    for _, module, names in project_imports():
        resolves(module, names[0])
    loaded = [name for name in sys.modules if name.startswith("qwen2_audio_graft.train") or name in REMOTE_CODE]
    assert loaded == []
    assert "train.stage2_qlora" in sys.modules and "qwen2_audio_graft.modeling_qwen2_audio_graft" in sys.modules
