"""UCoreFS: library roots, file records, scanning, thumbnails and the journal.

``app.library`` is the :class:`LibrarySystem`; :class:`LibraryFilter` is the one definition
of a library file (DESIGN.md §6), shared by the scan, the verification and the orphan check.
"""

from ucore.fs.filter import DirectoryError, LibraryFilter, Listing, NotALibraryFile
from ucore.fs.journal import Journal
from ucore.fs.kinds import Kind, kind_of
from ucore.fs.roots import MARKER_NAME, RootCheck, RootStatus, check_root
from ucore.fs.system import LibrarySystem, RootInfo
from ucore.fs.thumbnails import TEMP_PATTERN, thumbnail_path

__all__ = [
    "MARKER_NAME",
    "TEMP_PATTERN",
    "DirectoryError",
    "Journal",
    "Kind",
    "LibraryFilter",
    "LibrarySystem",
    "Listing",
    "NotALibraryFile",
    "RootCheck",
    "RootInfo",
    "RootStatus",
    "check_root",
    "kind_of",
    "thumbnail_path",
]
