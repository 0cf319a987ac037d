"""Version parsing and ordering: the boundaries the plans depend on, and properties by hypothesis."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gates.versions import VersionError, parse_docker_version, parse_kube_version, parse_pause_tag

D = parse_docker_version
K = parse_kube_version


@pytest.mark.parametrize(
    "text, line, prerelease",
    [
        ("v1.6.0", (1, 6), False),
        ("1.6.4", (1, 6), False),
        ("v1.7.0-beta.2", (1, 7), True),
        ("v1.7.0-alpha.0.1234+abcdef", (1, 7), True),
        ("v1.6.4+coreos.0", (1, 6), False),
        ("v1.6.2-gke.0", (1, 6), False),
        ("v1.10.11-eks-1234", (1, 10), False),
        ("V1.17.0", (1, 17), False),
        ("1.8", (1, 8), False),
    ],
)
def test_kubelet_version_line_and_prerelease(text, line, prerelease):
    version = K(text)
    assert version.line == line
    assert version.is_prerelease is prerelease


@pytest.mark.parametrize(
    "lower, higher",
    [
        ("v1.7.0-beta.2", "v1.7.0"),
        ("v1.7.0-alpha.3", "v1.7.0-beta.1"),
        ("v1.7.0-beta.2", "v1.7.0-rc.1"),
        ("v1.7.0-rc.1", "v1.7.0-rc.2"),
        ("v1.6.9", "v1.7.0-alpha.0"),
        ("v1.9.11", "v1.10.0"),
        ("v1.6.4", "v1.6.10"),
    ],
)
def test_kubelet_versions_order(lower, higher):
    assert K(lower) < K(higher)
    assert K(higher) > K(lower)
    assert K(lower) != K(higher)


@pytest.mark.parametrize(
    "a, b",
    [("v1.6.4+coreos.0", "v1.6.4"), ("v1.6.2-gke.0", "1.6.2"), ("1.6", "v1.6.0")],
)
def test_kubelet_vendor_builds_equal_their_release(a, b):
    assert K(a) == K(b)


@pytest.mark.parametrize(
    "lower, higher",
    [
        ("1.12.0-rc4", "1.12.0"),
        ("1.12.0-rc3", "1.12.0-rc4"),
        ("1.12.0-beta1", "1.12.0-rc1"),
        ("1.11.2", "1.12.0-rc1"),
        ("1.12.6", "1.13.0"),
        ("1.13.0", "1.13.1"),
        ("1.13.1-rc2", "1.13.1"),
        ("1.13.1", "17.03.0-ce"),
        ("1.13.1-cs9", "17.03.1-ce"),
        ("17.03.1-ce", "17.06.0-ce"),
        ("17.06.0-ce-rc1", "17.06.0-ce"),
        ("17.12.1-ce", "18.06.0-ce"),
    ],
)
def test_docker_versions_order(lower, higher):
    assert D(lower) < D(higher)
    assert not D(higher) <= D(lower)


@pytest.mark.parametrize("a, b", [("1.13.1-cs9", "1.13.1"), ("17.03.1-ce", "17.03.1-ee"), ("1.12", "1.12.0")])
def test_docker_vendor_builds_equal_their_release(a, b):
    assert D(a) == D(b)
    assert hash(D(a)) == hash(D(b))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "latest",
        "1",
        "1.",
        "a.b.c",
        "1.2.3.4",
        "1.2.3-",
        "1.2.3+",
        "1.2.3 beta",
        "1.2.3-be ta",
        "１.２.３",
        "1.2.99999999",
        "v",
        "1.2.3_4",
        "x" * 200,
    ],
)
def test_garbage_is_a_clear_version_error(text):
    with pytest.raises(VersionError) as excinfo:
        D(text)
    assert str(excinfo.value)


def test_non_string_is_a_version_error():
    from gates.facts import parse_docker_version_checked, parse_kube_version_checked

    with pytest.raises(VersionError, match="string"):
        parse_docker_version_checked(12)
    with pytest.raises(VersionError, match="required"):
        parse_kube_version_checked(None)


@pytest.mark.parametrize(
    "image, expected",
    [
        ("gcr.io/google_containers/pause-amd64:3.0", (3, 0)),
        ("k8s.gcr.io/pause:3.1", (3, 1)),
        ("registry.k8s.io/pause:3.9", (3, 9)),
        ("localhost:5000/pause:3.2", (3, 2)),
        ("pause@sha256:abcd", None),
        ("k8s.gcr.io/pause:latest", None),
        ("localhost:5000/pause", None),
        ("", None),
    ],
)
def test_pause_tag(image, expected):
    version = parse_pause_tag(image)
    assert (version.line if version else None) == expected


version_text = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A[vV]?\d{1,4}\.\d{1,4}(\.\d{1,4})?([-+.~][0-9A-Za-z.~+-]{0,12})?\Z"),
)


@settings(max_examples=400, deadline=None)
@given(version_text)
def test_parser_raises_only_its_own_error(text):
    for parse in (parse_kube_version, parse_docker_version):
        try:
            version = parse(text)
        except VersionError:
            continue
        assert version.major >= 0 and version.minor >= 0
        # Reparsing the normalised text gives the same version.
        assert parse(str(version)) == version


release_like = st.builds(
    lambda ma, mi, pa, pre: f"{ma}.{mi}.{pa}" + (f"-{pre[0]}{pre[1]}" if pre else ""),
    st.integers(0, 30),
    st.integers(0, 30),
    st.integers(0, 30),
    st.one_of(st.none(), st.tuples(st.sampled_from(["alpha", "beta", "rc", "tp", "dev"]), st.integers(0, 9))),
)


@settings(max_examples=300, deadline=None)
@given(release_like, release_like, release_like)
def test_ordering_is_a_consistent_total_order(a, b, c):
    x, y, z = D(a), D(b), D(c)
    assert (x < y) + (x == y) + (x > y) == 1
    assert (x <= y) == (x < y or x == y)
    if x <= y and y <= z:
        assert x <= z
    assert sorted([x, y, z]) == sorted([z, y, x])
