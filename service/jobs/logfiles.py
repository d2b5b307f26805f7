"""Opening a job's log without following links a job may plant (issue 14, attack 7).

A job runs as the server user and writes its own log directory, so it can replace
``job.log`` (or its own directory) by a symbolic link to any file the server can read — the
database, a key file — and wait for someone to open its log page. :func:`open_log` therefore
walks from the configured log root to the log one component at a time with
``openat(..., O_NOFOLLOW)`` (every directory below the root and the file itself must be real,
not links), refuses a path outside the root, and opens only a regular file (``O_NONBLOCK``,
so a planted FIFO cannot hang the request).

It lives with the jobs (whose executors write the logs under the log root) because it does
file I/O, which the pure ``platform/`` may not. Its readers: the jobs API
(:mod:`assay.service.api.jobs`) and the dashboard's trial page (:mod:`assay.dashboards.jobs`,
which may import this one module of the jobs package: ``tests/test_layering.py``).

May import: :mod:`assay.platform.errors` and the standard library only.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from assay.platform.errors import NotFoundError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class LogUnavailableError(NotFoundError):
    """The log is not a regular file inside the log root (missing, elsewhere, or a link)."""

    code = "log_unavailable"


def _relative_parts(log_dir: str, log_path: str) -> list[str] | None:
    target = os.path.abspath(log_path)
    for root in (os.path.realpath(log_dir), os.path.abspath(log_dir)):
        rel = os.path.relpath(target, root)
        if (
            rel != "."
            and not rel.startswith(".." + os.sep)
            and rel != ".."
            and not os.path.isabs(rel)
        ):
            return [p for p in rel.split(os.sep) if p]
    return None


def open_log(log_dir: str, log_path: str) -> BinaryIO:
    """The log file opened for binary reading, never through a symbolic link.

    Raises:
        LogUnavailableError: missing, outside ``log_dir``, a link anywhere below ``log_dir``,
            or not a regular file.
    """
    parts = _relative_parts(log_dir, log_path)
    if not parts:
        raise LogUnavailableError(
            "the job's log is not under this server's log directory (it ran elsewhere; use a "
            "shared ASSAY_LOG_DIR)"
        )
    try:
        fd = os.open(os.path.realpath(log_dir), os.O_RDONLY | _DIRECTORY)
    except OSError as e:
        raise LogUnavailableError("the log directory does not exist on this server") from e
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        file_fd = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=fd)
    except FileNotFoundError as e:
        raise LogUnavailableError("the job's log does not exist (yet) on this server") from e
    except OSError as e:  # ELOOP / ENOTDIR: a link where a file or directory should be
        raise LogUnavailableError(
            "the job's log is not a regular file in its directory (a link?); refused"
        ) from e
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise LogUnavailableError("the job's log is not a regular file; refused")
    return os.fdopen(file_fd, "rb")


def read_tail(f: BinaryIO, nbytes: int) -> str:
    """The last ``nbytes`` of an open file, decoded (bad bytes replaced)."""
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - nbytes))
    return f.read(nbytes).decode("utf-8", "replace")
