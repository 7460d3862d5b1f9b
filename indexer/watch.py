"""`index watch`: keep an index in line with a folder, one incremental build per burst of changes.

Changes reported by watchfiles are coalesced into bursts: a build starts once no change has
come for `debounce` seconds (a `git checkout` touching 500 files is one build), or at the latest
config.WATCH_MAX_DELAY seconds after the first change (a constant trickle still builds). Builds
take the index's writer lock like `index build`; while another build holds it, the watcher
waits. A folder that is missing or empty is taken for an unmounted disk and not built: the
index keeps its files until the folder has files again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from indexer import config
from indexer.errors import (
    BadPatternError,
    BuildLockedError,
    IndexerError,
    ModelDirError,
    ModelMismatchError,
    ModelPrepareError,
)
from indexer.index import Index

if TYPE_CHECKING:
    from watchfiles import Change

    from indexer.build import BuildReport

Echo = Callable[[str], None]
Show = Callable[["BuildReport"], None]

#: Build failures that end watching: no change in the folder can cure them.
FATAL = (BadPatternError, ModelDirError, ModelMismatchError, ModelPrepareError)
#: Seconds of each wait for another build's lock; the watcher waits again until it gets it.
LOCK_WAIT = 3600.0
#: How often (seconds) the watcher checks that the folder is still the one it watches, and
#: looks for a missing folder to come back.
FOLDER_CHECK = 1.0


@dataclass
class Burst:
    """A burst of changes is over once none came for `quiet` seconds, or `longest` seconds
    after its first change (so a constant trickle still builds). watchfiles' own debounce
    cannot tell this: it sees a file changed again and again as one change."""

    quiet: float
    longest: float
    first: float | None = None
    last: float | None = None

    def add(self, now: float) -> None:
        """Changes came at time `now`."""
        self.first = now if self.first is None else self.first
        self.last = now

    def over(self, now: float) -> bool:
        """True when changes came and the burst is over."""
        if self.first is None or self.last is None:
            return False
        return now - self.last >= self.quiet or now - self.first >= self.longest

    def clear(self) -> None:
        """Start waiting for the next burst."""
        self.first = self.last = None


class Ending(Enum):
    """How watching ended: stopped between builds, or interrupted in the middle of one."""

    STOPPED = "stopped"
    INTERRUPTED = "interrupted"


class Stop:
    """Ctrl-C and SIGTERM: between builds they end watching at the next check; during a build
    they interrupt it (a build is crash-safe: the index keeps its last finished build)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.building = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()
        if self.building:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT and SIGTERM while inside (only the main thread may set handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def watch(
    index: Index,
    folder: str | Path,
    *,
    debounce: float = config.DEFAULT_DEBOUNCE,
    show: Show,
    echo: Echo,
    **build_options: Any,
) -> Ending:
    """Build once, then after every burst of changes in folder, until Ctrl-C or SIGTERM.

    show: called with each build's report; echo: one-line notes (waiting for a lock, a
    missing folder, a failed build); build_options: passed on to Index.build."""
    watcher = Watcher(index, Path(folder), debounce, show, echo, build_options)
    with watcher.stop.installed():
        return watcher.run()


class Watcher:
    """The watch loop over one folder and one index."""

    def __init__(
        self,
        index: Index,
        folder: Path,
        debounce: float,
        show: Show,
        echo: Echo,
        build_options: dict[str, Any],
    ) -> None:
        self.index = index
        self.folder = folder
        self.root = folder.resolve()
        self.debounce = debounce
        self.show = show
        self.echo = echo
        self.build_options = build_options
        self.stop = Stop()

    def run(self) -> Ending:
        """Build now, then watch; returns once stopped."""
        try:
            while not self.stop.event.is_set():
                if self.present():
                    self.watch_until_replaced()
                else:
                    self.wait_for_folder()
        except KeyboardInterrupt:
            return Ending.INTERRUPTED
        return Ending.STOPPED

    # -- the folder

    def present(self) -> bool:
        """True when the folder exists and holds something besides the index."""
        try:
            with os.scandir(self.folder) as entries:
                return any(Path(entry.path).resolve() != self.index_dir for entry in entries)
        except OSError:
            return False

    @property
    def index_dir(self) -> Path:
        return self.index.path.resolve()

    def identity(self) -> tuple[int, int] | None:
        """The folder's device and inode: a folder deleted and made again is another one, no
        longer seen by the watch set on the first."""
        try:
            info = os.stat(self.folder)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def wait_for_folder(self) -> None:
        """Poll until the folder is back, or watching is stopped."""
        self.echo(
            f"{self.folder} is missing or empty — not building until it has files again "
            "(the index keeps its files)"
        )
        while not self.stop.event.wait(FOLDER_CHECK):
            if self.present():
                self.echo(f"{self.folder} is back")
                return

    def watch_until_replaced(self) -> None:
        """Build once, then after each burst of relevant changes, until the folder vanishes or
        is replaced by another, or watching is stopped. The first build waits for the watch
        to be in place (its first timeout), so that no change made during it is missed."""
        import watchfiles

        identity = self.identity()
        burst = Burst(self.debounce, max(config.WATCH_MAX_DELAY, self.debounce))
        changes = watchfiles.watch(
            self.root,
            watch_filter=self.relevant,
            rust_timeout=round(min(self.debounce, FOLDER_CHECK) * 1000),
            yield_on_timeout=True,
            stop_event=self.stop.event,
        )
        with contextlib.suppress(OSError):  # the folder vanished as the watch started
            built = False
            for batch in changes:
                if self.identity() != identity or not self.present():
                    return
                now = time.monotonic()
                if batch:
                    burst.add(now)
                if burst.over(now) or not built:
                    self.build()
                    burst.clear()
                    built = True

    def relevant(self, change: Change, name: str) -> bool:
        """Whether a change can matter to the index: not in the index itself nor in a hidden,
        VCS or virtual-environment folder, and a document, an .indexignore or a folder."""
        from watchfiles import Change

        path = Path(name)
        if path == self.index_dir or self.index_dir in path.parents:
            return False
        with contextlib.suppress(ValueError):
            parts = path.relative_to(self.root).parts
            if any(_ignored_part(part) for part in parts):
                return False
        suffix = path.suffix.lower()
        if not suffix or suffix in config.TEXT_SUFFIXES or path.name == config.IGNORE_FILE:
            return True
        return change == Change.deleted or path.is_dir()  # a deleted "v1.2/" was a folder

    # -- building

    def build(self) -> None:
        """One build, waiting for another build's lock. A failure is one line and watching goes
        on, unless it is one no change in the folder can cure (a wrong model or pattern)."""
        try:
            report = self.build_waiting()
        except FATAL:
            raise
        except IndexerError as exc:  # Index.build words SQLite's failures as IndexerErrors too
            self.echo(f"error: {exc}")
            return
        self.show(report)

    def build_waiting(self) -> BuildReport:
        """Index.build, waiting as long as it takes when another build holds the lock."""
        try:
            return self.build_now(wait=0)
        except BuildLockedError:
            self.echo(f"another build is writing {self.index.path} — waiting for it to finish")
        while True:
            with contextlib.suppress(BuildLockedError):
                return self.build_now(wait=LOCK_WAIT)

    def build_now(self, *, wait: float) -> BuildReport:
        self.stop.building = True
        try:
            if self.stop.event.is_set():  # a signal came just before `building` was set
                raise KeyboardInterrupt
            return self.index.build(self.folder, wait=wait, **self.build_options)
        finally:
            self.stop.building = False


def _ignored_part(part: str) -> bool:
    return part in config.SKIP_DIRS or (part.startswith(".") and part != config.IGNORE_FILE)
