"""The package source files a pipeline command runs, derived from its imports (an ast walk, imports inside
functions included) rather than written by hand, so that editing a module reruns exactly the jobs whose
command imports it. The rules in workflow/rules/ call `command_code` for their `code` inputs."""
from __future__ import annotations

import ast
import importlib.util
from functools import cache
from pathlib import Path

PACKAGE = "moe_rpo"
PACKAGE_DIR = Path(__file__).resolve().parent
CLI = f"{PACKAGE}.cli"

# Import edges no pipeline job follows: every job gets its settings already made and checked (--settings), so the
# config's cross-checks (which build routers and read the registry), the schema's router specs and the router classes
# that leave MoE++ out of the benchmark's toy settings never run in one.
PLUGIN = "plugin"  # the router method whose class comes from another package (moe_rpo.routers.plugin)
IGNORED_EDGES = {(f"{PACKAGE}.config", f"{PACKAGE}.config_checks"), (f"{PACKAGE}.schema", f"{PACKAGE}.routers"),
                 (f"{PACKAGE}.sections", f"{PACKAGE}.routers")}


@cache
def module_file(module: str) -> Path | None:
    """The source file of a package module (a package's __init__.py), or None when there is none."""
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _parents(module: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def named_imports(nodes) -> set[str]:
    """The package modules that the import statements among `nodes` name (without the parent packages Python runs
    first). The package uses absolute imports only."""
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from pkg import name`: name is a submodule of pkg or an attribute of it
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if (name == PACKAGE or name.startswith(f"{PACKAGE}.")) and module_file(name)}
    return found


def _with_parents(names) -> set[str]:
    """The modules and the parent packages Python runs before each."""
    return {parent for name in names for parent in (name, *_parents(name))}


def _imported(nodes) -> set[str]:
    """The package modules (and their parent packages) that the import statements among `nodes` name."""
    return _with_parents(named_imports(nodes))


@cache
def named_imports_of(module: str) -> frozenset[str]:
    """The package modules `module` names in its import statements anywhere in its source (at the top or inside a
    function), parsed once."""
    path = module_file(module)
    return frozenset(named_imports(ast.walk(ast.parse(path.read_text(), filename=str(path)))) - {module})


@cache
def imports_of(module: str) -> frozenset[str]:
    """The package modules importing `module` runs: those it names and their parent packages."""
    return frozenset(_with_parents(named_imports_of(module)) - {module})


def _ignored(importer: str, imported: str) -> bool:
    return any(importer == a and (imported == b or imported.startswith(f"{b}.")) for a, b in IGNORED_EDGES)


def closure(modules, exclude: tuple[str, ...] = ()) -> set[str]:
    """Every package module that importing `modules` may run, without the subpackages or modules in
    `exclude` and what only they import."""
    def excluded(name: str) -> bool:
        return any(name == e or name.startswith(f"{e}.") for e in exclude)

    seen, todo = set(), [m for m in modules if not excluded(m)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [m for m in imports_of(module) if not excluded(m) and not _ignored(module, m)]
        todo += [p for p in _parents(module) if not excluded(p)]
    return seen


@cache
def _cli_tree() -> ast.Module:
    return ast.parse(module_file(CLI).read_text())


@cache
def command_modules(command: str) -> frozenset[str]:
    """The modules the CLI imports to run `command`: those its cmd_ function imports, and those the rest of
    cli.py (the module itself and its helpers, not the other commands) imports."""
    tree = _cli_tree()
    function = f"cmd_{command.replace('-', '_')}"
    commands = {node.name: node for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_")}
    if function not in commands:
        raise ValueError(f"the CLI has no command {command!r} (commands: {sorted(commands)})")
    other_commands = {id(node) for name, command_node in commands.items() if name != function
                      for node in ast.walk(command_node)}
    return frozenset({CLI} | _imported(node for node in ast.walk(tree) if id(node) not in other_commands))


def command_code(command: str, *extra: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The source files (relative to the repository) of what `python -m moe_rpo <command>` runs: the import
    closure of the command, plus `extra` modules it imports by name at run time, minus `exclude`."""
    return list(_command_code(command, extra, exclude))


@cache  # the rules ask once per rule, and an input function (the toys' code) once per job
def _command_code(command: str, extra: tuple[str, ...], exclude: tuple[str, ...]) -> tuple[str, ...]:
    # cli.py imports every command's modules: it counts with only this command's (command_modules)
    modules = closure((command_modules(command) - {CLI}) | set(extra), (*exclude, CLI)) | {CLI, f"{PACKAGE}.__main__"}
    root = PACKAGE_DIR.parents[1]
    return tuple(sorted(str(module_file(m).relative_to(root)) for m in modules))


def plugin_module(target) -> tuple[str, str]:
    """(module, class name) of a plugin router's target "package.module:ClassName"."""
    module, sep, name = str(target).partition(":")
    if not (sep and module and name.isidentifier()):
        raise ValueError(f"plugin target {target!r} must read 'package.module:ClassName'")
    return module, name


def module_sources(module: str) -> set[str]:
    """The source files of an importable module, found without importing it: a package's every .py file (the
    class a plugin names may live in any of them), or the module's one file; none when it cannot be found."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.has_location:
        return set()
    folders = spec.submodule_search_locations or []
    return {str(path) for folder in folders for path in Path(folder).rglob("*.py")} or {spec.origin}


def plugin_sources(settings) -> list[str]:
    """The source files of the plugin routers in a job's settings (router specs anywhere in nested dicts and
    lists), found without importing them: the job's code inputs beside the package's, so that editing a plugin
    reruns exactly the jobs that build it."""
    found, todo = set(), [settings]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            if item.get("method") == PLUGIN:
                found |= module_sources(plugin_module(item.get("target"))[0])
            todo += list(item.values())
        elif isinstance(item, list):
            todo += item
    return sorted(found)
