"""Images for simulated nodes, built without a registry: ``docker import`` of a small rootfs.

``pidns-sim/busybox`` holds busybox-static (sh, ps, sleep, cat, ...) and tini-static as
``/sbin/tini``: the pause (sandbox) process that reaps orphaned zombies, the app containers'
process, and the node helper's shell.
"""

from __future__ import annotations

import io
import shutil
import tarfile

IMAGE = "pidns-sim/busybox:1"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
TINI_CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/tini")
APPLETS = ("sh", "ps", "sleep", "cat", "cp", "mv", "rm", "cmp", "date", "echo", "printf", "mkdir", "ls", "kill", "true")


class ImageBuildError(RuntimeError):
    pass


def _find(candidates: tuple[str, ...], what: str) -> str:
    for path in candidates:
        if shutil.which(path):
            return path
    raise ImageBuildError(f"{what} not found ({', '.join(candidates)}); apt-get install busybox-static tini")


def rootfs_tar() -> bytes:
    busybox = _find(BUSYBOX_CANDIDATES, "busybox-static")
    tini = _find(TINI_CANDIDATES, "tini")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "sbin", "tmp", "proc", "sys", "dev", "etc", "host"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        tar.add(tini, arcname="sbin/tini")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def ensure_image(api) -> str:
    """Import the simulation image into the engine behind ``api`` (a docker.APIClient) if absent."""
    if api.images(name=IMAGE):
        return IMAGE
    repository, tag = IMAGE.rsplit(":", 1)
    api.import_image_from_data(rootfs_tar(), repository=repository, tag=tag)
    if not api.images(name=IMAGE):
        raise ImageBuildError(f"importing {IMAGE} did not produce an image")
    return IMAGE


def ensure_tag(api, reference: str) -> None:
    """Make ``reference`` (a pause image named in a spec) another name of the local image."""
    if not reference or api.images(name=reference):
        return
    repository, _, tag = reference.rpartition(":") if ":" in reference.rsplit("/", 1)[-1] else (reference, "", "latest")
    api.tag(IMAGE, repository=repository, tag=tag or "latest")
