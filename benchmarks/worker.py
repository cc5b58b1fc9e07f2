"""One measurement in a fresh interpreter: ``python -m benchmarks.worker NAME JSON_PARAMS``.

Prints one JSON object on stdout. ``loop`` in the params selects ``asyncio`` or ``uvloop``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from typing import Any

#: name -> (module, coroutine function); imported lazily so a worker loads only its scenario.
WORKERS = {
    "punctuality": ("benchmarks.punctuality", "measure"),
    "overhead": ("benchmarks.overhead", "measure"),
    "rss": ("benchmarks.overhead", "measure_rss"),
    "valkey": ("benchmarks.valkey", "measure"),
    "downtime": ("benchmarks.downtime", "measure"),
    "valkey_protocol": ("benchmarks.valkey_protocol", "measure_async"),
    "ledger": ("benchmarks.ledger", "measure"),
}


def run(name: str, params: dict[str, Any]) -> Any:
    module, attr = WORKERS[name]
    loop_kind = params.pop("loop", "asyncio")
    fn = getattr(importlib.import_module(module), attr)
    if loop_kind == "uvloop":
        import uvloop

        return uvloop.run(fn(**params))
    return asyncio.run(fn(**params))


def main() -> None:
    name, raw = sys.argv[1], sys.argv[2]
    result = run(name, json.loads(raw))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
