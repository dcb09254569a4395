"""Does a Python file run on Python 3.9 (the Python of Slicer 5.6 and 5.8)?

No 3.9 interpreter can be installed on the test machines, so this reads the code instead:
the grammar of 3.9 (``ast.parse(feature_version=(3, 9))``: ``match``, ``except*``, ...),
``X | Y`` between types where it is evaluated at run time (outside annotations when the
file has ``from __future__ import annotations``; everywhere in classes whose annotations
Slicer evaluates, ``@parameterNodeWrapper``), and the standard-library names and
arguments added in 3.10-3.13 that such code tends to use. It is a reading, not a run:
what it does not list, it does not catch.
"""

from __future__ import annotations

import ast
from pathlib import Path

#: (module, name) added after Python 3.9.
NEW_NAMES = {
    ("itertools", "pairwise"), ("itertools", "batched"), ("contextlib", "chdir"),
    ("contextlib", "aclosing"), ("datetime", "UTC"), ("enum", "StrEnum"),
    ("enum", "verify"), ("asyncio", "TaskGroup"), ("asyncio", "timeout"),
    ("importlib.metadata", "packages_distributions"), ("hashlib", "file_digest"),
    ("operator", "call"), ("math", "cbrt"), ("math", "exp2"), ("inspect", "get_annotations"),
    ("typing", "TypeAlias"), ("typing", "ParamSpec"), ("typing", "Concatenate"),
    ("typing", "TypeGuard"), ("typing", "Self"), ("typing", "Never"),
    ("typing", "LiteralString"), ("typing", "Required"), ("typing", "NotRequired"),
    ("typing", "Unpack"), ("typing", "TypeVarTuple"), ("typing", "assert_never"),
    ("typing", "assert_type"), ("typing", "reveal_type"), ("typing", "override"),
    ("typing", "is_typeddict"), ("typing", "dataclass_transform"),
}
NEW_MODULES = {"tomllib", "wsgiref.types"}
NEW_BUILTINS = {"aiter", "anext", "ExceptionGroup", "BaseExceptionGroup", "EncodingWarning"}
#: methods added after 3.9 (any object: a reading cannot know the type)
NEW_METHODS = {"bit_count", "hardlink_to"}
#: (callable name, keyword) added after 3.9
NEW_KEYWORDS = {("zip", "strict"), ("dataclass", "slots"), ("dataclass", "kw_only"),
                ("dataclass", "match_args"), ("field", "kw_only"), ("bisect", "key"),
                ("bisect_left", "key"), ("bisect_right", "key"), ("insort", "key")}
#: decorators whose class annotations Slicer evaluates at run time
EVALUATED_ANNOTATIONS = {"parameterNodeWrapper", "parameterPack"}


def problems(path: Path) -> list[str]:
    """Python 3.10+ constructs in the file, as ``file:line: what``; empty when none found."""
    source = Path(path).read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
    except SyntaxError as error:
        return [f"{path}:{error.lineno}: not Python 3.9 syntax ({error.msg})"]
    return [f"{path}:{line}: {what}" for line, what in _Reader(tree).found]


class _Reader(ast.NodeVisitor):
    def __init__(self, tree: ast.Module) -> None:
        self.found: list[tuple[int, str]] = []
        self.futureAnnotations = any(
            isinstance(node, ast.ImportFrom) and node.module == "__future__"
            and any(alias.name == "annotations" for alias in node.names)
            for node in tree.body)
        self.moduleAliases: dict[str, str] = {}
        self.inEvaluatedClass = 0
        self.visit(tree)

    def say(self, node: ast.AST, what: str) -> None:
        self.found.append((getattr(node, "lineno", 0), what))

    # imports --------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in NEW_MODULES:
                self.say(node, f"module {alias.name} is new in Python 3.11")
            self.moduleAliases[alias.asname or alias.name] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module in NEW_MODULES:
            self.say(node, f"module {node.module} is new after Python 3.9")
        for alias in node.names:
            if (node.module, alias.name) in NEW_NAMES:
                self.say(node, f"{node.module}.{alias.name} is new after Python 3.9")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base = _dotted(node.value)
        module = self.moduleAliases.get(base.split(".")[0], None) if base else None
        if module is not None:
            module = ".".join([module, *base.split(".")[1:]])
            if (module, node.attr) in NEW_NAMES:
                self.say(node, f"{module}.{node.attr} is new after Python 3.9")
        if node.attr in NEW_METHODS:
            self.say(node, f".{node.attr}() is new after Python 3.9")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in NEW_BUILTINS:
            self.say(node, f"{node.id} is new after Python 3.9")

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func).split(".")[-1] if _dotted(node.func) else ""
        for keyword in node.keywords:
            if (name, keyword.arg) in NEW_KEYWORDS:
                self.say(node, f"{name}({keyword.arg}=...) is new after Python 3.9")
        self.generic_visit(node)

    # X | Y at run time ----------------------------------------------------
    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.BitOr) and (_looksLikeType(node.left)
                                               or _looksLikeType(node.right)):
            self.say(node, "X | Y between types is evaluated at run time (Python 3.10+)")
        self.generic_visit(node)

    def _annotation(self, annotation) -> None:
        if annotation is None:
            return
        if self.futureAnnotations and not self.inEvaluatedClass:
            return  # a string at run time
        self.visit(annotation)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._annotation(node.annotation)
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.target)

    def visit_arg(self, node: ast.arg) -> None:
        self._annotation(node.annotation)

    def _function(self, node) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.visit(node.args)
        self._annotation(node.returns)
        for statement in node.body:
            self.visit(statement)

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        evaluated = any(_dotted(d.func if isinstance(d, ast.Call) else d).split(".")[-1]
                        in EVALUATED_ANNOTATIONS for d in node.decorator_list)
        self.inEvaluatedClass += evaluated
        self.generic_visit(node)
        self.inEvaluatedClass -= evaluated


_TYPE_NAMES = {"None", "int", "float", "str", "bytes", "bool", "list", "dict", "tuple", "set",
               "frozenset", "type", "object", "complex"}


def _looksLikeType(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Subscript):
        return _looksLikeType(node.value)
    name = _dotted(node)
    if not name:
        return False
    last = name.split(".")[-1]
    return last in _TYPE_NAMES or (last[:1].isupper() and not last.isupper())


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""
