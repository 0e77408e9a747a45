"""The images a stack ran at backup, kept and put back: pinned per set, run by a rollback's `up`.

A rollback must recreate the containers the stack ran when the set was taken, even
after `docker image prune`, a rebuilt `:latest` or a phase that upgraded an image (a
database major version changes the volume format too). Each image id a set records
(images.json) gets a tag of the kit's, `undoit-pin/<project>:<id>`, which keeps it from
the pruning of untagged images; a rollback's `up` runs exactly those tags, through an
override file next to the project's compose files. With save_images=1 the set also
holds the images themselves (`docker save`), for a machine that lost them (`docker
image prune -a` removes tagged images too). Pins go away with `docker rmi`.
"""

from __future__ import annotations

import json
from pathlib import Path


from ..store import archive
from ..errors import UndoitError

REPO = "undoit-pin"


def pin_name(project: str, image_id: str) -> str:
    return f"{REPO}/{project.lower()}:{image_id.split(':')[-1][:16]}"


def recorded(set_path: Path) -> dict[str, dict]:
    """service -> {"image": the name it ran as, "id": the image id}, as the set recorded."""
    try:
        return json.loads((Path(set_path) / "images.json").read_text())
    except (OSError, ValueError):
        return {}


def images_of(containers) -> dict[str, dict]:
    """service -> {"image": the name it runs as, "id": the image id}, of compose containers
    (what a set records in images.json, and a rollback before its first step)."""
    return {c.labels.get("com.docker.compose.service", c.name): {"image": c.attrs["Config"]["Image"],
                                                                 "id": c.attrs["Image"]} for c in containers}


def pin(client, project: str, images: dict[str, dict]) -> list[str]:
    """Tag every image id the set records (idempotent); returns the pin names."""
    from docker.errors import APIError  # here: the plan loader imports this module
    names = []
    for info in images.values():
        name = pin_name(project, info["id"])
        repo, tag = name.rsplit(":", 1)
        try:
            client.api.tag(info["id"], repo, tag)
        except APIError as err:  # the image vanished between recording and pinning
            raise UndoitError(f"cannot pin image {info['image']} ({info['id'][:19]}): {err}") from None
        names.append(name)
    return sorted(set(names))


def pinned(project: str, client=None) -> dict[str, str]:
    """The kit's pin tags of the project on the engine: tag -> image id."""
    from . import engine

    client = client or engine.client()
    prefix = f"{REPO}/{project.lower()}:"
    return {tag: image.id for image in client.images.list(name=f"{REPO}/{project.lower()}")
            for tag in image.tags if tag.startswith(prefix)}


def unused(project: str, ids: set[str], client=None) -> list[str]:
    """The project's pin tags whose image is none of ids (no kept set ran it)."""
    wanted = {pin_name(project, i) for i in ids}
    return sorted(tag for tag in pinned(project, client) if tag not in wanted)


def release(project: str, tags, client=None) -> None:
    """Remove pin tags (the image itself goes with its last tag, unless a container uses it)."""
    from docker.errors import APIError, ImageNotFound  # here: the plan loader imports this module
    from . import engine

    client = client or engine.client()
    for tag in tags:
        try:
            # force: the tag goes even while a container runs the image (which then stays,
            # untagged, until nothing uses it); another tag of the image keeps it
            client.images.remove(tag, force=True)
        except ImageNotFound:
            continue  # gone already
        except APIError as err:
            raise UndoitError(f"cannot release pin {tag}: {err}") from None


def save(client, images: dict[str, dict], set_path: Path) -> list[dict]:
    """`docker save` of each of the set's images into the set, through zstd; the manifest's
    entries (one file an image: `docker load` takes one archive at a time)."""
    from ..store.snapshots import private_open

    out = []
    for image_id in sorted({info["id"] for info in images.values()}):
        name = f"image-{image_id.split(':')[-1][:16]}.tar.zst"
        with private_open(Path(set_path) / name) as raw:
            w = archive.HashingWriter(raw)
            with archive.zstd_writer(w) as z:
                for chunk in client.api.get_image(image_id, chunk_size=archive.CHUNK):
                    z.write(chunk)
        out.append({"id": image_id, "file": name, "sha256": w.sha.hexdigest(), "size": w.count})
    return out


def check(client, s) -> None:
    """Refuse (before anything changes) when an image the set ran is gone and the set
    holds no copy of it."""
    saved = {e["id"] for e in (s.manifest or {}).get("images") or []}
    for info in recorded(s.path).values():
        if info["id"] not in saved and not _present(client, info["id"]):
            raise UndoitError(f"image {info['image']} ({info['id'][:19]}) that set {s.id} ran is gone from the "
                              "engine and the set holds no copy (back up with save_images=1): nothing was changed")


def ensure(client, s, project: str) -> list[str]:
    """Before a rollback changes anything: every image the set recorded is here (loaded
    from the set when it holds them); else one line naming the image. Returns what it
    loaded."""
    images = recorded(s.path)
    gone = [info for info in images.values() if not _present(client, info["id"])]
    saved = {e["id"]: e for e in (s.manifest or {}).get("images") or []}
    for info in gone:
        entry = saved.get(info["id"])
        if entry is None:
            raise UndoitError(f"image {info['image']} ({info['id'][:19]}) that set {s.id} ran is gone from the "
                              "engine and the set holds no copy (back up with save_images=1): nothing was changed")
        path = s.path / entry["file"]
        if archive.sha256_file(path) != entry["sha256"]:
            raise UndoitError(f"{path} fails its checksum: refusing to load an image from set {s.id}")
    for image_id in sorted({info["id"] for info in gone}):
        client.api.load_image(archive.stream_decompressed(s.path / saved[image_id]["file"]))
    pin(client, project, images)  # a pin tag removed by hand comes back: the override names it
    return sorted({info["image"] for info in gone})


def image_id(client, ref: str | None) -> str | None:
    """The id an image reference resolves to here (None: no such image)."""
    from docker.errors import ImageNotFound  # here: the plan loader imports this module
    if not ref:
        return None
    try:
        return client.images.get(ref).id
    except ImageNotFound:
        return None


def _present(client, image_id: str) -> bool:
    from docker.errors import ImageNotFound  # here: the plan loader imports this module
    try:
        client.images.get(image_id)
        return True
    except ImageNotFound:
        return False


def override(project: str, images: dict[str, dict], services_now, path: Path) -> Path | None:
    """A compose override that runs each service on the image its set recorded (only the
    services the compose file has now: one the change added keeps its own image)."""
    lines = [f"# written by undoit: the images set services ran at backup, pinned as {REPO}/{project}:*",
             "services:"]
    for svc in sorted(set(images) & set(services_now)):
        lines += [f"  {svc}:", f"    image: {pin_name(project, images[svc]['id'])}", "    pull_policy: never"]
    if len(lines) == 2:
        return None
    path.write_text("\n".join(lines) + "\n")
    return path
