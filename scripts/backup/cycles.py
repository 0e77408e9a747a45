"""Change cycles: each backup tag opens one, and a rollback restores the current one's baseline.

A team backs up before every change. Each backup at a new HEAD makes a new annotated
tag, and the first set taken under it is that cycle's baseline: the stack as it was
before the change the cycle is about. A rollback must restore the baseline of the
change being undone, which is the newest backup tag the current HEAD is at or descends
from, and take files and volumes from that one point in time. Restoring an older
cycle's baseline would throw away every write and commit made since (and every check
would still pass).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..repo import gitstate
from ..store import snapshots
from ..errors import UndoitError
from ..store.snapshots import SnapshotSet

NO_BACKUP = "no verified backup: run `doit backup` before the change"


@dataclass(frozen=True)
class Cycle:
    tag: str  # the backup tag that opened it
    head: str  # HEAD when that backup was taken
    commit: str  # what the tag points at: HEAD, or a commit of uncommitted changes on top
    sets: tuple[SnapshotSet, ...]  # its complete backup and checkpoint sets, oldest first

    @property
    def key(self) -> tuple[str, str]:
        """What a cycle is: its tag's name *and* the commit it was made at. Names alone
        collide: a fresh clone has none of the backup tags, so its backups make the same
        names again, and a set fetched from before the loss would join the wrong cycle."""
        return self.tag, self.commit

    @property
    def baseline(self) -> SnapshotSet | None:
        return next((s for s in self.sets if s.manifest.get("kind") == "backup" and s.manifest.get("baseline")), None)

    def checkpoint(self, pid: str) -> SnapshotSet | None:
        """The latest checkpoint of phase pid taken in this cycle."""
        cps = [s for s in self.sets if s.manifest.get("kind") == "checkpoint" and s.manifest.get("phase") == pid]
        return cps[-1] if cps else None


def cycle_tag(s: SnapshotSet) -> str | None:
    """The backup tag of the cycle a set belongs to (sets from before cycles were
    recorded: a backup set's own tag)."""
    m = s.manifest or {}
    return m.get("cycle") or ((m.get("git") or {}).get("tag") if m.get("kind") == "backup" else None)


def cycle_commit(s: SnapshotSet) -> str | None:
    """The commit of the cycle a set belongs to: a backup's own, a checkpoint's recorded
    one (None: a checkpoint from before it was recorded)."""
    m = s.manifest or {}
    if m.get("kind") == "backup":
        git = m.get("git") or {}
        return git.get("commit") or git.get("head")
    return m.get("cycle_commit")


def all_cycles(root, project: str, engine_id: str | None = None) -> list[Cycle]:
    """Every cycle with at least one complete set, oldest first (by its first set); with
    engine_id, only sets taken on that engine (one plan can serve the same project on
    several engines: a set of one is no backup of the other's volumes)."""
    cycles: dict[tuple, list[SnapshotSet]] = {}
    first_git: dict[tuple, dict] = {}
    latest_of: dict[str, tuple] = {}  # tag name -> the newest cycle of that name so far
    last = None
    for s in snapshots.all_sets(root, project):
        if not s.complete or s.manifest.get("kind") not in ("backup", "checkpoint"):
            continue
        if not snapshots.same_engine(s, engine_id):
            continue
        tag, commit = cycle_tag(s), cycle_commit(s)
        if tag is None:
            key = last  # an old checkpoint: the cycle it was taken in
        elif commit is None:
            key = latest_of.get(tag)  # an old checkpoint of a named cycle: its newest one
        else:
            key = (tag, commit)
        if key is None:
            continue
        cycles.setdefault(key, []).append(s)
        if s.manifest.get("kind") == "backup":
            first_git.setdefault(key, s.manifest.get("git") or {})
        latest_of[key[0]] = last = key
    out = []
    for key, sets in cycles.items():
        git = first_git.get(key)
        if git:  # a cycle is known by its backups; checkpoints alone do not make one
            out.append(Cycle(key[0], git.get("head", ""), key[1], tuple(sets)))
    return out


def label(cycle: Cycle, cycles: list[Cycle]) -> str:
    """How a person tells cycles apart: the tag, and its commit where another cycle
    (another machine's, before a recovery) has the same name."""
    twins = [c for c in cycles if c.tag == cycle.tag]
    return cycle.tag if len(twins) < 2 else f"{cycle.tag}@{cycle.commit[:8]}"


def own(cycles: list[Cycle], fetched: set[str]) -> list[Cycle]:
    """The cycles as this machine took them: sets brought back by `doit fetch` are left
    out (a set from before a loss never becomes what a rollback restores unless it is
    named with set=ID), and a cycle with none of its own sets goes with them."""
    out = []
    for c in cycles:
        sets = tuple(s for s in c.sets if s.id not in fetched)
        if sets:
            out.append(Cycle(c.tag, c.head, c.commit, sets))
    return out


def current(plan, engine_id: str | None = None) -> tuple[Cycle, str]:
    """The cycle a rollback restores, and one line saying which and why; its sets are
    the ones taken on the engine the kit talks to (engine_id: default, that engine's),
    fetched ones left out (`own`).

    Raises (naming what is wrong) rather than fall back on an older cycle: no cycle,
    a HEAD that descends from none, or a newer backup tag whose baseline is gone.
    """
    engine_id = engine_id or this_engine()
    fetched = snapshots.fetched(plan.snapshots_dir)
    cycles = own(all_cycles(plan.snapshots_dir, plan.project_name, engine_id), fetched)
    if not cycles:
        elsewhere = all_cycles(plan.snapshots_dir, plan.project_name)
        if [s for c in elsewhere for s in c.sets if s.id in fetched]:
            raise UndoitError(f"{NO_BACKUP} on this machine (the sets here were fetched from the offsite "
                              "repository: a rollback restores one only when named with set=ID, and "
                              "`doit recover` puts the newest one back)")
        if elsewhere:
            raise UndoitError(f"{NO_BACKUP} on this engine (the sets there are of project {plan.project_name} "
                              "on another engine; name one with set=ID to restore it here)")
        raise UndoitError(NO_BACKUP)
    head = gitstate.head(plan.root)
    chosen, why = None, ""
    for c in reversed(cycles):
        if c.head == head:
            chosen, why = c, "HEAD is where it was backed up"
            break
        if _is_ancestor(plan.root, c.head, head):
            n = gitstate.run(plan.root, "rev-list", "--count", f"{c.head}..{head}")
            chosen, why = c, f"HEAD descends from it ({n} commit(s) since)"
            break
    if chosen is None:
        raise UndoitError(
            f"HEAD ({head[:12]}) descends from none of the backups ({', '.join(c.tag for c in cycles)}): "
            "check out the change being undone, or name a set with set=ID")
    orphan = _newer_tag_without_sets(plan, chosen, {c.tag for c in cycles})
    if orphan:
        raise UndoitError(
            f"backup tag {orphan} is newer than cycle {chosen.tag} and HEAD descends from it, but no valid "
            f"set of it is left: refusing to restore the older cycle (name a set with set=ID, or run "
            f"`doit backup` to retake {orphan}'s baseline)")
    if chosen.baseline is None:
        raise UndoitError(f"cycle {chosen.tag} has no valid baseline set (damaged or removed): "
                          "name a set with set=ID")
    return chosen, f"cycle {chosen.tag} (baseline set {chosen.baseline.id}): the newest backup tag; {why}"


def this_engine() -> str | None:
    """The ID of the engine the kit talks to; None when none answers (then no set is
    filtered out: whatever runs next fails on the engine itself)."""
    from ..stack import engine

    try:
        return engine.engine_id(engine.client())
    except UndoitError:
        return None


def _is_ancestor(root, ancestor: str, descendant: str) -> bool:
    try:
        gitstate.run(root, "merge-base", "--is-ancestor", ancestor, descendant)
        return True
    except UndoitError:
        return False


def _newer_tag_without_sets(plan, chosen: Cycle, known: set[str]) -> str | None:
    """A tag the backup template makes, between the chosen cycle and HEAD, with no set."""
    rx = gitstate.template_regex(plan.backup_tag)
    merged = gitstate.run(plan.root, "for-each-ref", "--merged=HEAD", "--format=%(refname:short)", "refs/tags/")
    for tag in merged.split():
        if tag in known or tag == chosen.tag or not rx.match(tag):
            continue
        target = gitstate.run(plan.root, "rev-parse", f"{tag}^{{commit}}")
        if target != chosen.head and _is_ancestor(plan.root, chosen.head, target):
            return tag
    return None
