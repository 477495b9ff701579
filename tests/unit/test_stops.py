from model_api.stops import StopMatcher


def feed(stops, pieces):
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, stopped = matcher.push(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


def test_no_stops_passes_text_through_at_once():
    matcher = StopMatcher([])
    assert matcher.push("Hello") == ("Hello", False)


def test_stop_inside_one_piece_cuts_before_it():
    assert feed(["END"], ["abcENDdef"]) == ("abc", True)


def test_stop_across_piece_boundaries_is_found_and_not_emitted():
    assert feed(["END"], ["ab", "cE", "N", "Dxyz"]) == ("abc", True)


def test_partial_stop_is_held_back_until_decided():
    matcher = StopMatcher(["</s>"])
    assert matcher.push("text</") == ("text", False)
    assert matcher.push("b>") == ("</b>", False)


def test_held_back_text_is_flushed_when_generation_ends():
    assert feed(["END"], ["abcEN"]) == ("abcEN", False)


def test_earliest_of_several_stops_wins():
    assert feed(["xyz", "b"], ["a", "bcxyz"]) == ("a", True)


def test_empty_stop_strings_are_ignored():
    assert feed([""], ["abc"]) == ("abc", False)
