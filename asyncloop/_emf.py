"""CloudWatch Embedded Metric Format and structured JSON logs, one line each on stdout.

Lambda ships stdout to CloudWatch Logs, which turns EMF lines into metrics with no API call
(no latency, no throttling, no extra permission). Logs carry ids, counts and reasons, never a
message body or a receipt handle: `log` drops those keys wherever they appear.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ("NAMESPACE", "emf_record", "emit_metrics", "log")

NAMESPACE = "asyncloop"

# Keys whose values may hold a message's content or a credential-like handle.
_REDACTED = frozenset({"body", "Body", "receipt_handle", "ReceiptHandle", "receiptHandle"})

# Units CloudWatch knows; anything not listed is a plain count.
_UNITS = {"backlog": "Count", "generation": "None", "run_seconds": "Seconds"}

Writer = Callable[[str], None]


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _scrub(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _scrub(v) for k, v in value.items() if k not in _REDACTED}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def emf_record(
    metrics: Mapping[str, float | int],
    *,
    dimensions: Mapping[str, str],
    properties: Mapping[str, Any] | None = None,
    namespace: str = NAMESPACE,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """The EMF document: the ``_aws`` metadata, the dimension values and the metric values."""
    doc: dict[str, Any] = dict(_scrub(properties or {}))
    doc.update(dimensions)
    doc.update(metrics)
    doc["_aws"] = {
        "Timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        "CloudWatchMetrics": [
            {
                "Namespace": namespace,
                "Dimensions": [sorted(dimensions)],
                "Metrics": [{"Name": name, "Unit": _UNITS.get(name, "Count")} for name in metrics],
            }
        ],
    }
    return doc


def emit_metrics(
    metrics: Mapping[str, float | int],
    *,
    dimensions: Mapping[str, str],
    properties: Mapping[str, Any] | None = None,
    namespace: str = NAMESPACE,
    write: Writer = _stdout,
) -> None:
    """Write one EMF line."""
    record = emf_record(metrics, dimensions=dimensions, properties=properties, namespace=namespace)
    write(json.dumps(record, separators=(",", ":"), default=str))


def log(event: str, *, level: str = "INFO", write: Writer = _stdout, **fields: Any) -> None:
    """Write one structured JSON log line: ``{"level", "event", ...fields}``, bodies removed."""
    doc = {"level": level, "event": event, **_scrub(fields)}
    write(json.dumps(doc, separators=(",", ":"), default=str))
