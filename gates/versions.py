"""Kubernetes and Docker version parsing and ordering.

Pure module: no Django import. The decision engine keys on these values, and neither
``packaging`` nor semver libraries read the versions found on real nodes correctly:

* a Kubernetes pre-release belongs to its line (``v1.7.0-beta.2`` is a 1.7 kubelet) and sorts
  below its release;
* vendor builds are the same release as the upstream one (``v1.6.4+coreos.0``, ``v1.6.2-gke.0``,
  ``1.13.1-cs9``, ``17.03.1-ce``);
* Docker pre-releases (``1.12.0-rc4``) sort below their release;
* Docker's year.month scheme (``17.03`` after ``1.13``) orders numerically.

Anything else raises :class:`VersionError`, a ``ValueError`` whose message says what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = [
    "DockerVersion",
    "KubeVersion",
    "Version",
    "VersionError",
    "parse_docker_version",
    "parse_kube_version",
    "parse_pause_tag",
]

MAX_LENGTH = 128
MAX_COMPONENT = 10**6

# Pre-release kinds in release order; anything else in a suffix is a vendor marker.
_PRERELEASE_RANK = {"dev": 0, "alpha": 1, "beta": 2, "tp": 3, "rc": 4}

_CORE = re.compile(r"^[vV]?(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?(?P<rest>.*)$", re.ASCII)
_SUFFIX_TOKEN = re.compile(r"^[0-9A-Za-z]+$", re.ASCII)
_PRERELEASE_TOKEN = re.compile(r"^(dev|alpha|beta|tp|rc)(\d*)$", re.ASCII)


class VersionError(ValueError):
    """A version string that cannot be read. The message is fit to show to a user."""


@dataclass(frozen=True, order=False)
class Version:
    """A parsed version: numeric core, pre-release marker and vendor build.

    Equality and ordering ignore the vendor build and the original text: ``1.13.1-cs9`` is
    ``1.13.1``. A pre-release sorts below its release.
    """

    major: int
    minor: int
    patch: int = 0
    prerelease: tuple[tuple[int, int], ...] = ()
    vendor: str = field(default="", compare=False)
    text: str = field(default="", compare=False)

    @property
    def line(self) -> tuple[int, int]:
        """The release line (major, minor); a pre-release belongs to its line."""
        return (self.major, self.minor)

    @property
    def line_label(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def _key(self) -> tuple:
        # A release sorts above every pre-release of the same core version.
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, self.prerelease)

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Version) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Version) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Version) -> bool:
        return self._key() >= other._key()

    def __str__(self) -> str:
        return self.text or f"{self.major}.{self.minor}.{self.patch}"


class KubeVersion(Version):
    """A Kubernetes (kubelet) version such as ``v1.7.0-beta.2`` or ``v1.6.4+coreos.0``."""


class DockerVersion(Version):
    """A Docker Engine version such as ``1.12.0-rc4``, ``1.13.1-cs9`` or ``17.03.1-ce``."""


def _split_suffix(rest: str, what: str, text: str) -> tuple[tuple[tuple[int, int], ...], str]:
    """Read what follows the numeric core: pre-release markers and vendor tokens."""
    if not rest:
        return (), ""
    if rest[0] not in "-+~":
        raise VersionError(f"{text!r} is not a {what} version: unexpected {rest[0]!r} after the number")
    build = ""
    if "+" in rest:
        rest, _, build = rest.partition("+")
        if not build or not all(_SUFFIX_TOKEN.match(t) for t in build.split(".")):
            raise VersionError(f"{text!r} is not a {what} version: bad build metadata after '+'")
    tokens = [t for t in re.split(r"[-.~]", rest) if t != ""] if rest else []
    if rest and not tokens:
        raise VersionError(f"{text!r} is not a {what} version: empty suffix")
    prerelease: list[tuple[int, int]] = []
    vendor: list[str] = []
    pending_kind: int | None = None
    for token in tokens:
        if not _SUFFIX_TOKEN.match(token):
            raise VersionError(f"{text!r} is not a {what} version: bad suffix {token!r}")
        lowered = token.lower()
        marker = _PRERELEASE_TOKEN.match(lowered)
        if marker:
            if pending_kind is not None:
                prerelease.append((pending_kind, 0))
            kind = _PRERELEASE_RANK[marker.group(1)]
            if marker.group(2):
                prerelease.append((kind, _bounded(marker.group(2), what, text)))
                pending_kind = None
            else:
                pending_kind = kind
        elif token.isdigit() and pending_kind is not None:
            # "beta.2": the number belongs to the marker before it.
            prerelease.append((pending_kind, _bounded(token, what, text)))
            pending_kind = None
        else:
            if pending_kind is not None:
                prerelease.append((pending_kind, 0))
                pending_kind = None
            if prerelease:
                # Numbers or names after a pre-release marker (git build counts) refine it only.
                continue
            vendor.append(token)
    if pending_kind is not None:
        prerelease.append((pending_kind, 0))
    vendor_text = "-".join(vendor)
    if build:
        vendor_text = f"{vendor_text}+{build}" if vendor_text else f"+{build}"
    return tuple(prerelease[:4]), vendor_text


def _bounded(digits: str, what: str, text: str) -> int:
    if len(digits) > 7 or int(digits) > MAX_COMPONENT:
        raise VersionError(f"{text!r} is not a {what} version: number {digits} is out of range")
    return int(digits)


def _parse(text: object, what: str, cls: type[Version]) -> Version:
    if not isinstance(text, str):
        raise VersionError(f"a {what} version must be a string, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise VersionError(f"a {what} version is required")
    if len(stripped) > MAX_LENGTH:
        raise VersionError(f"a {what} version is at most {MAX_LENGTH} characters")
    match = _CORE.match(stripped)
    if not match:
        raise VersionError(f"{stripped!r} is not a {what} version: expected MAJOR.MINOR[.PATCH], e.g. 1.12.6")
    major = _bounded(match.group("major"), what, stripped)
    minor = _bounded(match.group("minor"), what, stripped)
    patch = _bounded(match.group("patch") or "0", what, stripped)
    prerelease, vendor = _split_suffix(match.group("rest"), what, stripped)
    return cls(major, minor, patch, prerelease, vendor, stripped)


@lru_cache(maxsize=4096)
def parse_kube_version(text: str) -> KubeVersion:
    """Parse a kubelet version (``v1.6.4``, ``1.7.0-beta.2``, ``v1.6.2-gke.0``)."""
    return _parse(text, "Kubernetes", KubeVersion)  # type: ignore[return-value]


@lru_cache(maxsize=4096)
def parse_docker_version(text: str) -> DockerVersion:
    """Parse a Docker Engine version (``1.12.6``, ``1.12.0-rc4``, ``17.03.1-ce``)."""
    return _parse(text, "Docker", DockerVersion)  # type: ignore[return-value]


_PAUSE_TAG = re.compile(r"^(?:[vV])?(\d+)\.(\d+)(?:\.(\d+))?(?:[-.+_].*)?$", re.ASCII)


@lru_cache(maxsize=1024)
def parse_pause_tag(image: str) -> Version | None:
    """The version in a pause image reference's tag (``k8s.gcr.io/pause-amd64:3.1`` -> 3.1).

    Returns None when the reference has no readable version tag (a digest, ``latest``).
    """
    if not isinstance(image, str) or not image:
        return None
    reference = image.split("@", 1)[0]
    last_segment = reference.rsplit("/", 1)[-1]
    if ":" not in last_segment:
        return None
    tag = last_segment.rsplit(":", 1)[1]
    match = _PAUSE_TAG.match(tag)
    if not match:
        return None
    numbers = [int(g) if g else 0 for g in match.groups()]
    if max(numbers) > MAX_COMPONENT:
        return None
    return Version(numbers[0], numbers[1], numbers[2], text=tag)
