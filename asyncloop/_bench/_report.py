"""The outputs of a run: results.json (checked against results.schema.json), plot.png and
report.md (`write_outputs`), and reading a results file back (`load_results`).

matplotlib is optional (the ``plot`` extra): without it everything but the PNG is written and
the report says how to get it. The tables are `_tables`'s, the plot `_plot`'s, the comparison
of two results files `_compare`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from ._plot import write_plot
from ._tables import format_full_table, format_table

__all__ = ("SCHEMA_PATH", "SCHEMA_VERSION", "load_results", "validate", "write_outputs")

SCHEMA_PATH: Final = Path(__file__).with_name("results.schema.json")
# Kept equal to asyncloop._bench._summary.SCHEMA_VERSION (a test checks it); not imported from
# there, so reading results does not import the library.
SCHEMA_VERSION: Final = 2
_PLOT_HINT: Final = "no plot: matplotlib is missing (pip install 'asyncloop[plot]')"


def validate(doc: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if `doc` does not match results.schema.json."""
    import jsonschema  # type: ignore[import-untyped]

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(doc, schema)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results.json; ValueError if it is not one (wrong schema or version)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != "asyncloop-bench":
        raise ValueError(f"{path} is not an asyncloop bench results file")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"{path} has schema_version {doc.get('schema_version')!r}; expected {SCHEMA_VERSION} "
            "(re-run the benchmark that made it)"
        )
    return doc


def _report_md(doc: dict[str, Any], plot: str | None) -> str:
    machine = doc["machine"]
    params = doc["parameters"]
    versions = ", ".join(f"{k} {v}" for k, v in doc["versions"].items() if v)
    command = " ".join(doc.get("command") or ["asyncloop", "bench"])
    parts = [
        f"# asyncloop bench: {params['target']}",
        "",
        f"- created: {doc['created_at']}",
        f"- command: `{command}`",
        f"- machine: {machine.get('cpu_model')}, {machine.get('cpu_count')} CPUs, "
        f"{machine.get('platform')}; load average at start {machine.get('loadavg_start')}, "
        f"at end {machine.get('loadavg_end')}",
        f"- versions: {versions}",
        "",
        "## Summary",
        "",
        "```",
        format_table(doc),
        "```",
        "",
        "## Every column",
        "",
        "```",
        format_full_table(doc),
        "```",
        "",
    ]
    parts.append(f"![msgs/s and p99 against max in flight]({plot})" if plot else _PLOT_HINT)
    parts.append("")
    return "\n".join(parts)


def write_outputs(doc: dict[str, Any], out: Path) -> dict[str, Path | None]:
    """Write results.json, plot.png (if matplotlib is there) and report.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    results.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    plot: Path | None = out / "plot.png"
    assert plot is not None
    if not write_plot(doc, plot):
        plot = None
    report = out / "report.md"
    report.write_text(_report_md(doc, plot.name if plot else None), encoding="utf-8")
    return {"results": results, "plot": plot, "report": report}
