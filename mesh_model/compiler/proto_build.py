"""Build a proto from its proto3 JSON form (as a dict) without ``json_format.ParseDict``.

The compiler writes every Envoy resource as a dict in Envoy's JSON field names (see
``common.to_proto``). ``ParseDict`` turned those into protos field by field in Python,
rebuilding a name -> field table for every message it met, and the bytes it put inside a
typed ``Any`` had to be re-serialized afterwards with deterministic map order: together
about two thirds of a cold compile.

``build(data, MessageType)`` accepts the same JSON (camelCase ``json_name`` or the proto
field name, ``"@type"`` for a typed ``Any``, Duration strings, enum names, 64-bit integers
as strings, plain values for wrapper types, Struct/Value/ListValue, maps, repeated fields)
and produces the same message:

* Once per message type it compiles a table: every accepted key -> (proto field name,
  converter). Converting a dict is then one table lookup per key and a cheap type check per
  value; the result is a tree of constructor keyword arguments, and the message is made by
  one ``MessageType(**kwargs)`` call, whose nested dicts/lists the upb backend turns into
  submessages in C.
* A typed ``Any`` is packed when it is built: its inner message is constructed (its own
  nested Anys already packed) and serialized with ``deterministic=True`` -- what
  ``Any.Pack(inner, deterministic=True)`` does, type URL ``type.googleapis.com/<full name>``
  included. The bytes inside an ``Any`` (an HCM inside a listener, a JSON log format map
  inside the HCM) are therefore canonical without a second pass; versions are content
  hashes, so they must be. (This includes an ``Any`` that is itself a map value, which the
  former re-pack pass missed; the compiler's only such map holds no maps inside.)
* What ``ParseDict`` rejects is rejected here too, as a ``ProtoBuildError`` (a
  ``ValueError``; ``ProtoBuildTypeError`` is also a ``TypeError``) whose message starts with
  the path of the offending field (``Listener.filterChains[0].filters[0].typedConfig.statPrefx``):
  unknown fields, two members of one oneof, values of the wrong JSON type, unknown enum
  names, integers out of range, unknown ``"@type"``. A typo still fails at compile time
  instead of as an Envoy NACK. It is a little stricter than ``ParseDict`` in three corners:
  ``true``/``false`` are not accepted as numbers or enum values, a field given under both
  its JSON and its proto name is an error instead of "last one wins", and a well-known type
  inside an ``Any`` takes no keys besides ``"@type"`` and ``"value"``.

Not supported (never emitted by the compiler): proto2 extensions (``"[ext.name]"`` keys)
and ``pb.enumvalue.json`` custom enum names; both are reported as unknown.
"""
from __future__ import annotations

import base64
import difflib
import math
import re
from typing import Any, Callable, Mapping

from google.protobuf import descriptor_pool, duration_pb2, field_mask_pb2, message_factory, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["ProtoBuildError", "ProtoBuildTypeError", "build"]

TYPE_URL_PREFIX = "type.googleapis.com/"


class ProtoBuildError(ValueError):
    """A dict that is not valid proto3 JSON for the message type; ``str()`` starts with the field path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.segments: list[str] = []  # innermost first, appended while the error propagates

    @property
    def path(self) -> str:
        return "".join(reversed(self.segments))

    def __str__(self) -> str:
        path = self.path
        return f"{path}: {self.reason}" if path else self.reason


class ProtoBuildTypeError(ProtoBuildError, TypeError):
    """A value of the wrong JSON type for its field."""


def build(data: Mapping[str, Any], message_type: type[Message]) -> Message:
    """``message_type`` built from its proto3 JSON form ``data``; nested ``Any`` packed deterministically."""
    descriptor = message_type.DESCRIPTOR
    try:
        kwargs = _converter(descriptor)(data)
        return _construct(message_type, kwargs)
    except ProtoBuildError as error:
        error.segments.append(descriptor.name)
        raise


# A converter turns a JSON value into what the message constructor takes for that field: a
# scalar, a list, a dict of keyword arguments for a submessage (or of map entries), or, for
# a Struct, a message.
Converter = Callable[[Any], Any]

# descriptor -> converter (proto3 JSON value -> constructor argument). Compiled on first use
# of a message type and never invalidated (descriptors live as long as the process).
#
# The compiler runs on the event loop and in a reload thread, and it may not take locks (it
# is pure: tests/unit/test_import_rules.py). So each compilation works in a private
# ``_Compilation`` (its converters and field tables refer to each other, and a table is
# registered half-filled so that a message type can contain itself) and publishes all of it
# when it is complete: another thread never sees a table that is still being filled. Two
# threads compiling the same type at once each make a complete, equivalent set; the last
# one published wins, harmlessly.
_CONVERTERS: dict[Descriptor, Converter] = {}


class _Compilation:
    """What one compilation has made so far, published (to ``_CONVERTERS``/``_TABLES``) when done."""

    def __init__(self) -> None:
        self.converters: dict[Descriptor, Converter] = {}
        self.tables: dict[Descriptor, dict] = {}

    def converter(self, descriptor: Descriptor) -> Converter:
        converter = _CONVERTERS.get(descriptor)
        if converter is None:
            converter = self.converters.get(descriptor)
        if converter is None:
            converter = _compile_message(descriptor, self)
        return converter

    def publish(self) -> None:
        _TABLES.update(self.tables)
        _CONVERTERS.update(self.converters)


def _converter(descriptor: Descriptor) -> Converter:
    converter = _CONVERTERS.get(descriptor)
    if converter is None:
        compilation = _Compilation()
        converter = compilation.converter(descriptor)
        compilation.publish()
    return converter


def _construct(message_type: type[Message], kwargs: dict[str, Any] | Message) -> Message:
    if type(kwargs) is not dict:  # a Struct (see _convert_struct)
        return kwargs
    try:
        return message_type(**kwargs)
    except (ValueError, TypeError) as exc:  # a value the checks above let through (should not happen)
        raise ProtoBuildError(f"cannot build {message_type.DESCRIPTOR.full_name}: {exc}") from exc


# ---------------------------------------------------------------------------- errors


def _type_error(expected: str, value: Any) -> ProtoBuildTypeError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ProtoBuildTypeError(f"expected {expected}, got {type(value).__name__} {shown}")


def _unknown_field(descriptor: Descriptor, key: Any) -> ProtoBuildError:
    names = sorted({f.json_name for f in descriptor.fields} | {f.name for f in descriptor.fields})
    close = difflib.get_close_matches(str(key), names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    error = ProtoBuildError(f"{descriptor.full_name} has no field named {key!r}{hint}")
    error.segments.append(f".{key}")
    return error


# ---------------------------------------------------------------------------- scalars

_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_FLOAT32_MAX = float.fromhex("0x1.fffffep+127")
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _slow_int(value: Any) -> int:
    """``json_format``'s integer rules: integral floats and (integral) numeric strings are numbers too."""
    if isinstance(value, bool):
        raise _type_error("an integer", value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ProtoBuildError(f"not an integer: {value!r}")
        return int(value)
    if isinstance(value, str):
        if " " in value:
            raise ProtoBuildError(f"not an integer: {value!r}")
        try:
            return int(value)
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            raise ProtoBuildError(f"not an integer: {value!r}") from None
        if not number.is_integer():
            raise ProtoBuildError(f"not an integer: {value!r}")
        return int(number)
    raise _type_error("an integer", value)


def _int_converter(cpp_type: int) -> Converter:
    low, high = _INT_RANGES[cpp_type]

    def convert(value: Any) -> int:
        if type(value) is not int:
            value = _slow_int(value)
        if low <= value <= high:
            return value
        raise ProtoBuildError(f"integer {value} out of range [{low}, {high}]")

    return convert


def _float_converter(single: bool) -> Converter:
    def convert(value: Any) -> float:
        if type(value) is float:
            if math.isnan(value) or math.isinf(value):
                raise ProtoBuildError(f'{value!r} must be given as a string ("NaN", "Infinity", "-Infinity")')
            if single and not -_FLOAT32_MAX <= value <= _FLOAT32_MAX:
                raise ProtoBuildError(f"float value {value!r} out of range")
            return value
        if isinstance(value, bool):
            raise _type_error("a number", value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            special = _SPECIAL_FLOATS.get(value)
            if special is not None:
                return special
            if value.lower() != "nan":
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ProtoBuildError(f"not a number: {value!r}")
        raise _type_error("a number", value)

    return convert


def _convert_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    raise _type_error("true or false", value)


# json_format's rule: a lone surrogate cannot be encoded as UTF-8.
_UNPAIRED_SURROGATE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]")


def _convert_string(value: Any) -> str:
    if type(value) is str and value.isascii():
        return value
    if not isinstance(value, str):
        raise _type_error("a string", value)
    if _UNPAIRED_SURROGATE.search(value) is not None:
        raise ProtoBuildError(f"unpaired surrogate in {value!r}")
    return value


def _convert_bytes(value: Any) -> bytes:
    """Base64 (standard or URL-safe, padding optional), as ``json_format`` reads it."""
    if isinstance(value, str):
        encoded = value.encode("utf-8")
    elif isinstance(value, bytes):
        encoded = value
    else:
        raise _type_error("a base64 string", value)
    try:
        return base64.urlsafe_b64decode(encoded + b"=" * (4 - len(encoded) % 4))
    except ValueError as exc:
        raise ProtoBuildError(f"not base64: {value!r} ({exc})") from exc


def _enum_converter(enum_type) -> Converter:
    by_name = {value.name: value.number for value in enum_type.values}
    numbers = frozenset(value.number for value in enum_type.values)
    closed = enum_type.is_closed
    full_name = enum_type.full_name

    def convert(value: Any) -> int:
        number = by_name.get(value) if type(value) is str else None
        if number is not None:
            return number
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _type_error(f"a {full_name} name or number", value)
        try:
            number = int(value)
        except ValueError:
            raise ProtoBuildError(f"invalid enum value {value!r} for enum type {full_name} (one of {', '.join(by_name)})") from None
        if number not in numbers and closed:
            raise ProtoBuildError(f"invalid enum value {value!r} for enum type {full_name}")
        if not -(2**31) <= number <= 2**31 - 1:
            raise ProtoBuildError(f"enum number {number} out of range")
        return number

    return convert


def _scalar_converter(field: FieldDescriptor) -> Converter:
    cpp = field.cpp_type
    if cpp in _INT_RANGES:
        return _int_converter(cpp)
    if cpp == FieldDescriptor.CPPTYPE_FLOAT:
        return _float_converter(single=True)
    if cpp == FieldDescriptor.CPPTYPE_DOUBLE:
        return _float_converter(single=False)
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return _convert_bool
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        return _enum_converter(field.enum_type)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _convert_bytes
    return _convert_string


def _map_key_converter(field: FieldDescriptor) -> Converter:
    """Map keys are JSON object keys: strings, also for integer and bool keys."""
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_BOOL:

        def convert_bool_key(key: Any) -> bool:
            if key == "true":
                return True
            if key == "false":
                return False
            raise ProtoBuildError(f'map key must be "true" or "false", not {key!r}')

        return convert_bool_key
    return _scalar_converter(field)


# ---------------------------------------------------------------------------- fields


def _field_converter(field: FieldDescriptor, compilation: _Compilation) -> Converter:
    """The converter of one field's JSON value (a list for repeated fields, an object for maps)."""
    message_type = field.message_type
    if message_type is not None and message_type.GetOptions().map_entry:
        return _map_converter(field, compilation)
    item = compilation.converter(message_type) if message_type is not None else _scalar_converter(field)
    if not field.is_repeated:
        return item
    nullable_items = message_type is not None and message_type.full_name == "google.protobuf.Value"

    def convert_list(value: Any) -> list:
        if type(value) is not list and not isinstance(value, (list, tuple)):
            raise _type_error("a list", value)
        out = []
        for index, element in enumerate(value):
            if element is None and not nullable_items:
                error = ProtoBuildError("null is not allowed in a repeated field")
                error.segments.append(f"[{index}]")
                raise error
            try:
                out.append(item(element))
            except ProtoBuildError as error:
                error.segments.append(f"[{index}]")
                raise
        return out

    return convert_list


def _map_converter(field: FieldDescriptor, compilation: _Compilation) -> Converter:
    entry = field.message_type
    key_converter = _map_key_converter(entry.fields_by_name["key"])
    value_field = entry.fields_by_name["value"]
    value_converter = compilation.converter(value_field.message_type) if value_field.message_type is not None else _scalar_converter(value_field)

    def convert_map(value: Any) -> dict:
        if not isinstance(value, Mapping):
            raise _type_error("an object (map)", value)
        out = {}
        for key, item in value.items():
            try:
                out[key_converter(key)] = value_converter(item)
            except ProtoBuildError as error:
                error.segments.append(f"[{key!r}]")
                raise
        return out

    return convert_map


# ---------------------------------------------------------------------------- messages


def _compile_message(descriptor: Descriptor, compilation: _Compilation) -> Converter:
    special = _WELL_KNOWN.get(descriptor.full_name)
    if special is not None:
        converter = special(descriptor)
    elif descriptor.file.name == "google/protobuf/wrappers.proto":
        converter = _wrapper_converter(descriptor)
    else:
        converter = _regular_converter(descriptor, compilation)  # registers itself before compiling its fields
    compilation.converters[descriptor] = converter
    return converter


# A field's table entry: (proto field name, converter, oneof name or None, what null means,
# whether it is a singular string field: those are the most common values, taken inline).
_NULL_CLEARS, _NULL_VALUE, _NULL_ENUM = 0, 1, 2


def _regular_converter(descriptor: Descriptor, compilation: _Compilation, *, inside_any: bool = False) -> Converter:
    """A message's fields: the table is compiled once; converting is a loop over the dict's keys.

    ``inside_any``: the variant for the body of a typed ``Any``, which skips its ``"@type"``.
    """
    table: dict[str, tuple[str, Converter, str | None, int, bool]]

    def convert(value: Any) -> dict[str, Any]:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise _type_error(f"an object ({descriptor.full_name})", value)
        out: dict[str, Any] = {}
        oneofs = None
        for key, item in value.items():
            entry = table.get(key)
            if entry is None:
                if inside_any and key == "@type":
                    continue
                raise _unknown_field(descriptor, key)
            name, field_converter, oneof, null, string = entry
            if name in out:
                error = ProtoBuildError(f"field {name} given twice (as its JSON name and its proto name)")
                error.segments.append(f".{key}")
                raise error
            if item is None:
                if null == _NULL_VALUE:
                    out[name] = {"null_value": 0}
                elif null == _NULL_ENUM:
                    out[name] = 0
                continue  # null clears the field, as in json_format
            if oneof is not None:
                if oneofs is None:
                    oneofs = {oneof: key}
                elif oneof in oneofs:
                    error = ProtoBuildError(f"{key!r} and {oneofs[oneof]!r} are both members of oneof {oneof!r} of {descriptor.full_name}")
                    error.segments.append(f".{key}")
                    raise error
                else:
                    oneofs[oneof] = key
            if string and type(item) is str and item.isascii():
                out[name] = item
                continue
            try:
                out[name] = field_converter(item)
            except ProtoBuildError as error:
                error.segments.append(f".{key}")
                raise
        return out

    if not inside_any:
        compilation.converters[descriptor] = convert  # before the fields: a message type may contain itself
    table = _regular_table(descriptor, compilation)  # shared with the other variant; filled in place
    return convert


# descriptor -> its compiled field table, shared by the plain and the inside-an-Any converter.
_TABLES: dict[Descriptor, dict[str, tuple[str, Converter, str | None, int, bool]]] = {}


def _regular_table(descriptor: Descriptor, compilation: _Compilation) -> dict[str, tuple[str, Converter, str | None, int, bool]]:
    table = _TABLES.get(descriptor)
    if table is None:
        table = compilation.tables.get(descriptor)
    if table is not None:
        return table
    table = {}
    compilation.tables[descriptor] = table  # a message type that contains itself finds its (partly filled) table
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.full_name == "google.protobuf.Value" and not field.is_repeated:
            null = _NULL_VALUE
        elif field.enum_type is not None and field.enum_type.full_name == "google.protobuf.NullValue" and not field.is_repeated:
            null = _NULL_ENUM
        else:
            null = _NULL_CLEARS
        oneof = field.containing_oneof
        string = field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated
        entry = (field.name, _field_converter(field, compilation), oneof.name if oneof is not None else None, null, string)
        table[field.json_name] = entry
        table[field.name] = entry
    return table


# ---------------------------------------------------------------------------- Any

# type URL -> (message class, converter of the Any's JSON object, canonical type URL, is WKT)
_ANY_TARGETS: dict[str, tuple[type[Message], Converter, str, bool]] = {}


def _any_target(type_url: Any) -> tuple[type[Message], Converter, str, bool]:
    target = _ANY_TARGETS.get(type_url)
    if target is not None:
        return target
    if not isinstance(type_url, str):
        raise _type_error("a type URL string for @type", type_url)
    name = type_url.split("/")[-1]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        raise ProtoBuildError(f"unknown @type {type_url!r} (is its _pb2 module imported?)") from None
    message_class = message_factory.GetMessageClass(descriptor)
    wkt = descriptor.full_name in _WELL_KNOWN or descriptor.file.name == "google/protobuf/wrappers.proto"
    if wkt:
        converter = _converter(descriptor)
    else:
        compilation = _Compilation()
        converter = _regular_converter(descriptor, compilation, inside_any=True)
        compilation.publish()
    target = (message_class, converter, TYPE_URL_PREFIX + descriptor.full_name, wkt)
    _ANY_TARGETS[type_url] = target  # complete by now; only known types are cached: an import may register more later
    return target


def _any_converter(descriptor: Descriptor) -> Converter:
    def convert_any(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _type_error("an object with @type", value)
        if not value:
            return {}  # {} is an empty Any, as in json_format
        if "@type" not in value:
            raise ProtoBuildError("@type is missing")
        message_class, converter, type_url, wkt = _any_target(value["@type"])
        if wkt:
            if "value" not in value:
                raise ProtoBuildError(f"a {type_url} in an Any takes its JSON form as \"value\"")
            extra = set(value) - {"@type", "value"}
            if extra:
                raise ProtoBuildError(f"unexpected keys {sorted(extra)} beside @type and value")
            try:
                kwargs = converter(value["value"])
            except ProtoBuildError as error:
                error.segments.append(".value")
                raise
        else:
            kwargs = converter(value)
        inner = _construct(message_class, kwargs)
        # What Any.Pack(inner, deterministic=True) stores: canonical map order inside the bytes.
        return {"type_url": type_url, "value": inner.SerializeToString(deterministic=True)}

    return convert_any


# ---------------------------------------------------------------------------- other well-known types

_DURATION_CACHE: dict[str, dict[str, int]] = {}
_DURATION_CACHE_LIMIT = 4096


def _duration_converter(descriptor: Descriptor) -> Converter:
    def convert_duration(value: Any) -> dict[str, int]:
        cached = _DURATION_CACHE.get(value) if type(value) is str else None
        if cached is not None:
            return cached
        if not isinstance(value, str):
            raise _type_error('a duration string ("1.5s")', value)
        parsed = duration_pb2.Duration()
        try:
            parsed.FromJsonString(value)
        except ValueError as exc:
            raise ProtoBuildError(str(exc)) from None
        result = {"seconds": parsed.seconds, "nanos": parsed.nanos}
        if len(_DURATION_CACHE) < _DURATION_CACHE_LIMIT:
            _DURATION_CACHE[value] = result  # shared: constructor arguments are never modified
        return result

    return convert_duration


def _timestamp_converter(descriptor: Descriptor) -> Converter:
    def convert_timestamp(value: Any) -> dict[str, int]:
        if not isinstance(value, str):
            raise _type_error('an RFC 3339 timestamp string', value)
        parsed = timestamp_pb2.Timestamp()
        try:
            parsed.FromJsonString(value)
        except ValueError as exc:
            raise ProtoBuildError(str(exc)) from None
        return {"seconds": parsed.seconds, "nanos": parsed.nanos}

    return convert_timestamp


def _field_mask_converter(descriptor: Descriptor) -> Converter:
    def convert_field_mask(value: Any) -> dict[str, list[str]]:
        if not isinstance(value, str):
            raise _type_error('a field mask string ("a.b,c")', value)
        parsed = field_mask_pb2.FieldMask()
        try:
            parsed.FromJsonString(value)
        except ValueError as exc:
            raise ProtoBuildError(str(exc)) from None
        return {"paths": list(parsed.paths)}

    return convert_field_mask


def _wrapper_converter(descriptor: Descriptor) -> Converter:
    """``google.protobuf.UInt32Value`` and friends: JSON gives the bare value."""
    convert_value = _scalar_converter(descriptor.fields_by_name["value"])

    def convert_wrapper(value: Any) -> dict[str, Any]:
        return {"value": convert_value(value)}

    return convert_wrapper


def _convert_struct(value: Any) -> struct_pb2.Struct:
    """A Struct *instance*: the upb constructor reads a plain dict given for a singular Struct
    field as the Struct's JSON content (``Struct.update``), not as its ``fields`` keyword."""
    if not isinstance(value, Mapping):
        raise _type_error("an object (Struct)", value)
    fields = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _type_error("a string Struct key", key)
        try:
            fields[key] = _convert_value(item)
        except ProtoBuildError as error:
            error.segments.append(f".{key}")
            raise
    return struct_pb2.Struct(fields=fields)


def _convert_list_value(value: Any) -> dict[str, Any]:
    if not isinstance(value, (list, tuple)):
        raise _type_error("a list (ListValue)", value)
    values = []
    for index, item in enumerate(value):
        try:
            values.append(_convert_value(item))
        except ProtoBuildError as error:
            error.segments.append(f"[{index}]")
            raise
    return {"values": values}


def _convert_value(value: Any) -> dict[str, Any]:
    """``google.protobuf.Value``: any JSON value (the order of checks is ``json_format``'s)."""
    if isinstance(value, Mapping):
        return {"struct_value": _convert_struct(value)}
    if isinstance(value, (list, tuple)):
        return {"list_value": _convert_list_value(value)}
    if value is None:
        return {"null_value": 0}
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, str):
        return {"string_value": _convert_string(value)}
    if isinstance(value, (int, float)):
        return {"number_value": value}
    raise _type_error("a JSON value", value)


_WELL_KNOWN: dict[str, Callable[[Descriptor], Converter]] = {
    "google.protobuf.Any": _any_converter,
    "google.protobuf.Duration": _duration_converter,
    "google.protobuf.Timestamp": _timestamp_converter,
    "google.protobuf.FieldMask": _field_mask_converter,
    "google.protobuf.Struct": lambda descriptor: _convert_struct,
    "google.protobuf.ListValue": lambda descriptor: _convert_list_value,
    "google.protobuf.Value": lambda descriptor: _convert_value,
}
