"""Which AWS API calls a deployed function's code can make, found by reading its source.

The function's execution role must allow each of them, and moto checks no IAM:
tests/infrastructure/test_function_permissions.py holds the synthesized roles to
what this module finds. The analysis is static (`ast`, nothing is imported) and
errs towards finding a call that never happens rather than missing one, except
where a rule below says otherwise.

1. Reachable code. Start at the function's handler setting (the module, and the
   name Lambda calls in it). A module is loaded when reachable code imports it (module level,
   or inside a reachable function: the lazy imports the functions rely on), with
   its parent packages. A function or method of a loaded module is reachable when
   its name is mentioned (a name, an attribute, or a string that is an identifier,
   for `getattr`) by reachable code, when a decorator other than the known pure
   wrappers (`property`, `lru_cache`, `dataclass`...) registers it on import (the
   API's routes, validators), or when it is a dunder method. Nested functions and
   lambdas belong to the function around them. `if TYPE_CHECKING:` imports never
   run and are followed only to learn client types. Being name-based, this keeps a
   method of every class that shares a mentioned name: more, never fewer.

2. Clients. A client is made by a call whose first argument names a service: the
   project's client factories (`new_client`, `cached_client`, `aws_client`: any
   function that passes its first parameter on to `create_client` or to another
   such factory), or `create_client` / `boto3.client` directly. A client made with
   explicit credentials (`aws_access_key_id=`) signs as someone else, not as the
   role (rotate_iam's STS check of a new key), and its calls are not the role's.
   Client types follow assignments, returns, parameters, properties and
   `self.<attribute>`s; the `mypy_boto3_<service>` annotations the code carries
   (`-> SecretsManagerClient`) count where no value says more.

3. Calls. `<client>.<method>(...)` where `<method>` is an operation of the
   client's service (`botocore.xform_name(OperationName)`), plus the operation a
   paginator or waiter is made for. A method called on a receiver whose type is
   unknown counts too when it is an operation of a service that reachable code
   makes a client for (with the role's credentials) and no function or method of
   the project bears that name (`rotator.create_secret(ctx)` is the project's own
   step, not Secrets Manager's CreateSecret).

4. Library code: LIBRARY_CALLS, for the Powertools utilities that are handed a
   client and call it themselves (the idempotency persistence layer, the SSM
   provider), counted when reachable code imports them.

The IAM action of an operation is `<prefix>:<OperationName>`, the prefix being
the service model's signing name (else its endpoint prefix) save for the services
in IAM_PREFIX, and the action name the operation's save for ACTION_NAME; actions
that need no permission (NO_PERMISSION_NEEDED) are dropped.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore
import botocore.session

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_DIR = REPO_ROOT / "functions"

# IAM prefixes that are neither the signing name nor the endpoint prefix.
IAM_PREFIX = {"cloudwatch": "cloudwatch"}  # signs as `monitoring`
# Operations whose IAM action is named otherwise.
ACTION_NAME = {
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "lambda:Invoke": "lambda:InvokeFunction",
}
# Callable by any principal: no policy grants or denies them.
NO_PERMISSION_NEEDED = frozenset({"sts:GetCallerIdentity"})

# Library classes and functions that receive a client (or make one) and call AWS
# themselves. Each entry: where it lives, and the actions it needs as the project
# uses it. test_function_permissions checks each action is still one the library
# calls (`<client>.<method>(`) in that module.
LIBRARY_CALLS: dict[str, tuple[str, frozenset[str]]] = {
    # @idempotent_function with DynamoDB: reads a record (GetItem), claims it with a
    # conditional PutItem, completes it (UpdateItem), releases it on failure (DeleteItem).
    "DynamoDBPersistenceLayer": (
        "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb",
        frozenset(
            {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
        ),
    ),
    # SSMProvider.get (what blocks.read_cidrs calls) is one GetParameter; get_multiple,
    # which the project does not call, would need GetParametersByPath.
    "SSMProvider": (
        "aws_lambda_powertools.utilities.parameters.ssm",
        frozenset({"ssm:GetParameter"}),
    ),
    # Module-level helpers with a client of their own: not used by the project today,
    # listed so that a first use is seen.
    "get_parameter": (
        "aws_lambda_powertools.utilities.parameters.ssm",
        frozenset({"ssm:GetParameter"}),
    ),
    "get_secret": (
        "aws_lambda_powertools.utilities.parameters.secrets",
        frozenset({"secretsmanager:GetSecretValue"}),
    ),
}
LIBRARY_PACKAGE = "aws_lambda_powertools"

# Decorators that only wrap a function: it still runs only when something calls it.
_PURE_DECORATORS = frozenset(
    {
        "property",
        "cached_property",
        "staticmethod",
        "classmethod",
        "lru_cache",
        "cache",
        "contextmanager",
        "abstractmethod",
        "dataclass",
        "overload",
        "wraps",
        "setter",
        "getter",
        "deleter",
    }
)
_CLIENT_MAKERS = frozenset({"create_client"})
_FOREIGN_CREDENTIALS = frozenset({"aws_access_key_id", "aws_session_token"})
_PAGINATOR_METHODS = frozenset({"get_paginator", "get_waiter", "can_paginate"})
_FOREIGN = "foreign:"  # marks a client that signs with credentials of its own

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Call:
    """One AWS action the code can cause, and where."""

    action: str
    where: str  # module:qualname:line
    how: str  # "client", "untyped receiver", "library"

    @property
    def qualname(self) -> str:
        module, qualname, _ = self.where.split(":")
        return f"{module}.{qualname}"


@dataclass
class _Unit:
    """Code that runs as one piece: a module's top level, or one function (with its
    nested functions and lambdas)."""

    module: str
    qualname: str
    name: str
    class_name: str | None
    nodes: list[ast.AST]
    node: FunctionNode | None = None
    runs_on_import: bool = False
    mentions: frozenset[str] = frozenset()


@dataclass
class _Module:
    name: str
    path: Path
    tree: ast.Module
    top: _Unit
    functions: list[_Unit] = field(default_factory=list)
    is_package: bool = False


@dataclass(frozen=True)
class Reachable:
    """A function package's reachable code and the AWS calls it makes."""

    handler: str
    modules: frozenset[str]
    units: frozenset[str]  # module.qualname of every reachable unit
    calls: tuple[Call, ...]
    ignored: tuple[str, ...]  # calls on clients with credentials of their own

    @property
    def actions(self) -> frozenset[str]:
        return frozenset(c.action for c in self.calls)

    def where(self, action: str) -> list[str]:
        return sorted({c.where for c in self.calls if c.action == action})


# --- botocore -----------------------------------------------------------------------


@functools.cache
def _session() -> Any:
    return botocore.session.get_session()


@functools.cache
def service_names() -> frozenset[str]:
    return frozenset(_session().get_available_services())


@functools.cache
def operations(service: str) -> dict[str, str]:
    """snake_case method -> OperationName, for one service."""
    model = _session().get_service_model(service)
    return {botocore.xform_name(op): op for op in model.operation_names}


@functools.cache
def iam_prefix(service: str) -> str:
    if service in IAM_PREFIX:
        return IAM_PREFIX[service]
    model = _session().get_service_model(service)
    return str(model.signing_name or model.endpoint_prefix)


def iam_action(service: str, operation: str) -> str:
    action = f"{iam_prefix(service)}:{operation}"
    return ACTION_NAME.get(action, action)


@functools.cache
def actions_of_prefix(prefix: str) -> frozenset[str]:
    """Every action botocore knows under one IAM prefix (for expanding `svc:Get*`).

    Services named like the prefix first (`dynamodb`, `dynamodbstreams`); all of
    botocore's models (seconds to load) only when none of those signs as it.
    """
    likely = {s for s in service_names() if s.startswith(prefix)}
    likely |= {s for s, p in IAM_PREFIX.items() if p == prefix}
    found = _actions_of_prefix_in(prefix, likely)
    return found or _actions_of_prefix_in(prefix, service_names())


def _actions_of_prefix_in(prefix: str, services: Iterable[str]) -> frozenset[str]:
    found: set[str] = set()
    for service in services:
        try:
            if iam_prefix(service) != prefix:
                continue
        except Exception:  # noqa: BLE001, S112 - a model botocore cannot load is not ours
            continue
        found.update(iam_action(service, op) for op in operations(service).values())
    return frozenset(found)


# --- parsing ------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _decorator_name(decorator: ast.expr) -> str:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Name):
        return target.id
    return ""


def _own_nodes(roots: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Nodes that run with a module's top level: function bodies excluded (their
    decorators and defaults run), `if TYPE_CHECKING:` bodies excluded."""
    stack = list(roots)
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            stack.extend(node.decorator_list)
            stack.extend(node.args.defaults)
            stack.extend(d for d in node.args.kw_defaults if d is not None)
            continue
        if isinstance(node, ast.Lambda):
            continue  # runs when called: part of whoever calls it (mentions cover it)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _mentions(nodes: Iterable[ast.AST]) -> frozenset[str]:
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add((node.asname or node.name).split(".")[0])
            found.add(node.name.split(".")[-1])
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.isidentifier()
        ):
            found.add(node.value)
    return frozenset(found)


def _parse(path: Path) -> _Module:
    name = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    top_nodes = list(_own_nodes(tree.body))
    module = _Module(
        name=name,
        path=path,
        tree=tree,
        top=_Unit(name, "<module>", "<module>", None, top_nodes, mentions=_mentions(top_nodes)),
        is_package=path.name == "__init__.py",
    )

    def visit(body: list[ast.stmt], prefix: str, class_name: str | None) -> None:
        for statement in body:
            if isinstance(statement, ast.ClassDef):
                visit(statement.body, f"{prefix}{statement.name}.", statement.name)
            elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
                nodes = [n for s in statement.body for n in ast.walk(s)]
                decorators = {_decorator_name(d) for d in statement.decorator_list}
                module.functions.append(
                    _Unit(
                        module=name,
                        qualname=f"{prefix}{statement.name}",
                        name=statement.name,
                        class_name=class_name,
                        nodes=nodes,
                        node=statement,
                        runs_on_import=bool(decorators - _PURE_DECORATORS)
                        or (statement.name.startswith("__") and statement.name.endswith("__")),
                        mentions=_mentions(nodes),
                    )
                )
            elif isinstance(statement, ast.If | ast.Try | ast.With):
                # Functions defined under a condition are still module functions.
                inner: list[ast.stmt] = []
                for attr in ("body", "orelse", "finalbody"):
                    inner.extend(getattr(statement, attr, []))
                for handler in getattr(statement, "handlers", []):
                    inner.extend(handler.body)
                visit(inner, prefix, class_name)

    visit(tree.body, "", None)
    return module


@functools.cache
def project_modules() -> dict[str, _Module]:
    modules = {}
    for path in sorted(FUNCTIONS_DIR.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        module = _parse(path)
        modules[module.name] = module
    return modules


@functools.cache
def project_function_names() -> frozenset[str]:
    """Every function and method name the project defines."""
    return frozenset(u.name for m in project_modules().values() for u in m.functions)


# --- imports ------------------------------------------------------------------------


def _import_targets(unit: _Unit, module: _Module) -> tuple[set[str], set[str]]:
    """(project modules, library symbols) that the unit's import statements load."""
    project: set[str] = set()
    library: set[str] = set()
    modules = project_modules()
    for node in unit.nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    project.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.name.split(".")
                if not module.is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == LIBRARY_PACKAGE:
                library.update(a.name for a in node.names)
                continue
            if base in modules:
                project.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    project.add(f"{base}.{alias.name}")
    return project, library


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


# --- client types -------------------------------------------------------------------


@functools.cache
def _client_type_names() -> dict[str, str]:
    """`SecretsManagerClient` -> `secretsmanager`, from the mypy_boto3 imports."""
    found: dict[str, str] = {}
    services = service_names()
    for module in project_modules().values():
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            root = node.module.split(".")[0]
            if not root.startswith("mypy_boto3_"):
                continue
            raw = root.removeprefix("mypy_boto3_")
            service = raw if raw in services else raw.replace("_", "-")
            for alias in node.names:
                if alias.name.endswith("Client"):
                    found[alias.asname or alias.name] = service
    return found


def _annotation_services(annotation: ast.expr | None) -> set[str]:
    if annotation is None:
        return set()
    types = _client_type_names()
    found: set[str] = set()
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name) and node.id in types:
            found.add(types[node.id])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:
                inner = ast.parse(node.value, mode="eval").body
            except SyntaxError:
                continue
            found |= _annotation_services(inner)
    return found


@dataclass
class _Types:
    """What is known about clients across the project (names are global: see above)."""

    generic_factories: set[str] = field(default_factory=set)
    # function or property name -> services of the client it returns
    factories: dict[str, set[str]] = field(default_factory=dict)
    # (class name, attribute) -> services, for `self.<attribute>`
    members: dict[tuple[str | None, str], set[str]] = field(default_factory=dict)
    # module name -> module-level variable -> services
    module_vars: dict[str, dict[str, set[str]]] = field(default_factory=dict)


def _terminal_name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _first_param(node: FunctionNode) -> str | None:
    params = [*node.args.posonlyargs, *node.args.args]
    if params and params[0].arg in ("self", "cls"):
        params = params[1:]
    return params[0].arg if params else None


def _find_generic_factories(modules: Iterable[_Module]) -> set[str]:
    units = [u for m in modules for u in m.functions if u.node is not None]
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for unit in units:
            assert unit.node is not None
            param = _first_param(unit.node)
            if param is None or unit.name in found:
                continue
            for node in unit.nodes:
                if (
                    isinstance(node, ast.Call)
                    and _terminal_name(node.func) in (_CLIENT_MAKERS | found)
                    and node.args
                    and isinstance(node.args[0], ast.Name)
                    and node.args[0].id == param
                ):
                    found.add(unit.name)
                    changed = True
                    break
    return found


class _Scope:
    """Resolves the services of client-valued expressions inside one unit."""

    def __init__(self, types: _Types, unit: _Unit):
        self.types = types
        self.unit = unit
        self.locals: dict[str, set[str]] = {}
        if unit.node is not None:
            arguments = unit.node.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                services = _annotation_services(arg.annotation)
                if services:
                    self.locals[arg.arg] = services
            for _ in range(2):  # a second pass for chains (`a = f(); b = a`)
                for node in unit.nodes:
                    self._bind(node)

    def _bind(self, node: ast.AST) -> None:
        if isinstance(node, ast.Assign):
            services = self.services(node.value)
            for target in node.targets:
                if isinstance(target, ast.Name) and services:
                    self.locals[target.id] = self.locals.get(target.id, set()) | services
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            services = (
                self.services(node.value) if node.value is not None else set()
            ) or _annotation_services(node.annotation)
            if services:
                self.locals[node.target.id] = services
        elif isinstance(node, ast.NamedExpr):
            services = self.services(node.value)
            if services:
                self.locals[node.target.id] = services

    def services(self, expression: ast.expr | None) -> set[str]:
        types = self.types
        if expression is None:
            return set()
        if isinstance(expression, ast.Call):
            name = _terminal_name(expression.func)
            made = self._made(expression, name)
            if made:
                return made
            if (
                isinstance(expression.func, ast.Attribute)
                and isinstance(expression.func.value, ast.Name)
                and expression.func.value.id in ("self", "cls")
                and (self.unit.class_name, name) in types.members
            ):
                return set(types.members[(self.unit.class_name, name)])
            return set(types.factories.get(name, set()))
        if isinstance(expression, ast.Name):
            found = self.locals.get(expression.id) or types.module_vars.get(
                self.unit.module, {}
            ).get(expression.id)
            return set(found or ())
        if isinstance(expression, ast.Attribute):
            value = expression.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                own = types.members.get((self.unit.class_name, expression.attr))
                if own:
                    return set(own)
            # Another object's property or attribute: every class's of that name.
            found = set()
            for (_, attribute), services in types.members.items():
                if attribute == expression.attr:
                    found |= services
            return found
        if isinstance(expression, ast.BoolOp):
            return set().union(*(self.services(v) for v in expression.values))
        if isinstance(expression, ast.IfExp):
            return self.services(expression.body) | self.services(expression.orelse)
        if isinstance(expression, ast.NamedExpr | ast.Await):
            return self.services(expression.value)
        return set()

    def _made(self, call: ast.Call, name: str) -> set[str]:
        """The service of a call that makes a client, `foreign:` if it has its own keys."""
        is_maker = name in self.types.generic_factories or name in _CLIENT_MAKERS
        is_boto3 = (
            name == "client"
            and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name)
            and call.func.value.id == "boto3"
        )
        if not (is_maker or is_boto3) or not call.args:
            return set()
        first = call.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            return set()
        if first.value not in service_names():
            return set()
        foreign = any(k.arg in _FOREIGN_CREDENTIALS for k in call.keywords)
        return {f"{_FOREIGN}{first.value}" if foreign else first.value}


@functools.cache
def _types() -> _Types:
    modules = project_modules()
    types = _Types(generic_factories=_find_generic_factories(modules.values()))
    # Fixpoint: factories return what other factories make.
    for _ in range(6):
        before = (
            {k: frozenset(v) for k, v in types.factories.items()},
            {k: frozenset(v) for k, v in types.members.items()},
            {m: {k: frozenset(v) for k, v in d.items()} for m, d in types.module_vars.items()},
        )
        for module in modules.values():
            top = _Scope(types, module.top)
            for node in module.top.nodes:
                top._bind(node)
            if top.locals:
                types.module_vars[module.name] = top.locals
            for unit in module.functions:
                assert unit.node is not None
                scope = _Scope(types, unit)
                returned: set[str] = set()
                for node in unit.nodes:
                    if isinstance(node, ast.Return):
                        returned |= scope.services(node.value)
                    # self.<attribute> = <client>
                    if isinstance(node, ast.Assign | ast.AnnAssign) and unit.class_name:
                        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                        for target in targets:
                            if (
                                isinstance(target, ast.Attribute)
                                and isinstance(target.value, ast.Name)
                                and target.value.id == "self"
                            ):
                                services = scope.services(node.value)
                                if isinstance(node, ast.AnnAssign) and not services:
                                    services = _annotation_services(node.annotation)
                                if services:
                                    key = (unit.class_name, target.attr)
                                    types.members[key] = types.members.get(key, set()) | services
                services = returned or _annotation_services(unit.node.returns)
                if services and unit.name not in types.generic_factories:
                    types.factories[unit.name] = types.factories.get(unit.name, set()) | services
                    if unit.class_name:
                        key = (unit.class_name, unit.name)
                        types.members[key] = types.members.get(key, set()) | services
        after = (
            {k: frozenset(v) for k, v in types.factories.items()},
            {k: frozenset(v) for k, v in types.members.items()},
            {m: {k: frozenset(v) for k, v in d.items()} for m, d in types.module_vars.items()},
        )
        if after == before:
            break
    return types


# --- reachability and calls ------------------------------------------------------------


@functools.cache
def reachable(handler: str) -> Reachable:
    """The code Lambda can run for a handler setting (`functions.api.handler.lambda_handler`)."""
    entry_module, entry_point = handler.rsplit(".", 1)
    modules = project_modules()
    assert entry_module in modules, handler
    types = _types()
    loaded: set[str] = set()
    done: set[int] = set()
    mentioned: set[str] = {entry_point}
    library: set[str] = set()
    queue: list[_Unit] = []

    def load(name: str) -> None:
        for module_name in _with_parents(name):
            if module_name in loaded or module_name not in modules:
                continue
            loaded.add(module_name)
            module = modules[module_name]
            queue.append(module.top)
            queue.extend(u for u in module.functions if u.runs_on_import or u.name in mentioned)

    load(entry_module)
    while queue:
        unit = queue.pop()
        if id(unit) in done:
            continue
        done.add(id(unit))
        new = unit.mentions - mentioned
        mentioned |= unit.mentions
        if new:
            for module_name in loaded:
                queue.extend(u for u in modules[module_name].functions if u.name in new)
        project, symbols = _import_targets(unit, modules[unit.module])
        library |= symbols
        for target in project:
            load(target)

    units = [
        u
        for name in sorted(loaded)
        for u in [modules[name].top, *modules[name].functions]
        if id(u) in done
    ]
    calls: list[Call] = []
    ignored: list[str] = []
    created: set[str] = set()
    client_calls: list[tuple[_Unit, ast.Call, str, set[str]]] = []
    untyped: list[tuple[_Unit, ast.Call, str]] = []
    for unit in units:
        scope = _Scope(types, unit)
        for node in unit.nodes:
            if not isinstance(node, ast.Call):
                continue
            made = scope._made(node, _terminal_name(node.func))
            created |= {s for s in made if not s.startswith(_FOREIGN)}
            if not isinstance(node.func, ast.Attribute):
                continue
            method = node.func.attr
            services = scope.services(node.func.value)
            if services:
                client_calls.append((unit, node, method, services))
            else:
                untyped.append((unit, node, method))

    def where(unit: _Unit, node: ast.AST) -> str:
        return f"{unit.module}:{unit.qualname}:{getattr(node, 'lineno', 0)}"

    def add(service: str, operation: str, unit: _Unit, node: ast.AST, how: str) -> None:
        action = iam_action(service, operation)
        if action not in NO_PERMISSION_NEEDED:
            calls.append(Call(action, where(unit, node), how))

    for unit, node, method, services in client_calls:
        for service in sorted(services):
            if service.startswith(_FOREIGN):
                ignored.append(f"{service.removeprefix(_FOREIGN)}.{method} at {where(unit, node)}")
                continue
            operation_name = method
            if method in _PAGINATOR_METHODS:
                first = node.args[0] if node.args else None
                if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                    continue
                operation_name = first.value
            operation = operations(service).get(operation_name)
            if operation:
                add(service, operation, unit, node, "client")
    project_names = project_function_names()
    for unit, node, method in untyped:
        if method in project_names:
            continue
        for service in sorted(created):
            operation = operations(service).get(method)
            if operation:
                add(service, operation, unit, node, "untyped receiver")
    for symbol in sorted(library & LIBRARY_CALLS.keys()):
        origin, actions = LIBRARY_CALLS[symbol]
        calls.extend(
            Call(action, f"{origin}:{symbol}:0", "library")
            for action in sorted(actions)
            if action not in NO_PERMISSION_NEEDED
        )
    return Reachable(
        handler=handler,
        modules=frozenset(loaded),
        units=frozenset(f"{u.module}.{u.qualname}" for u in units),
        calls=tuple(sorted(set(calls), key=lambda c: (c.action, c.where))),
        ignored=tuple(sorted(set(ignored))),
    )


def library_client_calls(module: str) -> set[str]:
    """Methods called on something in a library module (`x.client.get_item(` -> get_item)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    assert spec is not None, module
    assert spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            found.add(node.func.attr)
            if node.func.attr in _PAGINATOR_METHODS and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found
