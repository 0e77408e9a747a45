"""git adapters on real repositories in tmp_path (no engine)."""

from __future__ import annotations

import os
import stat
import tarfile

import pytest
from datetime import datetime

from scripts.repo import gitstate
from scripts.errors import UndoitError


def test_dirty_names_whole_paths(scratch_repo):
    (scratch_repo / "proxy").mkdir()
    (scratch_repo / "proxy" / "nginx.conf").write_text("a\n")
    gitstate.run(scratch_repo, "add", "-A")
    gitstate.run(scratch_repo, "commit", "-qm", "proxy")
    (scratch_repo / "proxy" / "nginx.conf").write_text("b\n")  # " M proxy/nginx.conf"
    (scratch_repo / "new file.txt").write_text("x\n")
    assert sorted(gitstate.dirty(scratch_repo)) == ["new file.txt", "proxy/nginx.conf"]
    with pytest.raises(UndoitError, match=r"first: proxy/nginx\.conf"):
        gitstate.backup_refs(scratch_repo, "b-{timestamp}", "t-{date}", ["proxy"], False, None,
                             datetime(2026, 1, 1))


def saved(safety_dir):
    """What a restore saved before it overwrote: name -> bytes (a symlink: its target)."""
    with tarfile.open(safety_dir / gitstate.SAVED) as tar:
        return {m.name: (m.linkname.encode() if m.issym() else tar.extractfile(m).read()) for m in tar}


def commit_all(root, message):
    gitstate.run(root, "add", "-A")
    gitstate.run(root, "commit", "-qm", message)


@pytest.fixture
def monorepo(tmp_path):
    """A repository whose project lives in apps/shop, with a sibling project beside it."""
    top = tmp_path / "mono"
    for rel, text in {"apps/shop/app.conf": "v1\n", "apps/shop/src/a.py": "a1\n", "apps/shop/src/b.py": "b1\n",
                      "apps/other/keep.txt": "other\n", "README.md": "top\n"}.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(text)
    gitstate.init(top, "monorepo")
    gitstate.run(top, "tag", "before")
    return top


def test_a_monorepo_project_restores_its_own_files_and_touches_nothing_else(monorepo, tmp_path):
    shop = monorepo / "apps/shop"
    (shop / "app.conf").write_text("v2\n")
    (shop / "src/b.py").unlink()
    (shop / "src/c.py").write_text("c2\n")
    (monorepo / "apps/other/keep.txt").write_text("other, changed\n")
    (monorepo / "README.md").write_text("top, changed\n")
    commit_all(monorepo, "the change")
    (shop / "notes.txt").write_text("untracked\n")
    plan = gitstate.restore_plan(shop, "before", ["."])
    assert plan["checkout"] == ["app.conf", "src/a.py", "src/b.py"]
    assert plan["changed"] == ["app.conf", "src/c.py"] and plan["remove"] == ["src/c.py"]
    assert plan["missing"] == ["src/b.py"] and plan["move"] == ["notes.txt"]
    gitstate.restore_paths(shop, "before", ["."], tmp_path / "safety")
    assert (shop / "app.conf").read_text() == "v1\n" and (shop / "src/b.py").read_text() == "b1\n"
    assert not (shop / "src/c.py").exists() and not (shop / "notes.txt").exists()
    assert saved(tmp_path / "safety")["app.conf"] == b"v2\n"
    assert (tmp_path / "safety/moved/notes.txt").read_text() == "untracked\n"
    # outside the project folder: not one byte
    assert (monorepo / "apps/other/keep.txt").read_text() == "other, changed\n"
    assert (monorepo / "README.md").read_text() == "top, changed\n"
    assert gitstate.differences(shop, "before", ["."]) == []
    with pytest.raises(UndoitError, match="stay in it"):
        gitstate.restore_plan(shop, "before", ["../other"])


def test_a_folder_that_is_no_repository_is_one_line(tmp_path):
    with pytest.raises(UndoitError, match="is not in a git repository") as err:
        gitstate.require_repo(tmp_path)
    assert err.value.exit_code == 2


def test_a_restore_runs_a_fixed_number_of_git_processes(scratch_repo, tmp_path, monkeypatch):
    for i in range(3000):
        (scratch_repo / f"src/d{i % 30}").mkdir(parents=True, exist_ok=True)
        (scratch_repo / f"src/d{i % 30}/f{i}.txt").write_text(f"{i}\n")
    commit_all(scratch_repo, "3000 files")
    gitstate.run(scratch_repo, "tag", "base")
    for i in range(0, 3000, 10):  # 10% changed, some removed, some added
        (scratch_repo / f"src/d{i % 30}/f{i}.txt").write_text(f"{i} changed\n")
    for i in range(1, 3000, 100):
        (scratch_repo / f"src/d{i % 30}/f{i}.txt").unlink()
    (scratch_repo / "src/new.txt").write_text("added\n")
    commit_all(scratch_repo, "the change")
    calls = []
    real = gitstate.git

    def counting(root, *args, **kw):
        calls.append(args[0])
        return real(root, *args, **kw)

    monkeypatch.setattr(gitstate, "git", counting)
    plan = gitstate.restore_plan(scratch_repo, "base", ["src/"])
    gitstate.restore_paths(scratch_repo, "base", ["src/"], tmp_path / "safety", plan=plan)
    assert len(calls) <= 6, len(calls)
    assert len(plan["changed"]) == 300 + 1 and len(plan["missing"]) == 30
    assert gitstate.differences(scratch_repo, "base", ["src/"]) == []
    assert saved(tmp_path / "safety")["src/d0/f0.txt"] == b"0 changed\n"


def test_wildcard_paths_match_as_checkout_matches_them(monorepo, tmp_path):
    # a plan path may hold a wildcard (the demo's backend/src/features/*/README.md); the
    # files at ref are found through it too, not only the files on disk
    shop = monorepo / "apps/shop"
    (shop / "src/a.py").write_text("a2\n")
    (shop / "src/d.py").write_text("d2\n")  # added since, then deleted without git rm
    commit_all(monorepo, "the change")
    (shop / "src/d.py").unlink()
    (shop / "src/b.py").unlink()  # deleted, at ref
    plan = gitstate.restore_plan(shop, "before", ["src/*.py"])
    assert plan["checkout"] == ["src/a.py", "src/b.py"]
    assert plan["changed"] == ["src/a.py"] and plan["remove"] == [] and plan["missing"] == ["src/b.py"]
    assert gitstate.differences(shop, "before", ["src/*.py"]) == ["src/a.py", "src/b.py"]
    gitstate.restore_paths(shop, "before", ["src/*.py"], tmp_path / "safety")
    assert gitstate.differences(shop, "before", ["src/*.py"]) == []
    assert (shop / "src/a.py").read_text() == "a1\n" and (shop / "src/b.py").read_text() == "b1\n"


def test_a_restore_rewrites_only_what_differs_from_the_ref(scratch_repo, tmp_path):
    for name in ("same.txt", "edited.txt", "staged.txt"):
        (scratch_repo / "src" / name).parent.mkdir(exist_ok=True)
        (scratch_repo / "src" / name).write_text(f"{name} at base\n")
    commit_all(scratch_repo, "three files")
    gitstate.run(scratch_repo, "tag", "base")
    (scratch_repo / "src/edited.txt").write_text("edited\n")
    (scratch_repo / "src/staged.txt").write_text("staged\n")
    gitstate.run(scratch_repo, "add", "src/staged.txt")
    (scratch_repo / "src/staged.txt").write_text("staged.txt at base\n")  # disk as at base, index not
    before = (scratch_repo / "src/same.txt").stat()
    gitstate.restore_paths(scratch_repo, "base", ["src"], tmp_path / "safety")
    after = (scratch_repo / "src/same.txt").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # left alone
    assert (scratch_repo / "src/edited.txt").read_text() == "edited.txt at base\n"
    # the index is the ref's too, as after `git checkout base -- src`
    assert gitstate.run(scratch_repo, "diff", "--cached", "--name-only", "base", "--", "src").strip() == ""


def test_what_a_restore_overwrote_comes_back_bit_for_bit(scratch_repo, tmp_path):
    # undo writes back from the safety archive: contents, mode, mtime, a symlink as a
    # symlink, a name that is not UTF-8; a symlink put there since is replaced, not followed
    odd = os.fsdecode(b"src/caf\xe9.txt")
    files = {"src/run.sh": "#!/bin/sh\n", "src/plain.txt": "plain\n", odd: "latin-1 name\n"}
    for rel, text in files.items():
        (scratch_repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (scratch_repo / rel).write_text(text)
    os.chmod(scratch_repo / "src/run.sh", 0o751)
    os.utime(scratch_repo / "src/plain.txt", ns=(1_600_000_000_123_456_789,) * 2)
    (scratch_repo / "src/link").symlink_to("plain.txt")
    rels = [*files, "src/link"]
    before = {rel: os.lstat(scratch_repo / rel) for rel in rels}
    gitstate.save_files(scratch_repo, rels, tmp_path / "safety" / gitstate.SAVED)
    assert stat.S_IMODE(os.stat(tmp_path / "safety" / gitstate.SAVED).st_mode) == 0o600
    assert not (tmp_path / "safety" / (gitstate.SAVED + ".part")).exists()
    for rel in rels:
        (scratch_repo / rel).unlink()
    outside = tmp_path / "outside.txt"
    outside.write_text("not the project's\n")
    (scratch_repo / "src/plain.txt").symlink_to(outside)
    assert gitstate.put_back(scratch_repo, rels[1:], tmp_path / "safety" / gitstate.SAVED) == 3
    assert not (scratch_repo / "src/run.sh").exists()  # not asked for
    assert outside.read_text() == "not the project's\n"
    assert (scratch_repo / odd).read_text() == "latin-1 name\n"
    assert os.readlink(scratch_repo / "src/link") == "plain.txt"
    after = os.lstat(scratch_repo / "src/plain.txt")
    assert not stat.S_ISLNK(after.st_mode) and abs(after.st_mtime_ns - before["src/plain.txt"].st_mtime_ns) < 1000  # tarfile: a float
    gitstate.put_back(scratch_repo, rels[:1], tmp_path / "safety" / gitstate.SAVED)
    assert stat.S_IMODE(os.stat(scratch_repo / "src/run.sh").st_mode) == 0o751


def test_a_path_naming_nothing_and_an_ignored_file_the_ref_has(scratch_repo, tmp_path):
    # git refuses a pathspec that matches nothing: a plan path with nothing under it
    # (at the ref or now) is left out of the checkout, not a failed restore. An ignored
    # file where the ref has a tracked one is overwritten by checkout: saved first
    (scratch_repo / "src").mkdir()
    (scratch_repo / "src/app.conf").write_text("conf at base\n")
    (scratch_repo / "src/main.py").write_text("main at base\n")
    commit_all(scratch_repo, "two files")
    gitstate.run(scratch_repo, "tag", "base")
    gitstate.run(scratch_repo, "rm", "-q", "--cached", "src/app.conf")
    (scratch_repo / ".gitignore").write_text("*.conf\n")
    (scratch_repo / "src/main.py").write_text("main changed\n")
    commit_all(scratch_repo, "conf ignored from now on")
    (scratch_repo / "src/app.conf").write_text("the operator's local conf\n")
    plan = gitstate.restore_plan(scratch_repo, "base", ["src", "docs"])
    assert plan["specs"] == ["src"]
    assert plan["changed"] == ["src/app.conf", "src/main.py"] and plan["missing"] == ["src/app.conf"]
    gitstate.restore_paths(scratch_repo, "base", ["src", "docs"], tmp_path / "safety", plan=plan)
    assert (scratch_repo / "src/app.conf").read_text() == "conf at base\n"
    assert (scratch_repo / "src/main.py").read_text() == "main at base\n"
    assert saved(tmp_path / "safety") == {"src/app.conf": b"the operator's local conf\n",
                                          "src/main.py": b"main changed\n"}


def test_the_kits_own_files_are_never_restored_or_moved_aside(scratch_repo, tmp_path):
    """A fresh clone's exclude file lists nothing yet, and the plan is tracked: a restore
    of "." still leaves the plan, snapshots/, reports/ and the log exactly as they are."""
    root = scratch_repo
    (root / "app.conf").write_text("v1\n")
    (root / "phases.toml").write_text("# plan v1\n")
    commit_all(root, "v1")
    gitstate.run(root, "tag", "before")
    (root / "app.conf").write_text("v2\n")
    (root / "phases.toml").write_text("# plan v2, with [offsite]\n")
    commit_all(root, "v2")
    for rel, text in {"snapshots/2026set/manifest.json": "{}", "reports/r.json": "{}",
                      "ROLLBACK-LOG.md": "# log\n", "stray.txt": "untracked\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    keep = [root / "phases.toml", root / "snapshots", root / "reports", root / "ROLLBACK-LOG.md",
            tmp_path / "elsewhere"]
    plan = gitstate.restore_plan(root, "before", ["."], keep)
    assert plan["move"] == ["stray.txt"] and plan["changed"] == ["app.conf"]
    gitstate.restore_paths(root, "before", ["."], tmp_path / "safety", plan=plan)
    assert (root / "app.conf").read_text() == "v1\n"
    assert (root / "phases.toml").read_text() == "# plan v2, with [offsite]\n"
    assert (root / "snapshots/2026set/manifest.json").exists() and (root / "reports/r.json").exists()
    assert (root / "ROLLBACK-LOG.md").read_text() == "# log\n" and not (root / "stray.txt").exists()
    assert "phases.toml" not in gitstate.run(root, "diff", "--cached", "--name-only")
    assert gitstate.differences(root, "before", ["."], keep) == []
    # a plan that names only the kit's own file restores nothing (and git is not asked to)
    assert gitstate.restore_plan(root, "before", ["phases.toml"], keep)["restore"] == []
    # a wildcard path falls back to the exact list, which leaves them out too
    (root / "app.conf").write_text("v3\n")
    plan = gitstate.restore_plan(root, "before", ["*.toml", "app.*"], keep)
    assert plan["specs"] is None and plan["restore"] == ["app.conf"]
    gitstate.restore_paths(root, "before", ["*.toml", "app.*"], tmp_path / "safety2", plan=plan)
    assert (root / "phases.toml").read_text() == "# plan v2, with [offsite]\n"
