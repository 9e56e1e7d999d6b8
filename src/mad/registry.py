"""One registry for every swap point: backends join by name and own their typed options.

A swap point (object stores, streams, ETL engines, partition publishers, detectors) makes one
`Registry[T]` naming the package its backends live in. Each backend module registers itself:

    ENGINES = Registry[Engine]("ETL engine", "mad.etl.engines", setting="etl.engine")

    class DuckDBOptions(Options):
        memory_limit: str = "4GB"

    @ENGINES.register("duckdb", DuckDBOptions)
    class DuckDBEngine: ...

The first lookup imports every module of the package (backends keep heavy imports inside
their functions, so this is cheap), so adding a backend touches only its folder. A backend is
built with `create(name, options, **context)`: its factory is called with the validated
options as keyword arguments plus the context the caller supplies (a data folder, AWS
settings, ...). An unknown name or a bad option is a `ConfigError` that names the setting and
lists what is known.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from mad.errors import ConfigError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Options(BaseModel):
    """Base of every backend's options: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


@dataclass(frozen=True)
class Entry:
    """One registered backend: how to build it and the model of its options."""

    name: str
    factory: Callable[..., Any]
    options: type[BaseModel]


class Registry(Generic[T]):
    """Backends of one swap point, by name."""

    def __init__(self, kind: str, package: str, setting: str = "") -> None:
        self.kind = kind  # e.g. "stream backend", used in messages
        self.package = package  # the package whose modules register backends
        self.setting = setting  # e.g. "ingest.stream": options live at `<setting>.<name>`
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self._lock = threading.RLock()

    def register(self, name: str, options: type[BaseModel] = Options) -> Callable[[F], F]:
        """Decorator: make `factory` available as `name`, with the model of its options
        (none by default; `signature_options` derives one from a factory whose parameters
        are all options, as a detector's are)."""

        def add(factory: F) -> F:
            self._entries[name] = Entry(name, factory, options)
            return factory

        return add

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load()
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        """The backend registered as `name`; ConfigError listing the known names if none."""
        self._load()
        found = self._entries.get(name)
        if found is None:
            where = f"bad setting {self.setting}.backend={name!r}: " if self.setting else ""
            raise ConfigError(f"{where}unknown {self.kind} {name!r}; known: "
                              f"{', '.join(self.names()) or 'none'}")
        return found

    def options(self, name: str, values: BaseModel | Mapping[str, Any] | None = None
                ) -> BaseModel:
        """The options of backend `name`, validated (defaults for what `values` omits)."""
        model = self.entry(name).options
        if isinstance(values, model):
            return values
        data = values.model_dump() if isinstance(values, BaseModel) else dict(values or {})
        try:
            return model.model_validate(data)
        except ValidationError as err:
            prefix = f"{self.setting}.{name}".strip(".")
            raise ConfigError(describe_error(err, model, prefix)) from None

    def create(self, name: str, options: BaseModel | Mapping[str, Any] | None = None,
               **context: Any) -> T:
        """Build backend `name` from its options and the caller's context."""
        entry = self.entry(name)
        values = self.options(name, options)
        made: T = entry.factory(**dict(values), **context)
        return made

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(getattr(package, "__path__", [])):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{module.name}")
            self._loaded = True


def signature_options(factory: Callable[..., Any], model_name: str) -> type[BaseModel]:
    """An `Options` model with one field per keyword parameter of `factory`."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    fields: dict[str, Any] = {}
    hints = _hints(target)
    for param in inspect.signature(target).parameters.values():
        if param.name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    model: type[BaseModel] = create_model(model_name, __base__=Options, **fields)
    return model


def _hints(target: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation that cannot be resolved: accept any value there
        return {}


def describe_error(err: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    """One line for the first error of validating `model`: the dotted key (after `prefix`),
    the value, the reason and what is allowed there (choices, bounds or type)."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join([prefix] * bool(prefix) + [str(p) for p in loc])
    if first["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        known = ", ".join(sorted(parent.model_fields)) if parent else "?"
        return f"unknown setting '{key}' (known here: {known})"
    allowed = _allowed(model, loc)
    msg = f"bad setting {key}={first.get('input')!r}: {first['msg']}"
    if allowed:
        msg += f" (allowed: {allowed})"
    more = len(err.errors()) - 1
    return msg + (f"; and {more} more" if more else "")


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type)
                                 and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def _allowed(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    parent = _model_at(model, loc[:-1])
    field = parent.model_fields.get(str(loc[-1])) if parent is not None and loc else None
    if field is None:
        return ""
    choices = get_args(field.annotation)
    if choices and all(isinstance(c, str) for c in choices):
        return " | ".join(choices)
    bounds = []
    for meta in field.metadata:
        for name, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, name, None) is not None:
                bounds.append(f"{sym} {getattr(meta, name)}")
    if bounds:
        return " and ".join(bounds)
    if field.annotation is not None:
        return getattr(field.annotation, "__name__", str(field.annotation))
    return ""
