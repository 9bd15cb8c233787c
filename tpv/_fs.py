"""Atomic, durable writes that clean up after themselves, and reads of regular files only (internal).

The guarantees (``docs/format.md``, "Reading and writing"):

* **Atomic.** A file is written to a temp sibling, fsynced and renamed over the destination; a folder is built in
  a temp sibling and swapped in. A crash or kill at any moment leaves the complete old or the complete new one.
* **Durable.** The written file (or every file of a written folder) is fsynced before the rename, and the parent
  folder after it, so the rename survives a power loss.
* **Cleaned up.** Temp siblings carry the writer's process id (``.NAME.<pid>.<random>.tmp``); the next write to
  the same destination removes those whose process is gone (left by a kill). A folder swap interrupted between
  its two renames is finished by :func:`recover_dir` on the next read.
* **One overwrite rule.** :func:`check_output` refuses an output that exists unless the caller passed
  ``overwrite=True`` (``--overwrite`` on the command line), and refuses an output that is one of the inputs even
  then: the API's writers (``tpv.save``, ``save_adapter``, ``save_map``, ``TransferResult.save``) and every CLI
  command that writes share it.
* **Regular files only.** An output that exists and is not a regular file (a FIFO, a device, a socket) is refused,
  never replaced; an output that is a symlink is written through (the link stays). An overwritten file keeps its
  permission bits. Inputs opened with :func:`open_regular` are checked to be regular files without blocking.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from tpv.errors import FormatError, OutputExistsError

_NAME_MAX = 255
_STALE_AGE_S = 24 * 3600.0  # temp siblings without a readable pid are removed once this old


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stem(name: str) -> str:
    """The name part of temp siblings: the name itself, or a hashed short form when it is too long."""
    if len(name.encode("utf-8")) <= 180:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return name.encode("utf-8")[:120].decode("utf-8", "ignore") + "~" + digest


def _prefix(dest: Path) -> str:
    return f".{_stem(dest.name)}.{os.getpid()}."


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or ``None`` where unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot; ``None`` where ``/proc`` is unavailable)."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 and fields[19].isdigit() else None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not).

    With ``start`` (from :func:`process_start`), also that it is the process that started then, not a later one
    given the same id.
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True
    if fields[0] in ("Z", "X"):
        return False
    return start is None or process_start(pid) in (None, start)


def clean_stale_siblings(dest: Path) -> list[Path]:
    """Remove temp siblings of ``dest`` (``.NAME.<pid>.*.tmp`` / ``.old``) whose writing process is gone.

    Siblings of another live process (a concurrent writer) are kept. Returns what was removed.
    """
    pattern = re.compile(r"^\." + re.escape(_stem(dest.name)) + r"\.(?:(\d+)\.)?[^/]*\.(tmp|old)$")
    removed: list[Path] = []
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        pid = match.group(1)
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        stale = (not pid_alive(int(pid))) if pid else age > _STALE_AGE_S
        if not stale or (match.group(2) == "old" and not dest.exists()):
            continue  # a lone .old is an interrupted folder swap: recover_dir restores it
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _check_output(dest: Path, *, folder: bool) -> None:
    """Refuse an output that exists and is neither a regular file nor (for folders) a folder."""
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise FormatError(f"{dest}: cannot write here: a parent of this path is a file, not a folder") from None
    if stat.S_ISREG(st.st_mode) or (folder and stat.S_ISDIR(st.st_mode)):
        return
    if stat.S_ISDIR(st.st_mode):
        raise FormatError(f"{dest}: is a folder; give a file path (or remove the folder)")
    raise FormatError(f"{dest}: exists and is not a regular file (a FIFO, socket or device); tpv refuses to replace it")


def _same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    flag: str = "overwrite=True",
    folder: bool = False,
) -> Path:
    """Apply the overwrite rule to one output path before anything is computed or written.

    Args:
        path: the output (file or folder).
        overwrite: whether an existing output may be replaced.
        inputs: the paths the caller reads; the output may be none of them, whatever ``overwrite`` says.
        flag: how the caller spells "overwrite" in the message (``"--overwrite"`` on the command line).
        folder: the output is a folder (else an existing folder at ``path`` is refused as the wrong kind).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OutputExistsError: the output is one of the inputs, or exists and ``overwrite`` is false.
        FormatError: the output exists and is of the wrong kind (a folder for a file, a FIFO, a device), or a
            parent of it is a file.
    """
    out = Path(path)
    _check_output(out, folder=folder)
    for src in inputs:
        if src is not None and _same_path(out, Path(src)):
            raise OutputExistsError(f"{out}: the output is also an input ({src}); write the result to another path")
    if not overwrite and (out.exists() or out.is_symlink()):
        if out.is_dir() and not any(out.iterdir()):
            return out
        raise OutputExistsError(f"{out} already exists; pass {flag} to replace it, or choose another path")
    return out


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _resolve_link(path: Path) -> Path:
    """A symlink output is written through: the link stays, its target is replaced."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _mkparent(dest: Path) -> None:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FormatError(f"{dest}: cannot write here: a parent of this path is a file, not a folder") from None


def _temp_sibling(dest: Path, data: bytes) -> str:
    """Write ``data`` to a new temp sibling of ``dest`` (named for this process) and fsync it; returns its path."""
    fd, tmp = tempfile.mkstemp(prefix=_prefix(dest), suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync, rename over it, fsync the folder.

    Args:
        path: destination; its parent folders are created. A symlink is written through.
        data: the bytes.

    Returns:
        The destination path (as given).

    Raises:
        FormatError: the destination exists and is not a regular file, or a parent is a file.
    """
    given = Path(path)
    dest = _resolve_link(given)
    _mkparent(dest)
    _check_output(dest, folder=False)
    clean_stale_siblings(dest)
    mode, owner = 0o666 & ~_umask(), None
    with contextlib.suppress(OSError):
        old = os.stat(dest)
        mode, owner = stat.S_IMODE(old.st_mode), (old.st_uid, old.st_gid)  # an overwritten file keeps both
    tmp = _temp_sibling(dest, data)
    try:
        if owner is not None and owner != (os.getuid(), os.getgid()):
            with contextlib.suppress(OSError):  # only root (or the owner, for the group) may; else the writer owns it
                os.chown(tmp, *owner)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dest.parent)
    return given


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def create_exclusive(path: str | os.PathLike[str], text: str) -> bool:
    """Create ``path`` holding ``text`` unless something is already there; never half-written.

    The text is written to a temp sibling and fsynced, then hard-linked to ``path`` (which fails when the name
    exists, atomically, also between processes), so a reader sees either no file or the whole text. Where the
    filesystem has no hard links, the file is created with ``O_EXCL`` and then written (a kill in between can
    leave it empty: readers must treat an unreadable file as held by its writer for a while).

    Args:
        path: the file to create; its parent folders are created.
        text: its UTF-8 content.

    Returns:
        Whether this call created it (``False``: it existed).
    """
    dest = Path(path)
    _mkparent(dest)
    data = text.encode("utf-8")
    tmp = _temp_sibling(dest, data)
    try:
        try:
            os.link(tmp, dest)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            try:
                out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False
            with os.fdopen(out, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _fsync_dir(dest.parent)
    return True


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(Path(root))


def recover_dir(path: str | os.PathLike[str]) -> bool:
    """Finish a folder swap that a kill interrupted between its two renames.

    :func:`atomic_dir` moves the old folder aside (``.NAME.<pid>.<random>.old``) before moving the new one in; a
    kill in that gap leaves no folder at ``path`` and the old one beside it. This puts the old one back.

    Returns:
        Whether a folder was restored.
    """
    dest = Path(path)
    if dest.exists() or not dest.parent.is_dir():
        return False
    pattern = re.compile(r"^\." + re.escape(_stem(dest.name)) + r"\.(?:(\d+)\.)?[^/]*\.old$")
    found: list[tuple[float, Path]] = []
    for entry in os.scandir(dest.parent):
        match = pattern.match(entry.name)
        if match is None or (match.group(1) and pid_alive(int(match.group(1)))):
            continue  # a live writer is between its two renames: it finishes the swap itself
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                found.append((entry.stat(follow_symlinks=False).st_mtime, Path(entry.path)))
    if not found:
        return False
    try:
        os.replace(max(found)[1], dest)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            return False  # another process put a folder in place (or took the old one) meanwhile
        raise
    _fsync_dir(dest.parent)
    return True


_SWAP_ATTEMPTS = 5


def _move_aside(dest: Path) -> Path | None:
    """Rename ``dest`` to a fresh ``.old`` sibling (``None`` if there is nothing at ``dest``)."""
    if not (dest.exists() or dest.is_symlink()):
        return None
    old = Path(tempfile.mkdtemp(prefix=_prefix(dest), suffix=".old", dir=dest.parent))
    os.rmdir(old)
    try:
        os.replace(dest, old)
    except FileNotFoundError:  # a concurrent writer moved it first
        return None
    return old


def _discard(old: Path | None) -> None:
    if old is None:
        return
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            old.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder in a temp sibling and move it into place only when the block succeeds.

    An existing folder (or file) at ``path`` is replaced: moved aside, the new folder moved in, the old one deleted.
    Every file is fsynced before the swap and the parent folder after it.

    Args:
        path: the folder to produce.

    Yields:
        The temp folder to write into.

    Raises:
        FormatError: ``path`` exists and is neither a folder nor a regular file, or a parent is a file.
    """
    dest = Path(path)
    _mkparent(dest)
    _check_output(dest, folder=True)
    recover_dir(dest)
    clean_stale_siblings(dest)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(dest), suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the usual permissions
        _fsync_tree(tmp)
        for attempt in range(_SWAP_ATTEMPTS):  # a concurrent writer may put its folder in place between our renames
            old = _move_aside(dest)
            try:
                os.replace(tmp, dest)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == _SWAP_ATTEMPTS - 1:
                    raise FormatError(
                        f"{dest}: could not move the new folder into place ({exc.strerror}); another process keeps "
                        "writing the same folder. Fix: give each process its own output folder"
                    ) from None
                _discard(old)
                continue
            _fsync_dir(dest.parent)
            _discard(old)
            break
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for reading, refusing (without blocking) anything but a regular file.

    Raises:
        FormatError: no such file, a folder, a FIFO / socket / device, or no permission.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FormatError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise FormatError(f"{p}: is a folder, not a file") from None
    except PermissionError:
        raise FormatError(f"{p}: permission denied") from None
    except OSError as exc:
        raise FormatError(f"{p}: cannot open: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise FormatError(f"{p}: is a folder, not a file")
        raise FormatError(f"{p}: is not a regular file (a FIFO, socket or device); tpv reads regular files only")
    return os.fdopen(fd, "rb")
