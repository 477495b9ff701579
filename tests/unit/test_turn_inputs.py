"""Which files a turn has in context, and in what order."""

import json

from app_service.turn_inputs import context_file_ids


def message(*file_ids: str) -> dict:
    return {"attachments": json.dumps([{"id": i, "name": f"{i}.txt"} for i in file_ids])}


def test_files_come_in_the_order_they_were_first_attached_the_new_ones_last():
    messages = [message("a"), message(), message("b", "a"), message("c")]
    question = [{"id": "d", "name": "d.txt"}, {"id": "b", "name": "b.txt"}]
    ids = context_file_ids(question, messages, existing={"a", "b", "c", "d"})
    assert ids == ["a", "b", "c", "d"]


def test_a_regenerated_questions_files_keep_their_place_and_deleted_files_drop_out():
    messages = [message("a"), message("b"), message("c")]  # the question is the last one
    question = [{"id": "c", "name": "c.txt"}]
    assert context_file_ids(question, messages, existing={"b", "c"}) == ["b", "c"]
