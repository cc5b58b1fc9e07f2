"""The pydantic models that validate, encode and decode JobState documents.

Imported on first need only (a persistent store, the public constructor, ``model_validate``):
the run loop itself works on the light classes of ``_state`` and never imports pydantic. The
models carry the same names as the light classes, so their error messages read the same.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    field_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from ._document import DOCUMENTS, EXTRA, NEWER_SCHEMA, SCHEMA_VERSION, Document
from ._enums import RunSkipReason, RunStatus, TriggerSource
from ._time import format_utc

D = TypeVar("D", bound=Document)
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_instant(value: Any) -> Any:
    """Accept RFC 3339 with up to 9 fractional digits (the reference system writes 9)."""
    if isinstance(value, str):
        value = _FRACTION.sub(r"\1", value.strip())
        value = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    if isinstance(value, datetime):
        # Stored documents are UTC; a naive value in one can only mean UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


Instant = Annotated[
    datetime,
    BeforeValidator(_parse_instant),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]


class InFlight(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    occurrence: Instant
    started_at: Instant
    attempt: int = 1


class OpenRun(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    occurrence: Instant
    instance: str
    trigger_count: int = 0
    source: TriggerSource = TriggerSource.SCHEDULED
    catch_up: bool = False


class JobState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    job_id: str
    trigger_count: int = Field(default=0, ge=0)
    last_run_at: Instant | None = None
    last_success_at: Instant | None = None
    next_run_at: Instant | None = None
    last_error: str | None = None
    last_status: RunStatus | None = None
    consecutive_failures: int = Field(default=0, ge=0)
    schedule_fingerprint: str | None = None
    in_flight: InFlight | None = None
    schedule_spec: dict[str, Any] | None = None
    runs_started: int = Field(default=0, ge=0)
    skips: dict[str, int] = Field(default_factory=dict)
    last_skip_at: Instant | None = None
    last_skip_reason: RunSkipReason | None = None
    interrupted: int = Field(default=0, ge=0)
    open_runs: tuple[OpenRun, ...] = ()
    schema_version: int = SCHEMA_VERSION
    revision: int = Field(default=0, ge=0, exclude=True)

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise PydanticCustomError(
                NEWER_SCHEMA,
                "schema_version {version} is newer than {supported}, the newest this release reads",
                {"version": value, "supported": SCHEMA_VERSION},
            )
        return value


#: The twin of each light class, by their common name.
_TWINS: dict[str, type[BaseModel]] = {model.__name__: model for model in (InFlight, OpenRun, JobState)}


def model_of(cls: type[Document]) -> type[BaseModel]:
    return _TWINS[cls.__name__]


def to_model(document: Document) -> BaseModel:
    """The pydantic twin of ``document`` (not validated again: its values are valid)."""
    model = _TWINS[type(document).__name__]
    values = document.__dict__.copy()
    extra = values.pop(EXTRA)
    for name, value in values.items():
        if isinstance(value, Document):
            values[name] = to_model(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], Document):
            values[name] = tuple(to_model(v) for v in value)
    built = object.__new__(model)
    object.__setattr__(built, "__dict__", values)
    object.__setattr__(built, "__pydantic_fields_set__", set(values))
    object.__setattr__(built, "__pydantic_extra__", {} if extra is None else extra)
    object.__setattr__(built, "__pydantic_private__", None)
    return built


def _values_of(model: BaseModel) -> dict[str, Any]:
    """The light values of a validated model (its nested models made light too)."""
    values = model.__dict__.copy()
    for name, value in values.items():
        if isinstance(value, BaseModel):
            values[name] = _from_model(value)
        elif isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
            values[name] = tuple(_from_model(v) for v in value)
    values[EXTRA] = model.__pydantic_extra__ or None
    return values


def _from_model(model: BaseModel) -> Any:
    return DOCUMENTS[type(model).__name__]._of(_values_of(model))


def _prepared(data: Any) -> Any:
    """Input with light documents inside replaced by their models (taken as already valid)."""
    if not isinstance(data, dict):
        return data
    prepared = dict(data)
    for name, value in data.items():
        if isinstance(value, Document):
            prepared[name] = to_model(value)
        elif isinstance(value, tuple | list) and any(isinstance(v, Document) for v in value):
            prepared[name] = type(value)(to_model(v) if isinstance(v, Document) else v for v in value)
    return prepared


def validated_values(cls: type[Document], data: dict[str, Any]) -> dict[str, Any]:
    """The values of a new ``cls`` built from keyword arguments (pydantic's ValidationError if invalid)."""
    return _values_of(model_of(cls).model_validate(_prepared(data)))


def validate(cls: type[D], obj: Any, **options: Any) -> D:
    built: D = _from_model(model_of(cls).model_validate(_prepared(obj), **options))
    return built


def validate_json(cls: type[D], data: str | bytes | bytearray, **options: Any) -> D:
    built: D = _from_model(model_of(cls).model_validate_json(data, **options))
    return built


def core_schema_of(cls: type[Document], handler: GetCoreSchemaHandler) -> CoreSchema:
    """A light class as a field of another pydantic model: validated and dumped by its twin."""
    inner = handler.generate_schema(model_of(cls))
    from_model = core_schema.no_info_after_validator_function(_from_model, inner)
    return core_schema.json_or_python_schema(
        json_schema=from_model,
        python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_model]),
        serialization=core_schema.plain_serializer_function_ser_schema(to_model, return_schema=inner),
    )
