"""HLS media playlists: what RFC 8216 requires of them, checked by reading the text back
with a small strict parser, for hand-written cases and generated ones."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.hls import HLS_VERSION, HlsError, HlsSegment, media_playlist


@dataclass
class Parsed:
    tags: dict[str, str] = field(default_factory=dict)
    # (uri, duration_s, map in force, discontinuity before it, program date)
    segments: list[tuple[str, float, str, bool, str | None]] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    ended: bool = False


def parse(text: str) -> Parsed:
    """Every line is a known tag or a URI following #EXTINF; anything else fails."""
    assert text.endswith("\n") and "\r" not in text
    lines = text[:-1].split("\n")
    assert lines[0] == "#EXTM3U"
    out = Parsed()
    current_map = ""
    pending: dict[str, object] = {}
    for line in lines[1:]:
        assert not out.ended, "nothing may follow EXT-X-ENDLIST"
        if line.startswith('#EXT-X-MAP:URI="'):
            assert line.endswith('"')
            current_map = line[len('#EXT-X-MAP:URI="') : -1]
            out.maps.append(current_map)
        elif line == "#EXT-X-DISCONTINUITY":
            pending["disc"] = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pending["date"] = line.split(":", 1)[1]
        elif line.startswith("#EXTINF:"):
            assert line.endswith(",")
            pending["duration"] = float(line[len("#EXTINF:") : -1])
        elif line == "#EXT-X-ENDLIST":
            out.ended = True
        elif line.startswith("#EXT"):
            name, _, value = line.partition(":")
            assert name not in out.tags
            out.tags[name] = value
        else:
            assert "duration" in pending and current_map, f"URI without EXTINF/MAP: {line}"
            out.segments.append(
                (
                    line,
                    float(pending["duration"]),  # type: ignore[arg-type]
                    current_map,
                    bool(pending.get("disc")),
                    pending.get("date"),  # type: ignore[arg-type]
                )
            )
            pending = {}
    assert not pending, "tags after the last segment"
    return out


def seg(uri: str, ms: int, init: str = "init/a.mp4", **kw: object) -> HlsSegment:
    return HlsSegment(uri, ms, init, **kw)  # type: ignore[arg-type]


def test_vod_playlist_layout() -> None:
    text = media_playlist(
        [
            seg("seg/1.mp4?expires=9&sign=ab", 1000, program_date_ms=1_795_900_729_509),
            seg("seg/2.mp4?expires=9&sign=cd", 2500),
        ]
    )
    assert text == (
        "#EXTM3U\n"
        f"#EXT-X-VERSION:{HLS_VERSION}\n"
        "#EXT-X-TARGETDURATION:3\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-MAP:URI="init/a.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-28T21:18:49.509Z\n"
        "#EXTINF:1.000,\n"
        "seg/1.mp4?expires=9&sign=ab\n"
        "#EXTINF:2.500,\n"
        "seg/2.mp4?expires=9&sign=cd\n"
        "#EXT-X-ENDLIST\n"
    )


def test_event_playlist_is_not_ended() -> None:
    parsed = parse(media_playlist([seg("a", 999)], playlist_type="EVENT", ended=False))
    assert parsed.tags["#EXT-X-PLAYLIST-TYPE"] == "EVENT"
    assert not parsed.ended
    assert parsed.tags["#EXT-X-TARGETDURATION"] == "1"


def test_map_repeats_with_a_discontinuity_when_the_init_changes() -> None:
    parsed = parse(
        media_playlist(
            [seg("1", 1000, "i1"), seg("2", 1000, "i1"), seg("3", 1000, "i2"), seg("4", 10, "i2")]
        )
    )
    assert parsed.maps == ["i1", "i2"]
    assert [(s[2], s[3]) for s in parsed.segments] == [
        ("i1", False),
        ("i1", False),
        ("i2", True),
        ("i2", False),
    ]


def test_explicit_discontinuity_repeats_the_map() -> None:
    text = media_playlist([seg("1", 1000), seg("2", 1000, discontinuity=True)])
    assert text.count('#EXT-X-MAP:URI="init/a.mp4"') == 2
    assert parse(text).segments[1][3] is True


def test_empty_playlist_is_still_valid() -> None:
    parsed = parse(media_playlist([]))
    assert parsed.segments == [] and parsed.ended
    assert parsed.tags["#EXT-X-TARGETDURATION"] == "1"


@pytest.mark.parametrize(
    "bad",
    [
        seg("", 1000),
        seg("#EXT-X-ENDLIST", 1000),
        seg("a\nb", 1000),
        seg("a\rb", 1000),
        seg(" a", 1000),
        seg("a", 1000, 'x"y'),
        seg("a", 1000, "x\u0000"),
        seg("a", 0),
        seg("a", -5),
        seg("a", 24 * 3600 * 1000 + 1),
        seg("a", 1000, program_date_ms=-1),
    ],
)
def test_values_that_could_break_the_text_are_refused(bad: HlsSegment) -> None:
    with pytest.raises(HlsError):
        media_playlist([bad])


def test_bad_options() -> None:
    with pytest.raises(HlsError):
        media_playlist([], playlist_type="VOD", ended=False)
    with pytest.raises(HlsError):
        media_playlist([], playlist_type="LIVE")  # type: ignore[arg-type]
    with pytest.raises(HlsError):
        media_playlist([], media_sequence=-1)


uris = st.from_regex(r"[a-z0-9/._?=&%-]{1,40}", fullmatch=True).filter(
    lambda u: not u.startswith("#")
)
segments = st.lists(
    st.builds(
        HlsSegment,
        uri=uris,
        duration_ms=st.integers(min_value=1, max_value=24 * 3600 * 1000),
        map_uri=st.sampled_from(["init/a.mp4", "init/b.mp4?x=1"]),
        discontinuity=st.booleans(),
        program_date_ms=st.none() | st.integers(min_value=0, max_value=2**44),
    ),
    max_size=30,
)


@given(segments, st.booleans())
def test_generated_playlists_follow_the_rfc(items: list[HlsSegment], event: bool) -> None:
    text = media_playlist(items, playlist_type="EVENT" if event else "VOD", ended=not event)
    parsed = parse(text)
    assert parsed.ended is (not event)
    assert [s[0] for s in parsed.segments] == [s.uri for s in items]
    target = int(parsed.tags["#EXT-X-TARGETDURATION"])
    for (_, duration, map_uri, _disc, date), item in zip(parsed.segments, items, strict=True):
        assert duration == item.duration_ms / 1000
        assert round(duration) <= target  # RFC 8216 §4.3.3.1
        assert map_uri == item.map_uri
        assert (date is not None) is (item.program_date_ms is not None)
    assert target == max([1, *(math.ceil(s.duration_ms / 1000) for s in items)])
    for i in range(1, len(items)):
        changed = items[i].map_uri != items[i - 1].map_uri
        assert parsed.segments[i][3] is (items[i].discontinuity or changed)


@given(st.text(max_size=30), st.text(max_size=30))
def test_arbitrary_uris_are_written_verbatim_or_refused(uri: str, map_uri: str) -> None:
    try:
        text = media_playlist([HlsSegment(uri, 1000, map_uri)])
    except HlsError:
        return
    parsed = parse(text)
    assert parsed.segments[0][0] == uri and parsed.maps == [map_uri]
