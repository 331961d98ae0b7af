"""Incremental detokenization with stop strings."""

from __future__ import annotations

from chimera_core.serving.text import TextTracker

PIECES = {1: "Hel", 2: "lo", 3: " wor", 4: "ld", 5: "\ufffd", 6: "!"}


def decode(ids: list[int]) -> str:
    text = "".join(PIECES[i] for i in ids)
    # 5 then 6 is one character split over two tokens (like UTF-8 bytes).
    return text.replace("\ufffd!", "é")


def test_stop_string_across_tokens_cuts_the_text() -> None:
    tracker = TextTracker(decode, stop=["o wo"])
    released = [tracker.add(1), tracker.add(2)]
    assert "".join(released) == "Hell"  # the "o" is held: it may begin the stop string
    assert not tracker.stopped
    released.append(tracker.add(3))
    assert tracker.stopped
    assert tracker.text == "Hell"
    assert "".join(released) == "Hell"


def test_held_text_is_released_when_it_stops_matching() -> None:
    tracker = TextTracker(decode, stop=["lox"])
    out = tracker.add(1) + tracker.add(2)
    assert out == "Hel"
    out += tracker.add(3)
    assert out == "Hello wor" and not tracker.stopped


def test_incomplete_characters_are_held_then_flushed() -> None:
    tracker = TextTracker(decode)
    assert tracker.add(1) == "Hel"
    assert tracker.add(5) == ""  # half a character
    assert tracker.add(6) == "é"
    assert tracker.add(4) == "ld"
    assert tracker.flush() == ""
    assert tracker.text == "Heléld"


def test_flush_releases_a_held_stop_prefix() -> None:
    tracker = TextTracker(decode, stop=["ld!"])
    out = tracker.add(1) + tracker.add(2) + tracker.add(3) + tracker.add(4)
    assert out == "Hello wor"
    assert out + tracker.flush() == "Hello world"
