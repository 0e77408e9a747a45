"""Tables for people: rich on a terminal, plain aligned text when piped."""

from __future__ import annotations

from ..output.progress import human, interactive
from ..rehearse.junit import change_cell
from ..output.redact import current


def _add_row(table, *cells) -> None:
    """A row with every cell masked before rich lays it out: wrapped over two lines, a
    secret would no longer be one string for the output's own masking to find."""
    mask = current()
    table.add_row(*(mask(c) for c in cells))


def console():
    from rich.console import Console

    # a fixed width when piped: CI logs should not wrap or truncate rows
    return Console() if interactive() else Console(width=400, no_color=True)


def snapshot_table(rows: list[dict], why: str = "") -> None:
    from rich.table import Table

    if not rows:
        print("no snapshot sets yet: run `doit backup`")
        return
    t = Table(title="snapshot sets by change cycle (oldest first)")
    copies = any("copies" in r for r in rows)
    cloned = any("clone" in r for r in rows)
    for col in ("cycle", "set", "kind", "age", "size", "volumes", "pins", "valid", *(("copies",) if copies else ()),
                *(("copy-on-write clone",) if cloned else ()), ""):
        t.add_column(col)
    last = None
    for r in rows:
        valid = "yes" if r["valid"] else f"NO: {r['problem']}"
        vols = r["volumes"] + (f" ({r['reused']} referenced)" if r["reused"] else "")
        marks = [m for m, on in (("baseline", r["baseline"]), ("fetched: restored only when named", r["fetched"]),
                                 ("<- a rollback restores this", r["restores"])) if on]
        kind = r["kind"] if r["kind"] != "backup" or r["cycle"].startswith(r["tag"]) else f"backup ({r['tag']})"
        _add_row(t, r["cycle"] if r["cycle"] != last else "", r["set"], kind, r["age"], human(r["size"]), vols,
                 ", ".join(r.get("pins") or []) or "-", valid, *((r.get("copies", ""),) if copies else ()),
                 *((r.get("clone", "-"),) if cloned else ()), ", ".join(marks))
        last = r["cycle"]
    console().print(t)
    if why:
        print(f"a rollback restores {why}")


def clone_column(plan, rows: list[dict]) -> None:
    """Which sets keep a copy-on-write clone on the engine's disk, and what it pins there
    (the bytes no other file shares, from the filesystem's extent map), and the total."""
    from ..stack import clones, engine
    from ..errors import UndoitError
    from ..store import snapshots as sets

    try:
        held = clones.inventory(engine.client(), plan.snapshots_dir, sets.all_sets(plan.snapshots_dir))
    except (UndoitError, OSError) as err:
        print(f"copy-on-write clones unknown: {err}")
        return
    for r in rows if held else ():
        h = held.get(r["set"])
        r["clone"] = f"{', '.join(h.keys)}: pins {human(h.pinned)} of {human(h.bytes)}" if h else "-"
    if held:
        print(f"copy-on-write clones: {len(held)} set(s) keep one, pinning {human(sum(h.pinned for h in held.values()))}"
              f" on the engine's disk (the newest {clones.KEEP} sets and the newest baseline keep theirs; "
              "`doit prune` releases those of the sets it removes)")


def safety_lines(rows: list[dict]) -> None:
    """The safety sets rollbacks keep, and what they hold on the engine."""
    if not rows:
        return
    parked = sum(r["parked"] for r in rows)
    print(f"safety sets of rollbacks: {len(rows)}, {human(parked)} of replaced contents parked on the engine "
          "(`doit prune` releases all but the last rollback's; `doit release` releases all)")
    for r in rows:
        print(f"  {r['set']}: {r['reason']}" + (f"; parked {human(r['parked'])} under {r['where']}" if r["parked"]
                                                 else ""))


def decision_table(result: dict) -> None:
    from rich.table import Table

    title = (f"decision matrix: rows matching {result['failure']!r}" if result["matched"]
             else "decision matrix (no row matched" + (f" {result['failure']!r}" if result["failure"] else "") + "; all rows)")
    t = Table(title=current()(title))
    for col in ("failure type", "rollback scope", "risk", "duration", "run", "if it fails"):
        t.add_column(col)
    for r in result["rows"]:
        _add_row(t, r["failure"], r["scope"], r["risk"], r["duration"], r["command"],
                 " -> ".join(r["escalation"][1:]) or "-")
    console().print(t)
    for p in result["phases_with_matching_triggers"]:
        console().print(f"also matches the triggers of {p['id']} ({p['title']}, risk {p['risk']}, "
                        f"{p['duration']}): {p['command']}")


def rehearsal_table(report: dict) -> None:
    from rich.table import Table

    t = Table(title=f"rehearsal of set {report['set']} in {report['rehearsal']} ({report['seconds']} s)")
    for col in ("procedure", "change", "result", "failed", "recovery time", "runbook estimate", "ratio"):
        t.add_column(col)
    for r in report["rows"]:
        est = f"{r['runbook_minutes']} min" if r["runbook_minutes"] else "-"
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        _add_row(t, r["procedure"], change_cell(r), "PASS" if r["ok"] else "FAIL",
                 f"{len(r['failed'])} (below)" if r["failed"] else "-", f"{r['seconds']:.1f} s", est, ratio)
    console().print(t)
    # whole, never cut at a column's width: the reason is what the reader acts on
    for r in report["rows"]:
        for reason in r["failed"]:
            print(f"FAIL {r['procedure']}: {reason}")
    proven, held = report["archives_proven"], report.get("archives", report["archives_proven"])
    missed = [k for k in held if k not in proven]
    if missed:
        print(f"archives of set {report['set']} restored and compared: {', '.join(proven) or 'none'}; "
              f"NOT proven: {', '.join(missed)}")
    else:
        print(f"every archive of set {report['set']} restored and compared: {', '.join(proven)}")
    print(f"report: {report['path']} (JUnit: {report.get('junit', '-')}); every step: {report.get('log', '-')}")


