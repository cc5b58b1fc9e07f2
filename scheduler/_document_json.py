"""The stored JSON of a light document (JobState and its parts), without its pydantic twin.

Every run saves two states. Encoding one through its twin (build the model, then
``model_dump_json``) costs about twice what this does: here the document's values are laid
out as plain JSON values (instants as text, nested documents as dicts) and handed to
pydantic-core's own encoder, the one ``model_dump_json`` ends in. The text is byte for byte
the twin's ``model_dump_json()`` (a property test pins it), so a document reads back the same
whichever wrote it. What this must do as the twin does:

* fields in the order of the instance's values (pydantic follows the values, not the class),
  ``revision`` left out, the fields this release does not know last;
* instants through ``format_utc`` (the twins' serializer), enum members as their values (what
  the encoder writes for them); any other value (the schedule spec, unknown fields) as
  pydantic infers it, which is what its encoder does here too;
* compact separators, non-ASCII characters as they are, inf and nan as null.

pydantic-core is imported on the first save, never by the in-memory run.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from ._document import EXTRA, Document
from ._time import format_utc

#: Per document class: its instant fields (None or an aware datetime); its enum fields, handed
#: to the encoder as their values (the text is the same, a member being written as its value,
#: and a member costs the encoder several times what its value does: about half of a state's
#: encoding time); whether it holds documents (``in_flight``: one or None, ``open_runs``: a
#: tuple of them). One lookup per document.
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "JobState": (
        ("last_run_at", "last_success_at", "next_run_at", "last_skip_at"),
        ("last_status", "last_skip_reason"),
        True,
    ),
    "InFlight": (("occurrence", "started_at"), (), False),
    "OpenRun": (("occurrence",), ("source",), False),
}

#: pydantic-core's ``to_json``, once imported (called directly: no wrapper frame per state).
_to_json: Callable[..., bytes] | None = None


def document_json(document: Document) -> str:
    """The stored text of ``document``: what its pydantic twin's ``model_dump_json()`` returns."""
    return (_to_json or _encoder())(plain_values(document), inf_nan_mode="null").decode()


def _encoder() -> Callable[..., bytes]:
    global _to_json
    from pydantic_core import to_json

    _to_json = to_json
    return to_json


def plain_values(document: Document) -> dict[str, Any]:
    """The document as the values its JSON holds, in the order pydantic writes them."""
    values = document.__dict__.copy()
    extra = values.pop(EXTRA)
    values.pop("revision", None)
    instants, enums, nested = _FIELDS[type(document).__name__]
    for name in instants:
        value = values[name]
        if value is not None:
            values[name] = format_utc(value)
    for name in enums:
        value = values[name]
        if isinstance(value, Enum):
            values[name] = value._value_  # the value, without the ``value`` property's call
    if nested:
        value = values["in_flight"]
        if value is not None:
            values["in_flight"] = plain_values(value)
        value = values["open_runs"]
        if value:
            values["open_runs"] = [plain_values(v) for v in value]
    if extra:
        values.update(extra)
    return values
