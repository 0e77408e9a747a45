"""restic, the offsite store: one repository the plan names, its password only in
restic's environment, its faults as one line each.

The kit only decides what to send and checks what comes back (offsite/); restic keeps
the sets deduplicated, encrypted and authenticated (a local path, sftp:, rest:, s3:...).
Restic's own messages are redacted before the kit repeats them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import UndoitError
from ..output.progress import say
from ..output.redact import Redactor
from . import snapshots
from .snapshots import SnapshotSet

UNTOUCHED = "the local sets are untouched"


class Repo:
    """The plan's restic repository, with the password only in restic's environment."""

    def __init__(self, plan):
        if plan.offsite is None:
            raise UndoitError("no [offsite] section in the plan: name a restic repository there "
                              "(repository, and password_file or password_env)")
        if shutil.which("restic") is None:
            raise UndoitError("restic is not installed (Debian: apt-get install restic)")
        self.plan, self.o = plan, plan.offsite
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        self.env["RESTIC_REPOSITORY"] = self.o.repository
        if self.o.password_file is not None:
            try:
                secret = self.o.password_file.read_text().rstrip("\n")
            except OSError as err:
                raise UndoitError(f"cannot read the offsite password file {self.o.password_file} "
                                  f"({err.strerror})") from None
            self.env["RESTIC_PASSWORD_FILE"] = str(self.o.password_file)
            self.source = f"the file {self.o.password_file}"
        else:
            secret = os.environ.get(self.o.password_env or "", "")
            if not secret:
                raise UndoitError(f"the offsite password's environment variable {self.o.password_env} is not set")
            self.env["RESTIC_PASSWORD"] = secret
            self.source = f"${self.o.password_env}"
        self.redact = Redactor([secret] if secret else [])

    def run(self, *args: str, timeout: float = 6 * 3600) -> str:
        """restic's stdout; UndoitError with one line naming the fault otherwise."""
        try:
            proc = subprocess.run(["restic", *args], env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise UndoitError(f"restic {args[0]} on {self.o.repository} timed out after {timeout:.0f} s; "
                              f"{UNTOUCHED}") from None
        if proc.returncode != 0:
            raise self.fault(args[0], proc.returncode, self.redact(proc.stderr))
        return proc.stdout

    def fault(self, cmd: str, code: int, stderr: str) -> UndoitError:
        text = stderr.strip()
        low = text.lower()
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "(no output)")
        fatal = next((ln.strip() for ln in text.splitlines() if ln.startswith("Fatal:")), last)[:200]
        repo = self.o.repository
        if "wrong password" in low:
            msg = f"wrong password for the restic repository at {repo} (from {self.source})"
        elif "already locked" in low:
            msg = f"another restic holds a lock on {repo} ({fatal}): wait for it, or `restic unlock` if it died"
        elif "no space left" in low or "insufficient storage" in low or "quota" in low:
            msg = f"the restic repository at {repo} is full ({fatal})"
        elif any(s in low for s in ("connection refused", "no such host", "dial tcp", "i/o timeout",
                                    "connection reset", "ssh:", "subprocess ssh", "unable to start the sftp")):
            msg = f"cannot reach the restic repository at {repo} ({fatal})"
        elif "is there a repository" in low or "repository does not exist" in low:
            msg = f"no restic repository at {repo}: create one with `doit offsite init=1`"
        else:
            msg = f"restic {cmd} failed on {repo} (exit {code}): {fatal}"
        return UndoitError(f"{msg}; {UNTOUCHED}")

    def init(self) -> None:
        self.run("init")
        say(f"offsite: restic repository created at {self.o.repository}")

    def sets(self) -> dict[str, dict]:
        """Set id -> {"snapshot", "path", "time", "tags"} of this project's sets in the
        repository (tags: its key=value tags, set=, kind=, cycle=, git=)."""
        out = {}
        for snap in json.loads(self.run("--no-lock", "snapshots", "--json", "--tag",
                                        f"project={self.plan.project_name}") or "[]"):
            tags = dict(t.split("=", 1) for t in snap.get("tags") or [] if "=" in t)
            if "set" in tags and snap.get("paths"):
                out[tags["set"]] = {"snapshot": snap["id"], "path": snap["paths"][0], "time": snap.get("time"),
                                    "tags": tags}
        return out

    def remote_set(self, set_id: str, info: dict) -> SnapshotSet:
        """A set only the repository holds, as its manifest there says (read with `restic
        dump`), with the image ids it ran (manifest["images_ran"], from its images.json:
        their pins stay while it does)."""
        folder = info["path"].rstrip("/")
        try:
            manifest = json.loads(self.run("dump", info["snapshot"], f"{folder}/{snapshots.MANIFEST}"))
        except ValueError:
            raise UndoitError(f"the repository's copy of set {set_id} has an unreadable manifest; "
                              f"{UNTOUCHED}") from None
        try:
            images = json.loads(self.run("dump", info["snapshot"], f"{folder}/images.json"))
        except (UndoitError, ValueError):
            images = {}  # a set from before images were recorded
        manifest["images_ran"] = sorted({i["id"] for i in images.values() if isinstance(i, dict) and "id" in i})
        return SnapshotSet(set_id, Path(folder), manifest)

    def tag_names(self) -> set[str]:
        """The backup tag names the repository's sets carry (their cycle= and git= tags)."""
        return {name for info in self.sets().values() for key in ("cycle", "git")
                if (name := info["tags"].get(key))}


def find(plan, set_id: str) -> SnapshotSet:
    """The set named set=ID, here; one that only the offsite repository holds is named as
    such, with the command that brings it (the repository is asked only then)."""
    try:
        return snapshots.get_set(plan.snapshots_dir, set_id)
    except UndoitError as err:
        if plan.offsite is None:
            raise
        try:
            there = set_id in Repo(plan).sets()
        except UndoitError:
            raise err from None
        if there:
            raise UndoitError(f"set {set_id} is in the offsite repository ({plan.offsite.repository}), not here: "
                              f"`doit fetch set={set_id}` brings it back") from None
        raise


