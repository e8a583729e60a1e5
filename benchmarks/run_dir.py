"""Run folders that never cost the user anything they made.

Every folder ``run``, ``train`` and ``factorize`` create holds a small JSON marker,
`MARKER`, that names the tool and, once the command finished, lists the files it wrote.
`RunFolder` is what a command writes through:

- it takes an exclusive lock (`benchmarks.run_lock`: ``fcntl.flock`` on ``.<name>.lock``), so a
  second command writing into the same ``--out`` at the same time is refused;
- it refuses the current folder, the data folder and any folder holding it, the home folder
  and ``/`` outright, and an existing folder unless it is a finished-or-not run of this tool
  (the marker, or a ``run.json``/``train.json`` with the tool's ``format_version`` for runs
  made before the marker existed) and ``--overwrite`` was given;
- a replacement is written into ``.<name>.tmp-<pid>`` beside the old run and swapped in by
  `RunFolder.commit` only at the end (old run renamed aside, new one renamed in, old one
  deleted), so a command that fails leaves the previous run as it was.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from benchmarks.errors import UserError, is_disk_error
from benchmarks.io_utils import missing_parents, remove_empty, write_json
from benchmarks.run_lock import FolderLock

MARKER = ".deblur-bench-run"
TOOL = "deblur-bench"
MARKER_VERSION = 1
#: Result files of runs made before the marker existed; any with a ``format_version`` key count.
LEGACY_RECORDS = ("run.json", "train.json")


# --------------------------------------------------------------------------- the marker
def write_marker(folder: Path, kind: str, files: list[str] | None = None) -> None:
    """Write (or rewrite) the marker of a tool-made folder; ``files``: what the run wrote."""
    write_json(
        folder / MARKER,
        {
            "tool": TOOL,
            "marker_version": MARKER_VERSION,
            "kind": kind,
            "written": _dt.datetime.now().isoformat(timespec="seconds"),
            "pid": os.getpid(),
            "complete": files is not None,
            "files": files,
        },
    )


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == TOOL else None


def _legacy_record(folder: Path) -> bool:
    for name in LEGACY_RECORDS:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "format_version" in data:
            return True
    return False


def is_tool_made(folder: Path) -> bool:
    """Whether ``folder`` is a run folder this tool wrote (marker or legacy record)."""
    return read_marker(folder) is not None or _legacy_record(folder)


def _is_marker_file(name: str) -> bool:
    """The marker, or a temporary file of its atomic write left by a killed command."""
    return name == MARKER or name.startswith(f".{MARKER}.")


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds besides the marker (and leftovers of writing it)."""
    return [p for p in folder.iterdir() if not _is_marker_file(p.name)]


def list_files(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative, sorted), the marker left out."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and not _is_marker_file(p.name)
    )


def foreign_files(folder: Path) -> list[str]:
    """Files of a tool-made folder that the tool did not write (added by someone since).

    Only a finished run's marker lists its files; other folders report nothing here.
    """
    marker = read_marker(folder)
    if marker is None or not isinstance(marker.get("files"), list):
        return []
    return sorted(set(list_files(folder)) - set(marker["files"]))


def _sample(names: Iterable[str], k: int = 4) -> str:
    names = list(names)
    shown = ", ".join(names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


def _top_entries(folder: Path) -> list[str]:
    return sorted(p.name + ("/" if p.is_dir() else "") for p in _entries(folder))


# --------------------------------------------------------------------------- refusals
def refusal(target: Path, protect: Iterable[str | Path] = ()) -> str | None:
    """Why ``target`` (resolved) may never be a run folder, or None.

    Refused: the current folder or any folder holding it, each ``protect`` path (the data
    folder), any folder holding it or inside it, the home folder and the file-system root.
    """
    cwd = Path.cwd().resolve()
    if target == Path(target.anchor):
        return "it is the root of the file system"
    if target == Path.home().resolve():
        return "it is the home folder"
    if target == cwd:
        return "it is the current folder; give the run a folder of its own (e.g. results/NAME)"
    if target in cwd.parents:
        return "it holds the current folder"
    for p in protect:
        if target in Path(p).resolve().parents:
            return f"it holds the data folder {p}"
        why = mixing_refusal(target, p, "data folder (--data-dir)", "data folder")
        if why:
            return why
    return None


def mixing_refusal(target: Path, folder: str | Path, same: str, inside: str) -> str | None:
    """Why outputs may not go to ``target`` (resolved): it is the image folder ``folder`` or
    inside it, where a later command would read them as images.

    ``same`` and ``inside`` name the folder in the two messages (``run``: the data folder,
    ``restore``: an input folder).
    """
    images = Path(folder).resolve()
    if target == images:
        return f"it is the {same}; outputs must not mix with the images"
    if images in target.parents:
        return f"it is inside the {inside} {folder}; outputs must not mix with the images"
    return None


def _repoint(name: str, src: Path, dst: Path) -> str:
    """``name`` with the folder ``src`` (or a path inside it) replaced by ``dst``."""
    inside = name == str(src) or name.startswith(str(src) + os.sep)
    return str(dst) + name[len(str(src)) :] if inside else name


# --------------------------------------------------------------------------- the folder
class RunFolder:
    """Where a command writes its run: checked, locked, and swapped in at the end.

    Parameters
    ----------
    out : str or Path
        The ``--out`` folder as the user gave it.
    kind : str
        ``"run"``, ``"train"`` or ``"factorize"`` (recorded in the marker).
    overwrite : bool
        ``--overwrite``: an existing run folder of this tool may be replaced.
    protect : iterable of paths
        Folders that must never be replaced or hold the run (the data folder).
    staged : bool
        Write even a new run into a temporary folder first (``run``, ``factorize``: a failed
        command leaves nothing).  Otherwise (``train``) a new run is written in place so that
        its checkpoints can be resumed after a crash; a replacement is always staged.
    continue_in : str or Path, optional
        A folder the command may keep writing into without ``--overwrite`` (``train --resume
        A/last.pt`` continues in ``A``).

    Use as a context manager; call `commit` once every output is written.  Leaving the
    block without ``commit`` (an error) removes the staged folder, or a new folder that holds
    nothing but the marker, and keeps the previous run.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        kind: str,
        overwrite: bool = False,
        protect: Iterable[str | Path | None] = (),
        staged: bool = True,
        continue_in: str | Path | None = None,
    ) -> None:
        self.shown = str(out)
        self.target = Path(out).expanduser().resolve()
        self.kind = kind
        self.overwrite = overwrite
        self.protect = [p for p in protect if p is not None]
        self.staged = staged
        self.continue_in = Path(continue_in).resolve() if continue_in is not None else None
        self.path = self.target  # where to write; the staging folder while replacing
        self.mode = ""  # "new", "continue" or "replace"
        self._lock = FolderLock(self.target, self.shown)
        self._made_parents: list[Path] = []
        self._made_target = False
        self._marks = True  # False: continuing in a folder the tool did not make
        self._foreign_before: set[str] = set()
        self._committed = False

    # -- entering: checks, lock, where to write ------------------------------------------
    def __enter__(self) -> RunFolder:
        # Continuing a run in its own folder deletes nothing, wherever that folder is.
        continuing = self.continue_in is not None and self.target == self.continue_in
        why = None if continuing else refusal(self.target, self.protect)
        if why:
            raise UserError(f"--out {self.shown} refused: {why}")
        if self.target.exists() and not self.target.is_dir():
            raise FileExistsError(f"--out {self.shown} exists and is not a folder")
        try:
            self._make_parents()
            self._lock.acquire()
            self._clean_stale()
            self.mode = self._decide()
            self._prepare()
        except BaseException:
            self._lock.release()
            self._remove_made_parents()
            raise
        return self

    def _make_parents(self) -> None:
        self._made_parents = missing_parents(self.target)  # deepest first, for removal
        self.target.parent.mkdir(parents=True, exist_ok=True)

    def _decide(self) -> str:
        t = self.target
        if not t.exists() or not _entries(t):
            return "new"
        if self.continue_in is not None and t == self.continue_in:
            return "continue"
        if not is_tool_made(t):
            hint = " (--overwrite only replaces a run folder this tool made)" * self.overwrite
            raise FileExistsError(
                f"--out {self.shown} holds files that are not a deblur-bench run "
                f"({_sample(_top_entries(t))}){hint}; choose another --out"
            )
        if not self.overwrite:
            raise FileExistsError(
                f"output folder {self.shown} already holds a run; pass --overwrite to replace "
                f"it or choose another --out"
            )
        extra = foreign_files(t)
        if extra:
            raise FileExistsError(
                f"--out {self.shown} is a deblur-bench run, but files were added to it since "
                f"({_sample(extra)}); --overwrite would delete them: move them out first"
            )
        return "replace"

    def _staging(self) -> Path:
        """A new ``.<name>.tmp-<pid>`` beside the target, holding the marker."""
        path = self.target.parent / f".{self.target.name}.tmp-{os.getpid()}"
        if path.exists():  # this pid's own leftover (pids are reused)
            shutil.rmtree(path)
        path.mkdir()
        try:
            write_marker(path, self.kind)
        except BaseException as exc:  # a full disk: no staging folder is left behind
            shutil.rmtree(path, ignore_errors=True)
            if isinstance(exc, OSError) and isinstance(exc.filename, str):
                exc.filename = _repoint(exc.filename, path, self.target)
            raise
        return path

    def _prepare(self) -> None:
        if self.mode == "replace" or (self.mode == "new" and self.staged):
            self.path = self._staging()
            return
        self._made_target = not self.target.exists()
        if self._made_target:  # renamed into place with its marker: never seen unmarked
            os.rename(self._staging(), self.target)
            return
        if self.mode == "continue":
            # Never mark a user's own folder as a run (--overwrite could then delete it), and
            # keep the files someone added to a finished run foreign to it.
            self._marks = is_tool_made(self.target)
            self._foreign_before = set(foreign_files(self.target))
            if self._marks and read_marker(self.target) is None:
                write_marker(self.target, self.kind)
            return
        write_marker(self.target, self.kind)

    def _clean_stale(self) -> None:
        """Leftovers of a command killed mid-way (only ever ours: they carry the marker)."""
        parent, name = self.target.parent, self.target.name
        for p in parent.glob(f".{name}.tmp-*"):
            ours = p.name[len(name) + 6 :].isdigit()  # .<name>.tmp-<pid>
            if ours and p.is_dir() and (read_marker(p) is not None or not _entries(p)):
                shutil.rmtree(p, ignore_errors=True)
        if self.target.is_dir():  # a marker write cut short
            for p in self.target.glob(f".{MARKER}.*"):
                p.unlink(missing_ok=True)
        for p in parent.glob(f".{name}.old-*"):
            if p.is_dir() and is_tool_made(p):
                if self.target.exists():
                    shutil.rmtree(p, ignore_errors=True)
                else:  # killed between the two renames of a swap: put the old run back
                    os.rename(p, self.target)

    # -- leaving -------------------------------------------------------------------------
    def relocate(self, obj: Any) -> Any:
        """``obj`` with every string path into the staging folder pointed at the target."""
        if self.path == self.target:
            return obj
        if isinstance(obj, str):
            return _repoint(obj, self.path, self.target)
        if isinstance(obj, dict):
            return {k: self.relocate(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.relocate(v) for v in obj)
        return obj

    def commit(self) -> Path:
        """Record the files written and put the run in place; returns the run folder."""
        if self._marks:
            files = sorted(set(list_files(self.path)) - self._foreign_before)
            write_marker(self.path, self.kind, files=files)
        if self.path != self.target:
            old = self.target.parent / f".{self.target.name}.old-{os.getpid()}"
            replacing = self.target.exists()
            if replacing and _entries(self.target):
                os.rename(self.target, old)
                try:
                    os.rename(self.path, self.target)
                except BaseException:
                    os.rename(old, self.target)
                    raise
                shutil.rmtree(old)
            else:
                if replacing:  # an empty folder, perhaps made for the run
                    shutil.rmtree(self.target)  # (at most a killed command's marker temp)
                os.rename(self.path, self.target)
            self.path = self.target
        self._committed = True
        return self.target

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, OSError):
            self._name_in_target(exc)
        try:
            if not self._committed:
                self._discard(exc_type)
        finally:
            self._lock.release()
        if not self._committed:
            self._remove_made_parents()

    def _name_in_target(self, exc: OSError) -> None:
        """Point a failed write's file name from the staging folder (gone after this) at the
        run folder, and give a full disk's error without one the run folder's name."""
        if isinstance(exc.filename, str):
            exc.filename = self.relocate(exc.filename)
        elif exc.filename is None and is_disk_error(exc):
            exc.filename = self.shown

    def _discard(self, exc_type: type[BaseException] | None) -> None:
        if self.path != self.target:
            shutil.rmtree(self.path, ignore_errors=True)
            if self.mode == "replace" and exc_type is not None:
                print(f"note: the previous run in {self.shown} is kept as it was", file=sys.stderr)
        elif self.mode == "new" and list_files(self.target) == []:  # only our marker inside
            if self._made_target:
                shutil.rmtree(self.target, ignore_errors=True)
            else:  # the user's empty folder: leave it as it was
                (self.target / MARKER).unlink(missing_ok=True)

    def _remove_made_parents(self) -> None:
        remove_empty(self._made_parents)
