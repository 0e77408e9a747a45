"""A rollback's preview (#30): the figures its dry run gives are what the run then does
(bytes per volume, files overwritten, deleted and moved aside), the downtime its last
drill measured is the one the run has, a run that would not fit on the disk refuses
before its first step, and `[rehearse] require` holds a checkpoint back until the
phase's drill passed on the plan as it is.

On a project unlike the demo: a ledger (the base image asleep, its `books` volume,
healthy 3 s after it starts) beside a clerk that never stops, and a rules/ folder
that the phase puts back with the volume."""

from __future__ import annotations


import pytest

from scripts.backup import backup
from scripts.errors import UndoitError
from scripts.plan import plan as planmod
from scripts.rehearse import rehearse
from scripts.repo import gitstate
from scripts.rollback import preview, rehearsed, rollback
from scripts.store import snapshots

from .conftest import doit, make_stack, sweep, unique, volume_path
from .projects import check, compose_file, do, healthy_when, keeper, phase, plan, volume, waiter

pytestmark = pytest.mark.docker

# the ledger opens its books for 3 s before it is healthy (a database replaying its log):
# a downtime that the engine's own pace does not drown
OPENING = ["sh", "-c", "rm -f /tmp/opened; sleep 3 && touch /tmp/opened && exec sleep infinity"]
COMPOSE = compose_file({"ledger": keeper("books", command=OPENING, stop_grace_period="1s", healthcheck=healthy_when(
    "test", "-f", "/tmp/opened", interval="250ms", start_period="60s")), "clerk": waiter()}, volumes=["books"])
PLAN = plan(["ledger", "clerk"], volumes={"books": volume("ledger")},
            phases=[phase("books", "the ledger's books and rules", [
                do("stop", services=["ledger"]), do("restore-files", paths=["rules/"]),
                do("restore-volumes", volumes=["books"]), do("up", services=["ledger"])],
                [check("healthy", services=["ledger"]), check("volume-matches", volumes=["books"])],
                volumes=["books"])])
RULES = {"rules/rounding.conf": "half-even\n", "rules/currency.conf": "EUR\n", "rules/audit.conf": "on\n"}


@pytest.fixture
def ledger(docker_client, kit_images, tmp_path):
    name = unique("utpv")
    try:
        plan = make_stack(name, tmp_path, COMPOSE, PLAN, files=RULES)
        books = volume_path(docker_client, plan, "books")
        (books / "2026.csv").write_bytes(b"1,debit,42\n" * 3000)
        (books / "archive").mkdir()
        (books / "archive/2025.csv").write_bytes(b"0,credit,7\n" * 700)
        yield plan
    finally:
        sweep(docker_client, name)



def change_everything(client, plan) -> None:
    """What the rollback then undoes: the books rewritten, a rule changed, one added
    (committed), one left untracked."""
    books = volume_path(client, plan, "books")
    (books / "2026.csv").write_bytes(b"9,wrong,0\n" * 50)
    (books / "junk.bin").write_bytes(b"x" * 4096)
    root = plan.root
    (root / "rules/rounding.conf").write_text("half-up\n")
    (root / "rules/fees.conf").write_text("2%\n")
    gitstate.run(root, "add", "-A")
    gitstate.run(root, "commit", "-q", "-m", "new rules")
    (root / "rules/notes.txt").write_text("untracked\n")


def test_the_preview_is_what_the_run_then_does(docker_client, ledger, capsys):
    s = backup.backup(ledger)
    report = rehearse.rehearse(ledger, only="books")
    assert report["ok"], report["rows"]
    change_everything(docker_client, ledger)

    dry = rollback.execute(ledger, "books", dry_run=True)
    said = capsys.readouterr().out
    assert dry["preview"]["files"] == {"overwritten": 1, "deleted": 1, "moved": 1}
    assert dry["preview"]["volumes"] == {"books": s.volumes["books"]["bytes"]}
    assert f"restores volume books ({ledger.project_name}_books): " in said and f"from set {s.id}" in said
    assert "1 overwritten (rules/rounding.conf); 1 deleted (rules/fees.conf); 1 moved aside (rules/notes.txt)" in said
    assert "stops ledger for about" in said and f"as the drill of {report['started']} measured it" in said
    assert "rehearsal: books: last rehearsed" in said and "(the plan as it is now): passed" in said
    assert "disk: " in said

    rec = rollback.execute(ledger, "books", yes=True)
    assert rec["outcome"] == "success", rec
    first = capsys.readouterr().out.splitlines()[:2]  # a live run's first lines say when it was rehearsed
    assert first[1].startswith("  rehearsal: books: last rehearsed ") and first[1].endswith(": passed"), first
    # the figures, counted from what the steps did, are those the dry run gave
    assert rec["restored"] == {"volumes": dry["preview"]["volumes"], "files": dry["preview"]["files"]}
    assert "- **Restored:** books 39.7 KiB, 1 file(s) overwritten, 1 file(s) deleted, 1 file(s) moved aside" in \
        ledger.log_path.read_text()
    measured = rehearsed.downtime(rec["steps"])
    predicted = dry["preview"]["downtime"]
    with capsys.disabled():  # the figure, with -s
        print(f"\ndowntime: predicted {predicted} s by the drill, measured {measured} s")
    assert measured and predicted and abs(predicted - measured) <= 0.5 * measured, (predicted, measured)

    res = doit(ledger, "status")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rehearsal of phase books: last rehearsed" in res.stdout
    assert "rehearsal of full full: never rehearsed (`doit rehearse only=full`)" in res.stdout


def test_a_run_that_would_not_fit_refuses_before_its_first_step(docker_client, ledger, monkeypatch, capsys):
    backup.backup(ledger)
    change_everything(docker_client, ledger)
    books = volume_path(docker_client, ledger, "books")
    before = {p.name: p.read_bytes() for p in books.iterdir() if p.is_file()}
    monkeypatch.setattr(preview, "free_space", lambda path: 1000)  # the one figure faked: the room left
    with pytest.raises(UndoitError) as refused:
        rollback.execute(ledger, "books", yes=True)
    line = str(refused.value)
    said = capsys.readouterr().out
    assert "stops ledger for as long as the steps take (not rehearsed)" in said
    assert "rehearsal: books: never rehearsed (`doit rehearse only=books`)" in said
    assert line.startswith("not enough disk space for this rollback: ") and "1000 B free" in line, line
    assert "\n" not in line and "nothing was changed" in line
    assert {p.name: p.read_bytes() for p in books.iterdir() if p.is_file()} == before
    assert (ledger.root / "rules/rounding.conf").read_text() == "half-up\n"
    assert not (ledger.snapshots_dir / snapshots.RUNS).exists() and not snapshots.safety_sets(ledger.snapshots_dir)
    monkeypatch.undo()
    assert rollback.execute(ledger, "books", yes=True)["outcome"] == "success"


def test_checkpoint_waits_for_a_passed_drill_of_the_plan_as_it_is(docker_client, ledger):
    text = ledger.path.read_text()
    ledger.path.write_text(text + "\n[rehearse]\nrequire = true\n")
    plan = planmod.load(ledger.path, env={})
    assert plan.rehearse_require
    backup.backup(plan)

    res = doit(plan, "checkpoint:books")
    assert res.returncode != 0
    assert "[rehearse] require: it was never rehearsed; run `doit rehearse only=books` first" in res.stdout + res.stderr
    assert not gitstate.ref_exists(plan.root, "refs/tags/undoit/books/pre")

    assert rehearse.rehearse(plan, only="books")["ok"]
    res = doit(plan, "checkpoint:books")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "rehearsal: books: last rehearsed" in res.stdout and "(the plan as it is now): passed" in res.stdout
    assert gitstate.ref_exists(plan.root, "refs/tags/undoit/books/pre")

    plan.path.write_text(plan.path.read_text() + "# edited after the drill\n")
    res = doit(plan, "checkpoint:books", "force=1")
    assert res.returncode != 0 and "ran another plan" in res.stdout + res.stderr, res.stdout + res.stderr
