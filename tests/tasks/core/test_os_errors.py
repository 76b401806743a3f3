"""OS errors worded by their cause (issue 17: a full disk was reported as a permission problem)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tasks.core.os_errors import is_transient, os_error_reason


def raised(action) -> OSError:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as failure:
        action()
    return failure.value


def test_real_errors_read_by_their_cause(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    not_a_folder = raised(lambda: (tmp_path / "file" / "child").mkdir())
    a_folder = raised(lambda: open(tmp_path, "wb"))
    missing = raised(lambda: (tmp_path / "no" / "such").write_text("x"))

    assert os_error_reason(not_a_folder) == (
        f"a part of the path is a file, not a folder ({tmp_path / 'file' / 'child'}); choose a path made of folders")
    assert os_error_reason(a_folder).startswith(f"it is a folder, not a file ({tmp_path})")
    assert os_error_reason(missing).startswith("a folder on the path does not exist")


@pytest.mark.parametrize(
    ("number", "cause"),
    [
        (errno.ENOSPC, "the disk is full; free space on it or choose another location"),
        (errno.EDQUOT, "the disk quota is used up; free space in your quota or choose another location"),
        (errno.EACCES, "permission denied; fix its permissions or choose another location"),
        (errno.EROFS, "the file system is read-only; choose a location on a writable file system"),
    ],
)
def test_each_cause_has_its_own_words(number: int, cause: str) -> None:
    assert os_error_reason(OSError(number, "system text")) == cause


def test_an_unlisted_error_keeps_the_system_wording_and_only_transient_ones_are_retried() -> None:
    assert os_error_reason(OSError(errno.ELOOP, "Too many levels of symbolic links")) == \
        "Too many levels of symbolic links"
    assert is_transient(OSError(errno.EAGAIN, "x")) and not is_transient(OSError(errno.ENOSPC, "x"))
