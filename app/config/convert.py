"""msgspec conversion that reports every bad field with its path, not just the first."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from app.config.errors import ConfigProblem
from app.config.expand import _Expander, _join
from app.config.schema import parse_duration

_S = TypeVar("_S", bound=msgspec.Struct)
_MAX_PROBLEMS_PER_ITEM = 100


def _duration(value: Any) -> float:
    """A Go duration string (or a bare 0) → seconds.

    Raises:
        ValueError: the reason, quoting the value.
    """
    if isinstance(value, str):
        seconds = parse_duration(value)
        if seconds < 0:
            raise ValueError(f"invalid duration '{value}' (must not be negative)")
        return seconds
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    # Go's YAML reads a bare number as nanoseconds; refusing it beats guessing.
    raise ValueError(f"invalid duration {value!r} (write it with a unit, such as '30s')")


@functools.cache
def _type_info(kind: type) -> Any:
    return msgspec.inspect.type_info(kind)


def _unwrap(info: Any) -> Any:
    """The type inside `Annotated[...]` and `X | None`."""
    while True:
        if isinstance(info, msgspec.inspect.Metadata):
            info = info.type
        elif isinstance(info, msgspec.inspect.UnionType):
            info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
        else:
            return info


def _is_duration(info: Any) -> bool:
    return isinstance(info, msgspec.inspect.Metadata) and bool(
        info.extra and info.extra.get("go_duration")
    )


_SEGMENT = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _segments(where: str) -> list[str | int]:
    """Turn msgspec's location `$.targets[0].model` into ["targets", 0, "model"]."""
    return [int(index) if index else name for name, index in _SEGMENT.findall(where)]


def _format(segments: list[str | int]) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in segments)


def _choices(kind: type, segments: list[str | int]) -> tuple[str, ...]:
    """The Literal values allowed at `segments` inside `kind`, if that field is a Literal."""
    info: Any = _type_info(kind)
    for segment in [*segments, None]:
        info = _unwrap(info)
        if segment is None:
            break
        if isinstance(segment, int) and isinstance(info, msgspec.inspect.VarTupleType):
            info = info.item_type
        elif isinstance(segment, str) and isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == segment), None)
        else:
            return ()
    if isinstance(info, msgspec.inspect.LiteralType):
        return tuple(str(v) for v in info.values)
    return ()


def _explain(kind: type, detail: str) -> tuple[list[str | int], list[str | int] | None, str]:
    """A msgspec error → (where the problem is, what to drop to look further, reason)."""
    message, _, where = detail.partition(" - at `$")
    at = _segments(where.rstrip("`"))
    if unknown := re.fullmatch(r"Object contains unknown field `(.+)`", message):
        return [*at, unknown.group(1)], [*at, unknown.group(1)], "unknown field"
    if missing := re.fullmatch(r"Object missing required field `(.+)`", message):
        return [*at, missing.group(1)], at or None, "required field is missing"
    if enum := re.fullmatch(r"Invalid enum value (.+)", message):
        allowed = ", ".join(c or repr(c) for c in _choices(kind, at))
        return at, at, f"invalid value {enum.group(1)} (expected one of: {allowed})"
    if bound := re.fullmatch(r"Expected `\w+` ([<>]=? ?.+)", message):
        return at, at, f"must be {bound.group(1)}"
    message = message.replace("`", "")
    return at, at, message[:1].lower() + message[1:]


def _without(data: Any, segments: Sequence[str | int]) -> Any:
    """Return `data` minus the field at `segments`; None when nothing can be dropped.

    A bad list item takes its whole list with it, so the indices of later problems stay true.
    """
    keys: list[str] = []
    for segment in segments:
        if isinstance(segment, int):
            break
        keys.append(segment)
    if not keys or not isinstance(data, dict):
        return None
    if len(keys) == 1:
        return {k: v for k, v in data.items() if k != keys[0]}
    inner = _without(data.get(keys[0]), keys[1:])
    return None if inner is None else {**data, keys[0]: inner}


class _Checker:
    """Collects problems and warnings while converting and cross-checking the file."""

    def __init__(self, file: str, expander: _Expander) -> None:
        self.file = file
        self.expander = expander
        self.problems: list[ConfigProblem] = []
        self.warnings: list[str] = []

    def problem(self, path: str, reason: str) -> None:
        if path in self.expander.unset:  # "FOO is not set" says it all; "" is not the mistake
            return
        self._add(path, reason)

    def _add(self, path: str, reason: str) -> None:
        written, expanded = self.expander.templates.get(path, ("", ""))
        if expanded:  # name the variable, never echo what it held
            reason = reason.replace(expanded, written)
        found = ConfigProblem(self.file, path, reason)
        if found not in self.problems:
            self.problems.append(found)

    def report_unset(self, prefix: str) -> None:
        for path, names in self.expander.unset_under(prefix).items():
            for name in names:
                self._add(path, f"environment variable {name} is not set")

    def convert(self, data: Any, kind: type[_S], path: str) -> _S | None:
        """Convert one section or list item, reporting every bad field, not just the first.

        A bad field is reported, then dropped to look further, so the result (None when the
        item cannot be built at all) is only final when nothing was reported; otherwise it is
        good for more checks, and a `ConfigError` follows anyway. Problems at paths holding an
        unset variable are left to the caller (reported, or made a skip), so one mistake never
        reads as two.
        """
        data = self.durations(data, _type_info(kind), path)
        # A field dropped for a bad value may then be reported missing: once is enough.
        reported: set[str] = set()
        for _ in range(_MAX_PROBLEMS_PER_ITEM):
            try:
                return msgspec.convert(data, kind, strict=False, str_keys=True)
            except msgspec.ValidationError as exc:
                at, drop, reason = _explain(kind, str(exc))
                if path + _format(at) not in reported:
                    self.problem(path + _format(at), reason)
                    reported.add(path + _format(at))
                data = _without(data, drop) if drop else None
                if data is None:
                    return None
        return None

    def durations(self, data: Any, info: Any, path: str) -> Any:
        """`data` with Go durations read as seconds where `info` wants a `Duration`.

        A bad duration is reported and its field dropped, so conversion goes on to the rest.
        """
        info = _unwrap(info)
        if not isinstance(info, msgspec.inspect.StructType) or not isinstance(data, dict):
            return data
        fields = {field.encode_name: field.type for field in info.fields}
        result: dict[Any, Any] = {}
        for key, value in data.items():
            where = _join(path, key)
            if key not in fields:
                result[key] = value
            elif not _is_duration(fields[key]):
                result[key] = self.durations(value, fields[key], where)
            elif value is None:
                result[key] = value  # msgspec: "expected float, got null"
            else:
                try:
                    result[key] = _duration(value)
                except ValueError as exc:
                    self.problem(where, str(exc))
        return result
