"""Syntax of MQTT topic names and topic filters (MQTT 3.1.1 §4.7).

Shared by the codec (which refuses malformed names on the wire) and by the ACL (which must
never reason about a filter whose wildcards are not where MQTT allows them).
"""

from __future__ import annotations


def valid_topic_name(topic: str) -> bool:
    """A name a PUBLISH may carry: non-empty, no wildcard, no NUL."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    """A filter a SUBSCRIBE may carry: ``+`` only as a whole level, ``#`` only as the whole
    last level, non-empty, no NUL."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return True
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT wildcard matching, including the rule that a filter starting with a wildcard
    does not match a ``$`` topic (so ``#`` never catches ``$thing/...``)."""
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    if topic.startswith("$") and topic_filter[0] in "+#":
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    n_topic = len(t_levels)
    for i, level in enumerate(f_levels):
        if level == "#":
            # '#' also matches the parent level itself: 'a/#' matches 'a'.
            return True
        if i >= n_topic:
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == n_topic
