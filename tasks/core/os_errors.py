"""What an operating-system error means for the user, worded by its cause: a full disk is not a permission problem.

``os_error_reason(exc)`` gives the cause and what to do, in a phrase to put after what was being
done ("writing frozen.pb: the disk is full; free space or write elsewhere"). ``is_transient`` says
whether trying the same thing again may succeed.
"""

from __future__ import annotations

import errno

# errno -> (what happened, what to do). Anything not listed keeps the system's own wording.
_CAUSES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", "free space on it or choose another location"),
    errno.EDQUOT: ("the disk quota is used up", "free space in your quota or choose another location"),
    errno.EACCES: ("permission denied", "fix its permissions or choose another location"),
    errno.EPERM: ("the operation is not permitted", "fix its permissions or ownership, or choose another location"),
    errno.EROFS: ("the file system is read-only", "choose a location on a writable file system"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose a path made of folders"),
    errno.EISDIR: ("it is a folder, not a file", "name a file"),
    errno.ENOENT: ("a folder on the path does not exist", "create it or fix the path"),
    errno.EEXIST: ("something already exists there", "remove it or choose another name"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "choose a shorter path"),
    errno.EMFILE: ("too many files are open in this process", "raise the limit (ulimit -n) and run again"),
    errno.ENFILE: ("too many files are open on this machine", "close some and run again"),
    errno.EIO: ("an input/output error occurred on the device", "check the disk and run again"),
    errno.EXDEV: ("the source and target are on different file systems", "choose a target on the same one"),
}
_ABOUT_DEVICE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE})
_TRANSIENT = frozenset({errno.EAGAIN, errno.EINTR, errno.EIO, errno.ETIMEDOUT, errno.EBUSY})


def os_error_reason(exc: OSError, said: str = "") -> str:
    """``cause; what to do`` for an OSError, one line, naming the file the error carries unless ``said`` (what
    the caller already says) names it."""
    cause, action = _CAUSES.get(exc.errno or -1, (exc.strerror or str(exc) or type(exc).__name__, ""))
    about_file = exc.errno not in _ABOUT_DEVICE  # a full disk is not the fault of the file being copied
    where = f" ({exc.filename})" if about_file and exc.filename and str(exc.filename) not in said else ""
    text = f"{cause}{where}"
    return f"{text}; {action}" if action else text


def is_transient(exc: OSError) -> bool:
    """Whether the same operation may succeed if tried again unchanged."""
    return exc.errno in _TRANSIENT
