"""A rehearsal report as JUnit XML, the format CI systems show as tests: one test case
per drill (and per archive proof), one failure per reason, the change's effect in
system-out. Written beside the JSON report."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def write(report: dict, path: Path) -> Path:
    rows = report["rows"]
    failures = sum(1 for r in rows if not r["ok"])
    attrs = {"tests": str(len(rows)), "failures": str(failures), "errors": "0", "skipped": "0",
             "time": f"{report['seconds']:.1f}"}
    suites = ET.Element("testsuites", name="undoit rehearse", **attrs)
    suite = ET.SubElement(suites, "testsuite", name=f"rehearsal of set {report['set']}",
                          timestamp=report["started"], hostname="localhost", **attrs)
    for r in rows:
        case = ET.SubElement(suite, "testcase", classname=f"undoit.rehearse.{r['kind']}", name=r["procedure"],
                             time=f"{r['seconds']:.1f}")
        for reason in r["failed"] or ([] if r["ok"] else ["failed"]):
            fail = ET.SubElement(case, "failure", message=reason.splitlines()[0][:500] if reason else "failed",
                                 type="check" if not reason.startswith(("step ", "drill ", "re-applying")) else "step")
            fail.text = reason
        out = [f"change: {change_cell(r)}"]
        if r.get("felt"):
            out.append("checks failing after the change: " + ", ".join(r["felt"]))
        ET.SubElement(case, "system-out").text = "\n".join(out)
    ET.indent(suites)
    path.write_bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n")
    return path


def change_cell(row: dict) -> str:
    """What the drill showed of the change: felt (checks failing once applied), re-applied."""
    if row.get("kind") == "proof":
        return "-"
    if not row.get("change"):
        return "no change rehearsed"
    felt = row.get("felt")
    parts = [f"felt by {len(felt)} check(s)" if felt else ("NOT felt by any check" if felt is not None else "not applied")]
    if row.get("reapplied") is not None:
        parts.append("re-applied" if row["reapplied"] else "re-apply FAILED")
    return ", ".join(parts)
