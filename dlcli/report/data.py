"""The data report of `dlcli validate --data-report` as plain text: files, then splits, then duplicates."""

from __future__ import annotations

from typing import Any


def render_data_report(report: dict[str, Any]) -> str:
    """A few lines per file and per split; warnings (missing cells, constant columns, duplicates) marked '!'."""
    lines = ["data report"]
    for key, file in report["files"].items():
        what = file.get("path") or f"dataset {file.get('name')}"
        facts = {k: v for k, v in file.items() if k not in ("path", "name")}
        lines.append(f"  data.{key}: {what} ({facts.pop('reader', 'registry')})")
        for name, value in facts.items():
            if value or value == 0:
                marker = "!" if name in ("missing_cells", "constant_columns") else " "
                lines.append(f"   {marker} {name}: {_short(value)}")
    for name, split in report["splits"].items():
        lines.append(f"  {name}: {split['examples']:,} examples")
        for input_name, facts in split["inputs"].items():
            constant = facts.get("constant_features")
            note = f"; ! {constant['count']} of {constant['of']} features constant ({_short(constant['first'])})" \
                if constant and constant["count"] else ""
            lines.append(f"    input {input_name}: {facts['shape']} {facts['dtype']}{note}")
            for name, value in facts.items():  # what a lazy array tells of itself (image sizes, text lengths)
                if name not in ("shape", "dtype", "constant_features"):
                    lines.append(f"      {name}: {_short(value)}")
        for output, facts in split["targets"].items():
            if "classes" in facts:
                total = sum(facts["classes"].values())
                shares = ", ".join(f"{label} {count:,} ({count / total:.1%})"
                                   for label, count in facts["classes"].items())
                flag = "!" if facts["largest_to_smallest"] >= 3 else " "
                lines.append(f"  {flag} target {output}: {shares}")
            elif "range" in facts:
                r = facts["range"]
                lines.append(f"    target {output}: {r['min']:.4g} to {r['max']:.4g}, mean {r['mean']:.4g}, "
                             f"std {r['std']:.4g}")
            else:
                lines.append(f"    target {output}: {facts['label_sequences']:,} label sequences")
        for output, r in split.get("weights", {}).items():
            lines.append(f"    weights {output}: {r['min']:.4g} to {r['max']:.4g}, mean {r['mean']:.4g}")
    for name, found in report["duplicates"].items():
        if not found["checked"]:
            lines.append(f"  duplicates train/{name}: not checked ({found['reason']})")
        else:
            flag = "!" if found["count"] else " "
            first = f" (first: {_short(found['first'])})" if found["count"] else ""
            lines.append(f"  {flag}duplicates train/{name}: {found['count']:,} of {found['of']:,} {name} examples "
                         f"have inputs equal to a training example's{first}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
