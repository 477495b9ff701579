"""The turn state machine and the registry, without a server: states, sequence numbers,
resume without gap or repeat, one turn per conversation, stop from any listener."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from app_service import frames
from app_service.turn import InvalidTransition, StopReason, Turn, TurnRequest, TurnState
from app_service.turn_registry import TurnRegistry
from app_service.user_activity import UserActivity
from chatstack.errors import APIError

MESSAGE = {
    "id": "msg_1",
    "conversation_id": "conv_1",
    "parent_id": "msg_0",
    "sibling_ids": ["msg_1"],
    "role": "assistant",
    "content": "",
    "status": "streaming",
    "attachments": [],
    "sources": [],
    "usage": None,
    "finish_reason": None,
    "error": None,
    "created_at": 1.0,
    "finished_at": None,
    "model": None,
}


def done(message: dict[str, Any]) -> frames.Done:
    return frames.Done(
        conversation_id="conv_1",
        message=message,
        usage=None,
        finish_reason="stop",
        sources=[],
        request_id="r.1",
    )


def new_turn(published: list[dict[str, Any]], **kwargs: Any) -> Turn:
    return Turn(
        "user_1",
        TurnRequest("send", "conv_1", "hi"),
        "r.1",
        publish=published.append,
        lock=threading.RLock(),
        **kwargs,
    )


# ---- the state machine -------------------------------------------------------------------


def test_a_turn_goes_accepted_generating_complete_with_numbered_deltas() -> None:
    published: list[dict[str, Any]] = []
    turn = new_turn(published)
    assert turn.state is TurnState.ACCEPTED
    turn.begin(MESSAGE)
    for text in ("Hel", "lo", "!"):
        turn.add_text(text)
    turn.finish(TurnState.COMPLETE, done({**MESSAGE, "content": "Hello!", "status": "complete"}))
    assert turn.state is TurnState.COMPLETE and turn.ended.is_set()
    assert [f["type"] for f in published] == ["start", "delta", "delta", "delta", "done"]
    assert [f["seq"] for f in published if f["type"] == "delta"] == [1, 2, 3]
    assert turn.text == "Hello!"


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([], TurnState.COMPLETE),  # an answer completes only by generating
        ([TurnState.GENERATING], TurnState.ACCEPTED),
        ([TurnState.GENERATING, TurnState.STOPPED], TurnState.GENERATING),
    ],
)
def test_edges_the_machine_lacks_are_refused(path: list[TurnState], bad: TurnState) -> None:
    turn = new_turn([])
    for state in path:
        turn._move(state)
    with pytest.raises(InvalidTransition):
        turn._move(bad)


def test_text_outside_generating_is_a_bug() -> None:
    turn = new_turn([])
    with pytest.raises(InvalidTransition):
        turn.add_text("early")


def test_ending_twice_keeps_the_first_end() -> None:
    published: list[dict[str, Any]] = []
    ended: list[Turn] = []
    turn = new_turn(published, on_end=ended.append)
    turn.begin(MESSAGE)
    turn.finish(TurnState.STOPPED, done(MESSAGE))
    turn.finish(TurnState.FAILED, done(MESSAGE))
    assert turn.state is TurnState.STOPPED
    assert ended == [turn] and [f["type"] for f in published].count("done") == 1


def test_a_continue_begins_with_the_text_so_far() -> None:
    turn = new_turn([])
    turn.begin({**MESSAGE, "content": "Once upon"})
    turn.add_text(" a time")
    snapshot = turn.snapshot()
    assert snapshot["message"]["content"] == "Once upon a time" and snapshot["seq"] == 1


def test_stop_keeps_the_first_reason_and_aborts_the_upstream() -> None:
    turn = new_turn([])
    aborted = []
    turn.on_upstream(lambda: aborted.append(True))
    turn.stop(StopReason.TIME_LIMIT)
    turn.stop(StopReason.USER)
    assert turn.stop_reason is StopReason.TIME_LIMIT and aborted == [True, True]
    late = new_turn([])
    late.stop()
    late.on_upstream(lambda: aborted.append("late"))  # a stop before the stream opened
    assert aborted[-1] == "late"


# ---- resume: snapshot + live deltas, no gap, no repeat -------------------------------------


def replay(frames_seen: list[dict[str, Any]]) -> tuple[str, list[int]]:
    """What a client following the protocol shows: a resume's text, then deltas after it,
    skipping repeats; and the seqs it applied."""
    text, last, applied = "", 0, []
    for frame in frames_seen:
        if frame["type"] == "resume":
            text, last = (frame["message"] or {}).get("content", ""), frame["seq"]
        elif frame["type"] == "delta" and frame["seq"] > last:
            assert frame["seq"] == last + 1, "a gap"
            text, last = text + frame["content"], frame["seq"]
            applied.append(last)
    return text, applied


def test_a_listener_joining_mid_answer_gets_the_text_so_far_then_exactly_the_rest() -> None:
    gate = threading.Event()
    registry = TurnRegistry(lambda turn: gate.wait(10), UserActivity(16, 4), max_seconds=60)
    early: list[dict[str, Any]] = []
    registry.subscribe("user_1", early.append)
    turn = registry.start("user_1", TurnRequest("send", "conv_1", "hi"), "r.1")
    turn.begin(MESSAGE)
    words = [f"w{i} " for i in range(200)]
    late: list[dict[str, Any]] = []

    def produce() -> None:
        for word in words:
            turn.add_text(word)

    producer = threading.Thread(target=produce)
    producer.start()
    registry.subscribe("user_1", late.append)  # while deltas are being published
    producer.join()
    turn.finish(TurnState.COMPLETE, done({**MESSAGE, "content": "".join(words)}))
    gate.set()
    assert late[0]["type"] == "resume"
    for seen in (early, late):
        text, applied = replay(seen)
        assert text == "".join(words)
        assert applied == list(range(applied[0], 201)) if applied else late[0]["seq"] == 200
    # The late listener got no delta its snapshot already held.
    assert all(f["seq"] > late[0]["seq"] for f in late if f["type"] == "delta")


def test_a_resume_asked_for_comes_in_order_with_the_deltas() -> None:
    registry = TurnRegistry(lambda turn: None, UserActivity(16, 4), max_seconds=60)
    gate = threading.Event()
    registry._work = lambda turn: gate.wait(10)
    seen: list[dict[str, Any]] = []
    registry.subscribe("user_1", seen.append)
    turn = registry.start("user_1", TurnRequest("send", "conv_1", "hi"), "r.1")
    turn.begin(MESSAGE)
    turn.add_text("a")
    assert registry.resume("user_1", "conv_1", seen.append)
    turn.add_text("b")
    assert not registry.resume("user_2", "conv_1", seen.append)  # not theirs
    assert not registry.resume("user_1", "conv_2", seen.append)  # nothing there
    assert [(f["type"], f.get("seq")) for f in seen[1:]] == [
        ("delta", 1),
        ("resume", 1),
        ("delta", 2),
    ]
    gate.set()


# ---- the registry ----------------------------------------------------------------------


def blocking_registry(**kwargs: Any) -> tuple[TurnRegistry, threading.Event]:
    gate = threading.Event()

    def work(turn: Turn) -> None:
        gate.wait(10)
        turn.begin(MESSAGE)
        status = TurnState.STOPPED if turn.stopped else TurnState.COMPLETE
        turn.finish(status, done(MESSAGE))

    activity = kwargs.pop("activity", UserActivity(16, 4))
    return TurnRegistry(work, activity, max_seconds=kwargs.pop("max_seconds", 60)), gate


def test_one_turn_per_conversation_others_in_parallel() -> None:
    registry, gate = blocking_registry()
    first = registry.start("user_1", TurnRequest("send", "conv_1", "a"), "r.1")
    with pytest.raises(APIError) as busy:
        registry.start("user_1", TurnRequest("send", "conv_1", "b"), "r.2")
    assert (busy.value.status, busy.value.code) == (409, "busy")
    other = registry.start("user_1", TurnRequest("send", "conv_2", "c"), "r.3")
    # Another user naming the id (their turn fails as not found) never blocks its owner.
    stranger = registry.start("user_2", TurnRequest("send", "conv_1", "d"), "r.4")
    assert (
        registry.running("user_1", "conv_1") is first
        and registry.running("user_1", "conv_2") is other
    )
    gate.set()
    assert first.ended.wait(5) and other.ended.wait(5) and stranger.ended.wait(5)
    assert registry.running("user_1", "conv_1") is None  # freed before the final frame went out


def test_the_per_user_limit_counts_turns_across_conversations() -> None:
    activity = UserActivity(16, 2)
    registry, gate = blocking_registry(activity=activity)
    for n in (1, 2):
        registry.start("user_1", TurnRequest("send", f"conv_{n}", "x"), f"r.{n}")
    with pytest.raises(APIError) as limit:
        registry.start("user_1", TurnRequest("send", "conv_3", "x"), "r.3")
    assert limit.value.code == "too_many_active_turns"
    gate.set()
    for n in (1, 2):
        turn = registry.running("user_1", f"conv_{n}")
        assert turn is None or turn.ended.wait(5)
    assert activity.try_start_turn("user_1")  # the places were given back


def test_only_the_owner_stops_a_turn_and_the_limit_stops_one_nobody_stops() -> None:
    registry, gate = blocking_registry(max_seconds=0.2)
    turn = registry.start("user_1", TurnRequest("send", "conv_1", "a"), "r.1")
    assert not registry.stop("user_2", "conv_1")
    assert turn.ended.wait(0.5) is False  # past the 0.2 s limit, still waiting for work
    gate.set()
    assert turn.ended.wait(5)
    assert turn.stop_reason is StopReason.TIME_LIMIT and turn.state is TurnState.STOPPED


def test_shutdown_stops_every_turn_and_refuses_new_ones() -> None:
    registry, gate = blocking_registry()
    turns = [registry.start("user_1", TurnRequest("send", f"conv_{n}", "x"), "r") for n in (1, 2)]
    threading.Timer(0.1, gate.set).start()
    assert registry.shutdown(timeout=5) == 2
    assert all(t.stop_reason is StopReason.SHUTDOWN and t.ended.is_set() for t in turns)
    with pytest.raises(APIError) as refused:
        registry.start("user_1", TurnRequest("send", "conv_3", "x"), "r")
    assert refused.value.code == "shutting_down"


def test_a_crashing_work_still_frees_its_conversation() -> None:
    def work(turn: Turn) -> None:
        raise RuntimeError("bug")

    activity = UserActivity(16, 1)
    registry = TurnRegistry(work, activity, max_seconds=60)
    registry.start("user_1", TurnRequest("send", "conv_1", "x"), "r")
    for _ in range(100):
        if registry.running("user_1", "conv_1") is None:
            break
        threading.Event().wait(0.01)
    assert registry.running("user_1", "conv_1") is None and activity.try_start_turn("user_1")


def test_a_broken_listener_does_not_cost_the_others_their_frames() -> None:
    registry, gate = blocking_registry()
    good: list[dict[str, Any]] = []

    def broken(frame: dict[str, Any]) -> None:
        raise RuntimeError("gone")

    registry.subscribe("user_1", broken)
    registry.subscribe("user_1", good.append)
    turn = registry.start("user_1", TurnRequest("send", "conv_1", "x"), "r")
    gate.set()
    assert turn.ended.wait(5)
    assert [f["type"] for f in good] == ["start", "done"]
    registry.unsubscribe("user_1", broken)
    registry.unsubscribe("user_1", good.append)
    assert registry._listeners == {}
