"""Bytes → TelemetryEvent, or a dead letter that keeps the original bytes and says why."""

from __future__ import annotations

import base64
import types
import typing
from typing import Any

import annotated_types
import orjson
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from detectors import native
from models.config import format_validation_error
from models.telemetry import KEY_SUBJECT_PARTS, KEY_SUBJECT_SEPARATOR, TelemetryEvent
from models.timestamps import EVENT_TIMESTAMP_TYPE
from streams.records import Channel, OutputRecord, SourceRecord

MAX_EVENT_BYTES = 1 << 20
"""No API call's telemetry is this large; bigger records are refused before parsing."""


class InvalidRecord(ValueError):
    """Why a record is not a TelemetryEvent: the field and the reason."""


_KINDS: dict[Any, str] = {str: "text", int: "integer", float: "number", EVENT_TIMESTAMP_TYPE: "timestamp"}


def _fast_path_field(
    model: str, name: str, info: FieldInfo
) -> tuple[str, str, bool, int | None, int | None, Any, Any]:
    """What the compiled decoder must check of one field: its kind, whether null or absent is allowed (as None),
    and its bounds. A field it could not check exactly stops the import, so no constraint is ever skipped."""
    if info.alias is not None or info.validation_alias is not None:
        raise TypeError(f"{model}.{name}: the decoder's fast path reads fields by their names")
    annotation, optional = info.annotation, False
    if isinstance(annotation, types.UnionType) and type(None) in typing.get_args(annotation):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        annotation, optional = members[0] if len(members) == 1 else annotation, True
    kind = _KINDS.get(annotation)
    if kind is None or optional != (not info.is_required()) or (optional and info.default is not None):
        raise TypeError(f"{model}.{name}: the decoder's fast path has no exact check for {info.annotation}")
    minimum = maximum = ge = le = None
    for bound in info.metadata:
        if isinstance(bound, annotated_types.MinLen):
            minimum = bound.min_length
        elif isinstance(bound, annotated_types.MaxLen):
            maximum = bound.max_length
        elif isinstance(bound, annotated_types.Ge):
            ge = bound.ge
        elif isinstance(bound, annotated_types.Le):
            le = bound.le
        elif kind != "timestamp":  # the timestamp's own metadata (its parsing) is the fast path's format
            raise TypeError(f"{model}.{name}: the decoder's fast path cannot check {bound}")
    return name, kind, optional, minimum, maximum, ge, le


_FAST_PATH_SETTINGS: dict[str, tuple[object, ...]] = {
    "extra": ("allow",),
    "frozen": (True,),
    "str_strip_whitespace": (False,),
}
"""The model settings the fast path builds events under; any other setting (strict, str_to_lower, ...) stops it.
Frozen, since its events share their fields set and their (empty) extra fields."""

_ONE_PER_CALL = ("event_id", "resource_id", "prompt")
"""Text fields whose values seldom recur (a call's id, the object it made, a prompt, which the minor-safety scorer
caches by digest): the compiled decoder makes them fresh. In its cache of recent strings, each was a miss that
pushed out a value that recurs."""


def _fast_decoder(model: type[BaseModel]) -> native.EventDecoder:
    """The compiled decoder for the model's plain records; anything it cannot check is refused here."""
    config, decorators = model.model_config, model.__pydantic_decorators__
    validators = (decorators.validators, decorators.field_validators, decorators.model_validators)
    settings_apply = all(value in _FAST_PATH_SETTINGS.get(key, ()) for key, value in config.items())
    hooks = model.__private_attributes__ or model.__pydantic_post_init__ is not None or any(validators)
    if config.get("extra") != "allow" or not settings_apply or hooks:
        raise TypeError(f"{model.__name__}: the decoder's fast path does not apply the model's settings")
    fields = [_fast_path_field(model.__name__, name, info) for name, info in model.model_fields.items()]
    joined = ("key_subject", KEY_SUBJECT_SEPARATOR, list(KEY_SUBJECT_PARTS))
    one_per_call = [name for name in _ONE_PER_CALL if name in model.model_fields]
    return native.EventDecoder(model, fields, "ts_ms", joined, one_per_call)


_FAST_DECODER = _fast_decoder(TelemetryEvent)


def decode_event(value: bytes | None) -> TelemetryEvent:
    """The event a record holds; InvalidRecord, with the field and the reason, when it holds none.

    Records in the plain shape (nearly all) are built by the compiled decoder, exactly as pydantic would build
    them; the rest, the invalid ones included, go through pydantic, whose answer is the contract."""
    event = None if value is None or len(value) > MAX_EVENT_BYTES else _FAST_DECODER.decode(value)
    return _validated(value) if event is None else event


def decode_events(values: list[bytes | None]) -> list[TelemetryEvent | InvalidRecord]:
    """``decode_event`` of each record of a batch, the plain ones in one compiled call; in an invalid record's
    place, its error."""
    decoded, declined = _FAST_DECODER.decode_batch(values, MAX_EVENT_BYTES)
    for at in declined:
        try:
            decoded[at] = _validated(values[at])
        except InvalidRecord as error:
            decoded[at] = error
    return decoded


def _validated(value: bytes | None) -> TelemetryEvent:
    """pydantic's event, for a record the compiled decoder declined."""
    if value is None:
        raise InvalidRecord("record has no value (a tombstone)")
    if len(value) > MAX_EVENT_BYTES:
        raise InvalidRecord(f"record too large: {len(value)} bytes > {MAX_EVENT_BYTES}")
    try:
        return TelemetryEvent.model_validate_json(value)
    except ValidationError as error:
        raise InvalidRecord(format_validation_error(error).replace("\n", "; ")) from None


def dead_letter(record: SourceRecord, reason: str, source_name: str) -> OutputRecord:
    """A dead letter keeps the exact original bytes; where it came from and why travel in headers."""
    headers = (
        ("reason", reason.encode()),
        ("source", source_name.encode()),
        ("partition", str(record.partition).encode()),
        ("offset", str(record.offset).encode()),
    )
    return OutputRecord(Channel.DEAD_LETTERS, record.key, record.value, headers)


def dead_letter_json(letter: OutputRecord) -> bytes:
    """A dead letter as one JSON line (file sinks): the headers as fields, the original as text or base64."""
    fields: dict[str, Any] = {name: value.decode() for name, value in letter.headers}
    document: dict[str, Any] = {
        "source": fields.get("source"),
        "partition": int(fields.get("partition", 0)),
        "offset": int(fields.get("offset", 0)),
        "reason": fields.get("reason"),
        "size": len(letter.value or b""),
    }
    try:
        document["original"] = (letter.value or b"").decode("utf-8")
    except UnicodeDecodeError:
        document["original_base64"] = base64.b64encode(letter.value or b"").decode("ascii")
    return orjson.dumps(document)
