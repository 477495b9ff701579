"""Stop sequences matched on text, across token boundaries, never emitted."""

from __future__ import annotations

from collections.abc import Sequence


class StopMatcher:
    """Holds back text that might be the start of a stop sequence until it is decided.

    Text pushed in comes out once it can no longer be part of a stop sequence; when a
    stop sequence completes, the text before it comes out and generation should end.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.pending = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Add generated text; return (text safe to emit, whether a stop sequence matched)."""
        if not self.stops:
            return text, False
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            emit = self.pending[: min(hits)]
            self.pending = ""
            return emit, True
        hold = self._longest_partial_stop()
        emit = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold :]
        return emit, False

    def flush(self) -> str:
        """Generation ended without a stop sequence: what was held back is real text."""
        rest, self.pending = self.pending, ""
        return rest

    def _longest_partial_stop(self) -> int:
        """Length of the longest suffix of pending text that begins some stop sequence."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.pending)), longest, -1):
                if self.pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest
