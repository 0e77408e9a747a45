"""The bundled demo: its stack materialized from demo/stack into a scratch repository,
brought up and seeded; its tasks (demo:init, demo:up, demo:down, demo:ready); and its
helpers for the tests and benches (copy_plan). The kit (scripts/) knows nothing of it:
dodo.py adds these tasks, and the demo's plan (phases.toml) is loaded like any user's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from scripts.cli.action import action
from scripts.errors import UndoitError
from scripts.plan.plan import Plan
from scripts.plan.settings import KIT_ROOT
from scripts.repo import gitstate
from scripts.stack.compose import for_plan

HERE = Path(__file__).resolve().parent
DEMO_SOURCE = HERE / "stack"
CHANGES = HERE / "changes"
DEMO_ROOT = KIT_ROOT / ".undoit" / "demo"  # where phases.toml's [project] root points
MARKER = ".undoit-demo"  # in demo/stack, so every materialized copy carries it


def is_demo(plan: Plan) -> bool:
    """Whether the plan is about the bundled demo (its default place, or a copy of it)."""
    root = Path(plan.root)
    return root.resolve() == DEMO_ROOT.resolve() or (root / MARKER).is_file()


def require_demo(plan: Plan, task: str) -> None:
    """Demo tasks act on the demo only: `demo:down` removes volumes without a safety copy."""
    if not is_demo(plan):
        raise UndoitError(f"{task} acts only on the bundled demo, and this plan is about {plan.root} "
                          f"(compose project {plan.project_name}): nothing was done")


def is_bundled(plan: Plan) -> bool:
    """Whether the plan is the kit's own demo in its own place: only there does `doit
    rehearse` bring it up and back it up first (a copy is rehearsed as it is)."""
    return Path(plan.root).resolve() == DEMO_ROOT.resolve()


def materialize(dest: Path, source: Path = DEMO_SOURCE) -> bool:
    """Copy demo/ into dest as a fresh git repository; False when it is already there.

    A scratch repository keeps the kit's branches, tags and checkouts out of this
    repository's own history.
    """
    dest = Path(dest)
    if gitstate.is_repo(dest):
        if not gitstate.ref_exists(dest, "undoit-demo/phase0"):  # made by an older kit
            change_refs(dest, CHANGES)
        return False
    if dest.exists() and any(dest.iterdir()):
        raise UndoitError(f"{dest} exists and is not a git repository; move it away first")
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    # the stand-ins run as uid 1000 and read the repository through a bind mount
    dest.chmod(0o755)
    gitstate.init(dest, "demo: the stack before the simplification")
    change_refs(dest, CHANGES)  # demo/changes: the phases' changes as patches, history not tree
    return True


def change_refs(root: Path, patches: Path) -> None:
    """The runbook's phases as the team would have them: one after another on a branch
    `undoit-demo/changes` from the demo's first commit, each phase's end tagged
    `undoit-demo/phaseN` (phase0: the start), so phases.toml names phase N's change as
    the range phase{N-1}..phaseN. Made in a worktree of its own: the demo's checkout is
    left as it is."""
    last = max((int(p.name[5:]) for p in patches.glob("phase*") if p.name[5:].isdigit()), default=0)
    start = gitstate.run(root, "rev-list", "--max-parents=0", "HEAD").split()[0]
    work = root / ".git" / "undoit-changes"
    gitstate.run(root, "tag", "-f", "undoit-demo/phase0", start)
    gitstate.run(root, "worktree", "add", "-q", "-f", "-B", "undoit-demo/changes", str(work), start)
    try:
        for n in range(1, last + 1):
            files = sorted(str(f) for f in (patches / f"phase{n}").glob("*.patch"))
            if files:
                gitstate.run(work, "am", "-q", "--committer-date-is-author-date", *files)
            gitstate.run(work, "tag", "-f", f"undoit-demo/phase{n}")
    finally:
        gitstate.run(root, "worktree", "remove", "--force", str(work))


def up(plan: Plan) -> None:
    """Bring the demo up healthy and seed its data (idempotent)."""
    materialize(plan.root)
    compose = for_plan(plan)
    compose.up(wait_timeout=180)
    seed = plan.root / "ops" / "seed.sh"
    if seed.exists():
        import sh

        try:
            sh.bash(str(seed), _cwd=str(plan.root), _env=for_plan(plan).env, _tty_out=False)
        except sh.ErrorReturnCode as err:
            tail = err.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise UndoitError(f"demo seed failed: {' '.join(tail)}") from None


def down(plan: Plan, volumes: bool = True) -> None:
    """Stop and remove the demo's containers, networks and (by default) its volumes."""
    if not gitstate.is_repo(plan.root):
        return
    for_plan(plan).down(volumes=volumes)


def copy_plan(tmp: Path, name: str) -> Path:
    """The demo's phases.toml pointed at a demo copy in tmp/demo, compose project `name`,
    its state under tmp: a throwaway demo for tests and benches (a file, so `doit` in a
    subprocess loads it too)."""
    text = (KIT_ROOT / "phases.toml").read_text()
    text = text.replace('name = "motovault"', f'name = "{name}"', 1)
    text = text.replace('root = ".undoit/demo"', f'root = "{tmp / "demo"}"', 1)
    text = text.replace('snapshots = "snapshots"', f'snapshots = "{tmp / "snapshots"}"', 1)
    text = text.replace("[project]\n", f'[project]\nlog = "{tmp / "LOG.md"}"\nreports = "{tmp / "reports"}"\n', 1)
    (tmp / "phases.toml").write_text(text)
    return tmp / "phases.toml"


def ready(plan: Plan) -> None:
    """The bundled demo up and backed up, for `doit rehearse` (task_dep cannot order
    demo:up before backup, and backup must not depend on demo:up: it stays fast)."""
    # here, not at the top: creating the demo's tasks (`doit list`) must not load the engine's SDK
    from scripts.backup import backup
    from scripts.rollback import rollback
    from scripts.store import lock

    up(plan)
    if not backup.up_to_date(plan):
        with lock.held(rollback.lock_path(plan), "backup"):
            backup.backup(plan)


def tasks(plan: Plan):
    """demo:init, demo:up, demo:down (refused on any plan but the demo's: demo:down
    removes volumes without a safety copy) and demo:ready."""

    def only_demo(fn, task):
        def run(*args):
            require_demo(plan, task)
            return fn(*args)

        run.__name__ = fn.__name__
        return run

    yield {"basename": "demo", "name": None,
           "doc": "the bundled demo stack (a miniature of the runbook's system); refuses on any other plan"}
    yield {"basename": "demo", "name": "init", "actions": [action(only_demo(materialize, "demo:init"), plan.root)],
           "doc": f"materialize demo/stack as a scratch git repository in {plan.root}",
           "uptodate": [lambda: (plan.root / ".git").exists()]}
    yield {"basename": "demo", "name": "up", "actions": [action(only_demo(up, "demo:up"), plan)],
           "doc": "bring the demo stack up healthy and seed its data", "task_dep": ["images", "demo:init"],
           "uptodate": [False], "verbosity": 2}
    yield {"basename": "demo", "name": "down", "actions": [action(only_demo(down, "demo:down"), plan)],
           "doc": "remove the demo's containers, networks and volumes", "uptodate": [False], "verbosity": 2}
    yield {"basename": "demo", "name": "ready", "actions": [action(only_demo(ready, "demo:ready"), plan)],
           "doc": "the demo up, seeded and backed up (what `doit rehearse` of the bundled demo starts from)",
           "task_dep": ["images", "demo:init"], "uptodate": [False], "verbosity": 2}
