"""The per-device topic ACL, attacked: a device must never reach another device's traffic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.topics import may_publish, may_subscribe, topic_matches

P, D = "ABCDEFGHIJ", "lock01"
OTHER_P, OTHER_D = "ZYXWVUTSRQ", "lock02"

OWN_UP = [
    f"$thing/up/{kind}/{P}/{D}" for kind in ("property", "event", "action", "service", "raw")
] + [
    f"$ota/report/{P}/{D}",
    f"$sys/operation/{P}/{D}",
    f"$log/operation/{P}/{D}",
    f"$gateway/operation/{P}/{D}",
    f"$shadow/operation/{P}/{D}",
    f"$template/operation/{P}/{D}",
    f"$rrpc/txd/{P}/{D}/12345",
    f"$resource/up/service/{P}/{D}",
    f"$video/up/{P}/{D}",
    f"{P}/{D}/data",
    f"{P}/{D}/event/sub/level",
]
OWN_DOWN = [
    f"$thing/down/{kind}/{P}/{D}" for kind in ("property", "event", "action", "service", "raw")
] + [
    f"$ota/update/{P}/{D}",
    f"$sys/operation/result/{P}/{D}",
    f"$log/operation/result/{P}/{D}",
    f"$gateway/operation/result/{P}/{D}",
    f"$shadow/operation/result/{P}/{D}",
    f"$template/operation/result/{P}/{D}",
    f"$rrpc/rxd/{P}/{D}/+",
    f"$rrpc/rxd/{P}/{D}/98765",
    f"$broadcast/rxd/{P}/{D}",
    f"$resource/down/service/{P}/{D}",
    f"$video/down/{P}/{D}",
    f"{P}/{D}/control",
    f"{P}/{D}/#",
    f"{P}/{D}/+",
    f"{P}/{D}/+/status",
]


@pytest.mark.parametrize("topic", OWN_UP)
def test_publishes_to_own_up_topics(topic: str) -> None:
    assert may_publish(P, D, topic)


@pytest.mark.parametrize("topic_filter", OWN_DOWN)
def test_subscribes_to_own_down_topics(topic_filter: str) -> None:
    assert may_subscribe(P, D, topic_filter)


def _swap(topic: str, product_id: str, device_name: str) -> str:
    return topic.replace(P, product_id).replace(D, device_name)


@pytest.mark.parametrize("topic", OWN_UP)
@pytest.mark.parametrize(("p", "d"), [(P, OTHER_D), (OTHER_P, D), (OTHER_P, OTHER_D)])
def test_never_another_devices_up_topics(topic: str, p: str, d: str) -> None:
    assert not may_publish(P, D, _swap(topic, p, d))


@pytest.mark.parametrize("topic_filter", OWN_DOWN)
@pytest.mark.parametrize(("p", "d"), [(P, OTHER_D), (OTHER_P, D), (OTHER_P, OTHER_D)])
def test_never_another_devices_down_topics(topic_filter: str, p: str, d: str) -> None:
    assert not may_subscribe(P, D, _swap(topic_filter, p, d))


@pytest.mark.parametrize("topic", [t for t in OWN_DOWN if t.startswith("$")])
def test_cannot_publish_to_down_topics(topic: str) -> None:
    # Publishing on a down-topic would impersonate the cloud to itself (or a subscriber).
    assert not may_publish(P, D, topic.replace("/+", "/1"))


@pytest.mark.parametrize("topic", OWN_UP[:-2])
def test_cannot_subscribe_to_up_topics(topic: str) -> None:
    assert not may_subscribe(P, D, topic)


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "+",
        "$thing/#",
        "$thing/down/#",
        "$thing/down/property/#",
        f"$thing/down/property/{P}/#",
        f"$thing/down/property/{P}/+",
        "$thing/down/property/+/+",
        f"$thing/down/property/+/{D}",
        f"$thing/down/+/{P}/{D}",
        f"$thing/+/property/{P}/{D}",
        f"+/down/property/{P}/{D}",
        "$ota/update/#",
        f"$ota/update/{P}/+",
        "$rrpc/rxd/#",
        f"$rrpc/rxd/{P}/+/+",
        f"$rrpc/rxd/{P}/{D}/#",
        f"$rrpc/rxd/+/{D}/+",
        f"{P}/#",
        f"{P}/+",
        f"{P}/+/data",
        f"+/{D}/data",
        "+/+/#",
        "+/#",
        f"$broadcast/rxd/{P}/+",
    ],
)
def test_wildcards_that_could_reach_other_devices_are_refused(topic_filter: str) -> None:
    assert not may_subscribe(P, D, topic_filter)


@pytest.mark.parametrize(
    "topic",
    [
        f"{P}{D}x/data",
        f"{P}{D}/data",
        f"{P}/{D}x/data",
        f"{P}x/{D}/data",
        f"x{P}/{D}/data",
        f"{P}/{D}",
        f"{P}/{D}/",
        f"{P}/{D}x",
        f"$thing/up/property/{P}/{D}/extra",
        f"$thing/up/property/{P}/{D}x",
        f"$thing/up/property/{P}{D}",
        f"$thing/up/property/x/{P}/{D}",
        f"$thing/up/propertyx/{P}/{D}",
        f"$thing/up//{P}/{D}",
        f"$thing/up/property/{P}//{D}",
        f"/$thing/up/property/{P}/{D}",
        f"$thing/up/property/{P}/{D}/",
        f"$rrpc/txd/{P}/{D}",
        f"$rrpc/txd/{P}/{D}/",
        f"$rrpc/txd/{P}/{D}/1/2",
        f"$rrpc/rxd/{P}/{D}/1",
        f"$sys/operation/result/{P}/{D}",
        f"$thing/up/property/{P.lower()}/{D}",
        "",
        f"$thing/up/property/{P}/{D}\x00",
        f"$thing/up/property/{P}/+",
        f"{P}/{D}/#",
    ],
)
def test_prefix_and_structure_tricks_refused_for_publish(topic: str) -> None:
    assert not may_publish(P, D, topic)


@pytest.mark.parametrize(
    "topic_filter",
    [
        f"{P}{D}x/#",
        f"{P}/{D}x/#",
        f"{P}/{D}",
        f"{P}/{D}/",
        f"{P}/{D}/#/x",
        f"{P}/{D}/a+",
        f"$thing/down/property/{P}/{D}/#",
        f"$thing/down/property/{P}/{D}x",
        f"$rrpc/rxd/{P}/{D}/",
        f"$rrpc/rxd/{P}/{D}/1/2",
        "",
    ],
)
def test_prefix_and_structure_tricks_refused_for_subscribe(topic_filter: str) -> None:
    assert not may_subscribe(P, D, topic_filter)


@pytest.mark.parametrize(
    ("p", "d"),
    [("", D), (P, ""), (P, "a/b"), (P, "+"), (P, "#"), ("AB/CD", D), (P, "x\x00")],
)
def test_identities_that_would_distort_levels_get_nothing(p: str, d: str) -> None:
    assert not may_publish(p, d, f"$thing/up/property/{p}/{d}")
    assert not may_subscribe(p, d, f"$thing/down/property/{p}/{d}")
    assert not may_subscribe(p, d, f"{p}/{d}/#")


def test_video_signalling_topics_are_per_device() -> None:
    """ivcloud's $video extension: own up-topic to publish, own down-topic to subscribe,
    never another device's, never the other direction, no wildcards."""
    assert may_publish(P, D, f"$video/up/{P}/{D}")
    assert may_subscribe(P, D, f"$video/down/{P}/{D}")
    for p, d in [(OTHER_P, OTHER_D), (P, OTHER_D), (OTHER_P, D)]:
        assert not may_publish(P, D, f"$video/up/{p}/{d}")
        assert not may_subscribe(P, D, f"$video/down/{p}/{d}")
    assert not may_publish(P, D, f"$video/down/{P}/{D}")  # impersonating the cloud
    assert not may_subscribe(P, D, f"$video/up/{P}/{D}")  # reading its own requests back
    for bad in (
        "$video/#",
        "$video/down/#",
        f"$video/down/{P}/+",
        "$video/down/+/+",
        f"$video/+/{P}/{D}",
        f"$video/down/{P}/{D}/#",
    ):
        assert not may_subscribe(P, D, bad)
    assert not may_publish(P, D, f"$video/up/{P}/{D}/extra")


# -- property: an allowed filter never matches a topic of another device ---------------------

_seg = st.text(alphabet="ABCDlock01x$", min_size=0, max_size=4)
_devices = st.tuples(
    st.sampled_from([P, OTHER_P, P + "x", "x"]), st.sampled_from([D, OTHER_D, D + "x", ""])
)
_kinds = st.sampled_from(
    ["$thing/down/property", "$ota/update", "$rrpc/rxd", "$broadcast/rxd", "$sys/operation/result"]
)


@st.composite
def _foreign_topic(draw: st.DrawFn) -> str:
    p, d = draw(_devices.filter(lambda pd: pd != (P, D)))
    shape = draw(st.integers(0, 2))
    if shape == 0:
        return f"{draw(_kinds)}/{p}/{d}"
    if shape == 1:
        return f"$rrpc/rxd/{p}/{d}/{draw(_seg)}"
    return f"{p}/{d}/{draw(_seg)}"


@st.composite
def _candidate_filter(draw: st.DrawFn) -> str:
    levels = draw(
        st.lists(
            st.one_of(st.sampled_from(["+", P, D, OTHER_P, OTHER_D, "$rrpc", "rxd", "x"]), _seg),
            min_size=1,
            max_size=6,
        )
    )
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels)


@given(_candidate_filter(), _foreign_topic())
def test_property_allowed_filter_never_matches_foreign_topic(topic_filter: str, topic: str) -> None:
    if may_subscribe(P, D, topic_filter):
        assert not topic_matches(topic_filter, topic), (topic_filter, topic)
