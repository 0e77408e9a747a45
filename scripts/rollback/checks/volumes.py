"""The volume-matches check: a volume holds exactly what the set holds."""

from __future__ import annotations

import fnmatch
from dataclasses import replace

from ...plan.registry import CHECKS, CheckType
from ...store import listings


@CHECKS.register
class VolumeMatches(CheckType):
    """The volume holds exactly what the snapshot holds: every entry with its type, owner,
    mode, size, mtime and (regular files) content; nothing missing, nothing extra, except
    paths matching the check's `ignore` globs (files a running service writes, e.g. a pid
    file). Directory mtimes are left out: adding or removing anything in a directory moves
    them, and that is reported as the entry itself."""

    name = "volume-matches"
    summary = "each volume holds exactly what the set holds: every entry and file content (ignore: globs of paths left out)"
    example = {"check": "volume-matches", "volumes": ["pgdata"], "ignore": ["postmaster.pid"]}
    required = frozenset({"volumes"})
    optional = frozenset({"ignore"})

    def describe(self, ctx, check):
        s = ctx.snapshot
        return "volume-matches: " + ", ".join(f"{k} vs set {s.id if s else '?'}" for k in check.args["volumes"])

    def run(self, ctx, check):
        if ctx.snapshot is None:
            return False, "no snapshot set to compare with"
        ignore = [g.strip("/") for g in check.args.get("ignore", ())]
        problems, files = [], 0
        for key in check.args["volumes"]:
            name = ctx.volume_names.get(key) or ctx.snapshot.volumes[key]["name"]
            differences, n = compare(ctx.client, ctx.snapshot.listing(key), name, ignore)
            if differences:
                problems.append(f"{key}: differs from set {ctx.snapshot.id}: {'; '.join(differences)}")
            files += n
        if problems:
            return False, "; ".join(problems)
        return True, (f"{len(check.args['volumes'])} volume(s) hold exactly what set {ctx.snapshot.id} holds "
                      f"({files} file(s), content compared)")


def compare(client, expected_entries, name: str, ignore=()) -> tuple[list[str], int]:
    """How volume (or bind folder) `name` differs from a set's listing of it, at most
    three differences said, and how many files the listing holds. Contents are compared
    where the listing has digests (an archive's); a listing without them (a parked
    safety copy's) compares metadata."""
    from ...stack import volumes  # here: the plan loader imports this module, and volumes the docker SDK

    def kept(entries):  # on disk, as the listings are (a volume may hold millions of files)
        return listings.build(replace(e, mtime_ns=0) if e.type == "d" else e for e in entries
                              if not any(fnmatch.fnmatchcase(e.path.decode("utf-8", "surrogateescape"), g)
                                         for g in ignore))

    expected = kept(expected_entries)
    files = sum(e.type == "f" for e in expected)
    try:
        actual = kept(volumes.listing(client, name))
        if any(e.digest for e in expected):
            sums = volumes.content_digests(client, name)
            actual = listings.build(replace(e, digest=sums.get(e.path, "")) if e.type == "f" else e
                                    for e in actual)
    except Exception as err:  # gone, or unreadable in any way: the comparison's answer, not a crash
        return [f"cannot read {name} ({err})"], files
    return listings.diff(expected, actual, limit=3), files
