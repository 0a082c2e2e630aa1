"""The library part of the store: exact names, scan batches, batched deletes, the journal."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ucore.stores.base import MissingRootError
from ucore.stores.names import abs_from_db, abs_to_db, from_db, to_db
from ucore.stores.records import (
    DirIdentity,
    JournalFilter,
    NewJournalEntry,
    NewRoot,
    ScanBatch,
    ThumbnailUpdate,
    ThumbState,
)
from ucore.stores.sqlite.store import SQLiteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "ucore.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def test_names_round_trip_exactly() -> None:
    rng = random.Random(7)
    samples = ["plain.txt", "ünïcode/名前.jpg", "100% done.txt", "a/b/c", "%41", "/x"[1:]]
    for _ in range(300):
        raw = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 12))).replace(b"/", b"_")
        samples.append(os.fsdecode(raw))
    stored = [to_db(s) for s in samples]
    assert [from_db(s) for s in stored] == samples
    assert len(set(stored)) == len(set(samples))  # one-to-one
    for s, db in zip(samples, stored, strict=True):
        db.encode("utf-8")  # always storable text
        if not any(0xDC80 <= ord(c) <= 0xDCFF for c in s):
            assert db == s  # valid names are stored as they are
    odd = "/data/" + os.fsdecode(b"caf\xe9")
    assert abs_from_db(abs_to_db(odd)) == odd and abs_to_db("/plain") == "/plain"


async def _root(store: SQLiteStore, path: str = "/lib") -> int:
    root, created = await store.insert_root(NewRoot(path, (), 1, 2, "m", None, T0))
    assert created
    return root.id


async def test_a_scan_batch_and_its_records(store: SQLiteStore) -> None:
    root = await _root(store)
    odd = os.fsdecode(b"\xff.jpg")
    batch = ScanBatch(
        root_id=root,
        at=T0,
        dirs=[DirIdentity("", 1, 2), DirIdentity("a", 1, 3)],
        new_files={"": [("x.txt", 3, 10, "document")], "a": [(odd, 5, 20, "image")]},
        digests=[("", "d0"), ("a", "d1")],
    )
    result = await store.apply_scan_batch(batch)
    assert set(result.dir_ids) == {"", "a"} and result.removed == 0
    dirs = {d.path: d for d in await store.list_dirs(root)}
    assert dirs["a"].digest == "d1" and dirs["a"].inode == 3
    files = {f.rel_path: f for f in await store.list_files(root)}
    assert set(files) == {"x.txt", f"a/{odd}"}
    assert files[f"a/{odd}"].thumb_state is ThumbState.PENDING
    assert files["x.txt"].thumb_state is ThumbState.NONE
    states = await store.file_states([dirs["a"].id])
    assert states == {dirs["a"].id: {odd: (files[f"a/{odd}"].id, 5, 20)}}
    # the same new file again (a second scan running at once): no error, one record
    again = ScanBatch(root_id=root, at=T0, new_files={"a": [(odd, 6, 21, "image")]})
    await store.apply_scan_batch(again)
    files = {f.rel_path: f for f in await store.list_files(root)}
    assert len(files) == 2 and files[f"a/{odd}"].size == 6
    # a done thumbnail stays valid only for the mtime it was made from
    image = files[f"a/{odd}"]
    await store.set_thumbnail_states([ThumbnailUpdate(image.id, ThumbState.DONE, 21)])
    await store.apply_scan_batch(ScanBatch(root_id=root, at=T0, changed=[(image.id, 6, 21)]))
    assert (await store.list_files(root))[1].thumb_state is ThumbState.DONE
    await store.apply_scan_batch(ScanBatch(root_id=root, at=T0, changed=[(image.id, 7, 22)]))
    assert (await store.list_files(root))[1].thumb_state is ThumbState.PENDING
    gone = await store.apply_scan_batch(
        ScanBatch(root_id=root, at=T0, gone_dirs=[dirs["a"].id], digests=[("", None)])
    )
    assert gone.removed == 1 and gone.removed_images == [(dirs["a"].id, odd)]
    assert [d.path for d in await store.list_dirs(root)] == [""]
    assert (await store.list_dirs(root))[0].digest is None


async def test_batches_for_a_removed_root_are_refused(store: SQLiteStore) -> None:
    root = await _root(store)
    await store.apply_scan_batch(ScanBatch(root_id=root, at=T0, dirs=[DirIdentity("", 1, 2)]))
    files = [(f"f{i}", i, i, "other") for i in range(120)]
    await store.apply_scan_batch(ScanBatch(root_id=root, at=T0, new_files={"": files}))
    assert await store.delete_root(root, batch=50) == 120  # three short deletes and the rest
    assert await store.list_files(root) == [] and await store.get_root(root) is None
    with pytest.raises(MissingRootError):
        await store.apply_scan_batch(ScanBatch(root_id=root, at=T0, dirs=[DirIdentity("", 1, 2)]))
    with pytest.raises(MissingRootError):
        await store.delete_root(root)


async def test_journal_queries(store: SQLiteStore) -> None:
    kinds = ["library.scan", "library.add", "maintenance.cache_cleanup", "library.scan", "lib"]
    for i, kind in enumerate(kinds):
        await store.add_journal(
            NewJournalEntry(T0 + timedelta(hours=i), kind, f"m{i}", {"i": i}, task_id=i or None)
        )
    everything = await store.list_journal(JournalFilter())
    assert [e.message for e in everything] == ["m4", "m3", "m2", "m1", "m0"]  # newest first
    assert everything[-1].task_id is None and everything[0].data == {"i": 4}
    library = await store.list_journal(JournalFilter(kind="library"))
    assert [e.message for e in library] == ["m3", "m1", "m0"]  # not "lib", not maintenance
    scans = await store.list_journal(JournalFilter(kind="library.scan", limit=1))
    assert [e.message for e in scans] == ["m3"]
    window = JournalFilter(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert [e.message for e in await store.list_journal(window)] == ["m2", "m1"]
    assert await store.delete_journal_before(T0 + timedelta(hours=2), batch=1) == 2
    assert [e.message for e in await store.list_journal(JournalFilter())] == ["m4", "m3", "m2"]


async def test_the_same_root_path_once(store: SQLiteStore) -> None:
    first = await _root(store, "/same")
    again, created = await store.insert_root(NewRoot("/same", (), 9, 9, None, None, T0))
    assert (again.id, created) == (first, False)
    assert len(await store.list_roots()) == 1


async def test_marking_and_deleting_records_clears_digests(store: SQLiteStore) -> None:
    root = await _root(store)
    odd = os.fsdecode(b"\xfe.jpg")
    await store.apply_scan_batch(
        ScanBatch(
            root_id=root,
            at=T0,
            dirs=[DirIdentity("", 1, 2), DirIdentity("d", 1, 3), DirIdentity("e", 1, 4)],
            new_files={
                "d": [("a.txt", 1, 1, "document"), (odd, 2, 2, "image")],
                "e": [("keep.txt", 3, 3, "document")],
            },
            digests=[("", "r"), ("d", "dd"), ("e", "ee")],
        )
    )
    files = {f.rel_path: f for f in await store.list_files(root)}
    assert await store.mark_missing([files["d/a.txt"].id], T0) == 1
    assert await store.mark_missing([files["d/a.txt"].id], T0 + timedelta(hours=1)) == 0
    digests = {d.path: d.digest for d in await store.list_dirs(root)}
    assert digests == {"": "r", "d": None, "e": "ee"}
    marked = {f.rel_path: f for f in await store.list_files(root)}["d/a.txt"]
    assert marked.missing_since == T0
    d_id = marked.dir_id
    assert (await store.file_states([d_id]))[d_id]["a.txt"][2] == -1  # a scan rewrites it
    assert await store.mark_missing([marked.id], None) == 1
    removed = await store.delete_files([files[f"d/{odd}"].id, files["d/a.txt"].id])
    assert sorted(removed) == sorted([(root, f"d/{odd}", "image"), (root, "d/a.txt", "document")])
    assert [f.rel_path for f in await store.list_files(root)] == ["e/keep.txt"]


async def test_counts_presence_rows_and_thumbnail_eviction(store: SQLiteStore) -> None:
    one, two = await _root(store, "/one"), await _root(store, "/two")
    odd = os.fsdecode(b"\xfe\nodd.png")
    await store.apply_scan_batch(
        ScanBatch(
            root_id=one,
            at=T0,
            dirs=[DirIdentity("", 1, 2), DirIdentity("a", 1, 3)],
            new_files={"": [("x.txt", 1, 1, "document")], "a": [("p.png", 2, 2, "image")]},
        )
    )
    await store.apply_scan_batch(
        ScanBatch(
            root_id=two,
            at=T0,
            dirs=[DirIdentity("", 1, 4)],
            new_files={"": [(odd, 3, 3, "image"), ("q.png", 4, 4, "image")]},
        )
    )
    assert await store.file_counts() == {one: 2, two: 2}
    stats = await store.root_stats()
    assert {rid: s.files for rid, s in stats.items()} == await store.file_counts()
    files = {(f.root_id, f.rel_path): f for r in (one, two) for f in await store.list_files(r)}
    dir_a = {d.path: d.id for d in await store.list_dirs(one)}["a"]
    rows = await store.presence_rows([dir_a])
    assert rows == {dir_a: ({"p.png": files[one, "a/p.png"].id}, [])}
    marked = files[two, odd]
    await store.mark_missing([marked.id], T0)
    dir_two = (await store.list_dirs(two))[0].id
    by_name, marked_rows = (await store.presence_rows([dir_two]))[dir_two]
    assert by_name == {odd: marked.id, "q.png": files[two, "q.png"].id}  # escaped name too
    assert marked_rows == [(marked.id, odd, T0)]
    # only 'done' thumbnails are sources, in id order, and eviction touches only those
    done = [files[one, "a/p.png"].id, marked.id]
    await store.set_thumbnail_states([ThumbnailUpdate(i, ThumbState.DONE, 1) for i in done])
    sources = await store.thumbnail_sources()
    assert sources == [(done[0], one, "a/p.png"), (done[1], two, odd)]
    assert await store.thumbnail_sources(after_id=done[0], limit=1) == [(done[1], two, odd)]
    assert await store.evict_thumbnails([*done, files[two, "q.png"].id]) == 2
    after = {f.id: f for r in (one, two) for f in await store.list_files(r)}
    assert {after[i].thumb_state for i in done} == {ThumbState.EVICTED}
    assert after[files[two, "q.png"].id].thumb_state is ThumbState.PENDING
    assert after[done[0]].thumb_mtime_ns is None
    assert await store.thumbnail_sources() == []
