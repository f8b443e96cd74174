"""The loop's EMF metrics and JSON logs (`asyncloop._emf`)."""

from __future__ import annotations

import json

from asyncloop._emf import emf_record, log

# -- EMF and logs ---------------------------------------------------------------------------


def test_emf_record_declares_every_metric_under_its_dimensions() -> None:
    doc = emf_record(
        {"received": 3, "backlog": 10},
        dimensions={"Queue": "work"},
        properties={"loop_id": "L"},
        timestamp_ms=5,
    )

    meta = doc["_aws"]["CloudWatchMetrics"][0]
    assert doc["_aws"]["Timestamp"] == 5
    assert meta["Dimensions"] == [["Queue"]]
    assert {m["Name"] for m in meta["Metrics"]} == {"received", "backlog"}
    assert (doc["Queue"], doc["received"], doc["loop_id"]) == ("work", 3, "L")


def test_logs_never_carry_bodies_or_receipt_handles() -> None:
    lines: list[str] = []

    log("x", write=lines.append, message_id="m", body="SECRET", nested={"ReceiptHandle": "RH"})

    assert "SECRET" not in lines[0]
    assert "RH" not in lines[0]
    assert json.loads(lines[0])["message_id"] == "m"
