"""The shape of module_utils, read from its imports (ast, nothing imported): every file sits in a layer and
imports only from its own layer or lower ones, the imports form no cycle, and the package is never imported
inside a function (a lazy import is how a cycle hides). docs/development.md draws these layers."""

import ast
import os

PACKAGE = "ansible_collections.nimguard.k8s.plugins.module_utils"
FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), *[".."] * 4, "plugins", "module_utils")

# Lowest first. modules/ (one file per module's logic) is one layer.
LAYERS = [
    ("errors",),
    # options, objects and names: no HTTP
    ("labels", "redact", "kubeconfig", "validate", "specs", "secrets", "pod", "render", "scan"),
    ("client", "transport", "registry"),
    ("apply", "wait", "checks"),
    ("modules",),
    ("runner",),
]
LAYER = dict((name, i) for i, names in enumerate(LAYERS) for name in names)


def files():
    """{dotted name below the package: path}, e.g. {'client': ..., 'modules.nim_service': ...}."""
    out = {}
    for folder, dummy, names in os.walk(FOLDER):
        for name in names:
            if name.endswith(".py") and name != "__init__.py":
                rel = os.path.relpath(os.path.join(folder, name[:-3]), FOLDER)
                out[rel.replace(os.sep, ".")] = os.path.join(folder, name)
    return out


def layer_of(name):
    return LAYER.get(name.split(".")[0])


def imports(path, known):
    """[(target, top_level)]: each file of the package that `path` imports, and whether at module level."""
    tree = ast.parse(open(path).read())
    top = set(id(n) for n in tree.body)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
            base = node.module[len(PACKAGE) + 1:]
            for alias in node.names:
                target = "%s.%s" % (base, alias.name) if base else alias.name
                out.append((target if target in known else base, id(node) in top))
        elif isinstance(node, ast.Import):
            out.extend((a.name[len(PACKAGE) + 1:], id(node) in top) for a in node.names if a.name.startswith(PACKAGE + "."))
    return out


def graph():
    known = files()
    return dict((name, imports(path, known)) for name, path in known.items())


def test_every_file_has_a_layer():
    assert [name for name in files() if layer_of(name) is None] == []


def test_imports_go_down_the_layers():
    breaks = ["%s (layer %s) imports %s (layer %s)" % (src, layer_of(src), dst, layer_of(dst))
              for src, targets in graph().items() for dst, dummy in targets
              if layer_of(src) is not None and layer_of(dst) is not None and layer_of(dst) > layer_of(src)]
    assert breaks == []


def test_no_import_cycles():
    edges = dict((src, sorted(set(dst for dst, dummy in targets))) for src, targets in graph().items())
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in edges.get(node, []):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"
    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_package_is_imported_at_module_level_only():
    lazy = ["%s imports %s inside a function" % (src, dst) for src, targets in graph().items()
            for dst, top in targets if not top]
    assert lazy == []


def test_no_file_is_long():
    """One concern per file: a file past about 400 lines holds two."""
    long_files = [(name, n) for name, path in files().items() for n in [len(open(path).readlines())] if n > 420]
    assert long_files == []
