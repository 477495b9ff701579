"""Per-user upload limits: slots for uploads in progress, and the storage quota."""

import pytest

from app_service.upload_limits import MiB, UploadLimits, mib
from chatstack.errors import APIError


def error_of(block) -> APIError:
    with pytest.raises(APIError) as caught, block:
        pass
    return caught.value


def test_a_user_gets_at_most_the_limit_of_slots_and_others_are_unaffected():
    limits = UploadLimits(max_in_progress=2, storage_bytes=MiB)
    with limits.slot("alice"), limits.slot("alice"):
        err = error_of(limits.slot("alice"))
        assert err.status == 429
        assert err.code == "too_many_uploads"
        assert err.param == "file"
        assert int(err.headers["Retry-After"]) >= 1
        assert "2 uploads in progress" in err.message
        with limits.slot("bob"):
            pass
    with limits.slot("alice"), limits.slot("alice"):
        pass


def test_a_slot_is_released_when_the_upload_fails():
    limits = UploadLimits(max_in_progress=1, storage_bytes=MiB)
    with pytest.raises(RuntimeError), limits.slot("alice"):
        raise RuntimeError("extraction failed")
    with limits.slot("alice"):
        pass


def test_stored_files_count_against_the_quota():
    limits = UploadLimits(max_in_progress=2, storage_bytes=MiB)
    err = error_of(limits.room("alice", MiB // 2, lambda: 600 * 1024))
    assert err.status == 413
    assert err.code == "quota_exceeded"
    assert "0.6 MiB of your 1 MiB" in err.message
    assert "(0.5 MiB)" in err.message
    with limits.room("alice", MiB // 2, lambda: MiB // 2):
        pass  # exactly full is allowed


def test_uploads_in_flight_are_reserved_so_parallel_ones_cannot_overshoot():
    limits = UploadLimits(max_in_progress=4, storage_bytes=MiB)
    nothing_stored = lambda: 0  # noqa: E731
    with limits.room("alice", 600 * 1024, nothing_stored):
        err = error_of(limits.room("alice", 600 * 1024, nothing_stored))
        assert err.code == "quota_exceeded"
        assert "0.6 MiB of your 1 MiB" in err.message
        with limits.room("bob", 600 * 1024, nothing_stored):
            pass
    with limits.room("alice", 600 * 1024, nothing_stored):
        pass


def test_a_reservation_is_released_when_the_upload_fails():
    limits = UploadLimits(max_in_progress=2, storage_bytes=MiB)
    with pytest.raises(APIError), limits.room("alice", MiB, lambda: 0):
        raise APIError(422, "unreadable")
    with limits.room("alice", MiB, lambda: 0):
        pass


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 MiB"), (600 * 1024, "0.6 MiB"), (MiB, "1 MiB"), (200 * MiB, "200 MiB")],
)
def test_sizes_are_shown_in_mib(size, shown):
    assert mib(size) == shown
