"""Every public function, class and method of the documented modules has a Google-style
docstring whose sections match its signature: ``Args:`` when it takes arguments,
``Returns:`` (or ``Yields:``) when it returns a value, ``Attributes:`` for the fields of a
record (NamedTuple, dataclass, Flax module). The API reference (``docs/reference/``) is
rendered from these docstrings."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pkgutil
import textwrap

import pytest

# Add a module here once its public names are documented in this style.
DOCUMENTED_MODULES = (
    "brfjax.metrics",
    "brfjax.data.sequences",
    "brfjax.layers",
    "brfjax.models",
    "brfjax.numerics",
    "brfjax.surrogates",
    "brfjax.interop",
    "brfjax.published",
    "brfjax.convert",
    "brfjax.export",
    "brfjax.checkpoint",
    "brfjax.stopping",
    "brfjax.data",
    "brfjax.data.checks",
    "brfjax.data.download",
    "brfjax.data.ecg",
    "brfjax.data.mnist",
    "brfjax.data.pipeline",
    "brfjax.data.shd",
    "brfjax.train",
    "brfjax.evaluate",
    "brfjax.steps",
    "brfjax.batches",
    "brfjax.workdir",
    "brfjax.cli",
    "brfjax.errors",
    "brfjax.scan",
    "brfjax.cells",
    "brfjax.tasks",
    "brfjax.summaries",
    "brfjax.parallel",
    "brfjax.neurons.common",
    "brfjax.neurons.brf",
    "brfjax.neurons.rf",
    "brfjax.neurons.bhrf",
    "brfjax.neurons.alif",
    "brfjax.neurons.li",
    "brfjax.neurons.registry",
)

# Packages that define no public function or class: they re-export names documented in the
# modules that define them.
REEXPORTING_MODULES = ("brfjax", "brfjax.neurons")

# Public besides the names without a leading underscore: calling a Flax module is its API.
PUBLIC_DUNDERS = ("__call__",)


def _is_public(name: str) -> bool:
    return not name.startswith("_") or name in PUBLIC_DUNDERS


def _defined_here(module, obj) -> bool:
    """Defined in ``module`` itself, not imported into it."""
    return getattr(obj, "__module__", None) == module.__name__


def _public_objects(module_name: str):
    """``(qualified name, object)`` of the module's public functions and classes, and of the
    public methods each of those classes defines itself (inherited ones are documented
    where they are defined)."""
    module = importlib.import_module(module_name)
    for name, obj in sorted(vars(module).items()):
        if not _is_public(name) or not _defined_here(module, obj):
            continue
        obj = getattr(obj, "__wrapped__", obj)  # jax.custom_jvp / custom_vjp functions
        if inspect.isfunction(obj):
            yield f"{module_name}.{name}", obj
        elif inspect.isclass(obj):
            yield f"{module_name}.{name}", obj
            # a record's fields (a Flax cell's initialisers) are documented under Attributes:
            fields = set(_record_fields(obj)) if _is_record(obj) else set()
            for method_name, attribute in vars(obj).items():
                if method_name in fields:
                    continue
                function = getattr(attribute, "__func__", attribute)  # staticmethod, classmethod
                function = getattr(function, "__wrapped__", function)  # nn.compact, nn.nowrap
                if _is_public(method_name) and inspect.isfunction(function):
                    yield f"{module_name}.{name}.{method_name}", function


def _takes_arguments(function) -> bool:
    parameters = list(inspect.signature(function).parameters)
    return bool([name for name in parameters if name not in ("self", "cls")])


class _ReturnFinder(ast.NodeVisitor):
    """Finds ``return <value>`` and ``yield`` in a function body, not in nested functions."""

    def __init__(self):
        self.returns = self.yields = False

    def visit_Return(self, node):
        if node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None
        ):
            self.returns = True

    def visit_Yield(self, node):
        self.yields = True

    visit_YieldFrom = visit_Yield

    def visit_FunctionDef(self, node):  # nested definitions return for themselves
        pass

    visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = visit_FunctionDef


def _returns_and_yields(function) -> tuple[bool, bool]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    finder = _ReturnFinder()
    for statement in tree.body[0].body:
        finder.visit(statement)
    return finder.returns, finder.yields


def _is_record(cls) -> bool:
    """A NamedTuple or a dataclass (Flax modules are dataclasses): fields, not arguments."""
    return (issubclass(cls, tuple) and hasattr(cls, "_fields")) or dataclasses.is_dataclass(cls)


def _record_fields(cls) -> list[str]:
    if hasattr(cls, "_fields"):
        return list(cls._fields)
    return [field.name for field in dataclasses.fields(cls) if field.name not in ("parent", "name")]


def _missing_sections(obj) -> list[str]:
    """The sections ``obj``'s docstring lacks (empty when it is complete)."""
    doc = inspect.getdoc(obj) if inspect.isclass(obj) else obj.__doc__
    if not doc or not doc.strip():
        return ["a docstring"]
    missing = []
    if inspect.isclass(obj):
        if _is_record(obj):
            if _record_fields(obj) and "Attributes:" not in doc:
                missing.append("Attributes:")
        elif "__init__" in vars(obj) and _takes_arguments(obj.__init__):
            init_doc = obj.__init__.__doc__ or ""
            if "Args:" not in doc and "Args:" not in init_doc:
                missing.append("Args:")
        return missing
    if _takes_arguments(obj) and "Args:" not in doc:
        missing.append("Args:")
    returns, yields = _returns_and_yields(obj)
    if returns and "Returns:" not in doc:
        missing.append("Returns:")
    if yields and "Yields:" not in doc:
        missing.append("Yields:")
    return missing


def _cases():
    return [
        pytest.param(obj, id=name)
        for module in DOCUMENTED_MODULES
        for name, obj in _public_objects(module)
    ]


@pytest.mark.parametrize("obj", _cases())
def test_public_name_has_google_style_sections(obj):
    missing = _missing_sections(obj)
    assert not missing, f"{obj.__qualname__}: docstring lacks {', '.join(missing)}"


def test_every_documented_module_has_public_names():
    # a module name that matches nothing (a typo, a moved module) would test nothing
    for module in DOCUMENTED_MODULES:
        assert list(_public_objects(module)), f"{module} has no public function or class"


def test_every_module_of_the_package_is_checked():
    import brfjax

    modules = {"brfjax"} | {
        module.name for module in pkgutil.walk_packages(brfjax.__path__, prefix="brfjax.")
    }
    unchecked = modules - set(DOCUMENTED_MODULES) - set(REEXPORTING_MODULES)
    assert not unchecked, f"add {sorted(unchecked)} to DOCUMENTED_MODULES"
    for module in REEXPORTING_MODULES:
        assert not list(_public_objects(module)), f"{module} defines names: document it"


def test_the_checker_catches_missing_sections():
    def undocumented(x):
        return x

    def no_returns(x):
        """Double x.

        Args:
          x: a number.
        """
        return 2 * x

    def documented(x):
        """Double x.

        Args:
          x: a number.

        Returns:
          ``2 * x``.
        """
        return 2 * x

    def procedure():
        """Nothing in, nothing out."""

    assert _missing_sections(undocumented) == ["a docstring"]
    assert _missing_sections(no_returns) == ["Returns:"]
    assert _missing_sections(documented) == []
    assert _missing_sections(procedure) == []
