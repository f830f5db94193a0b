"""The manifest index forgets what containerd deleted: a node pulls new images for as long as it
runs, so an index that only grew would be a leak (bench/soak.py found one)."""

from __future__ import annotations

import os

from pulltrace.agent.manifests import TRIED_FOR, ManifestIndex
from tests.fakestore import FakeStore, digest_of


def blob(size: int) -> bytes:
    return os.urandom(size)


def test_a_deleted_image_is_forgotten_with_everything_it_owned() -> None:
    store = FakeStore()
    kept_layers, gone_layers = [blob(100)], [blob(200), blob(300)]
    kept = store.push_manifest(kept_layers, "team/kept")
    gone = store.push_manifest(gone_layers, "team/gone")
    index = ManifestIndex(store, rescan_after=0.0)
    index.resolve([digest_of(gone_layers[0])], now=0.0)
    assert index.owners(digest_of(gone_layers[0])) == {gone}
    assert index.manifest(gone) is not None

    del store.blobs[gone]  # the image removed, and containerd's GC took its manifest
    index.resolve([digest_of(blob(10))], now=1.0)  # any new digest makes it scan

    assert not index.is_manifest(gone) and index.manifest(gone) is None
    assert all(index.owners(digest_of(layer)) == set() for layer in gone_layers)
    assert index.owners(digest_of(kept_layers[0])) == {kept}
    assert index.manifest(kept) is not None
    assert gone not in {d for owners in index._owners.values() for d in owners}


def test_digests_no_manifest_owned_are_not_remembered_forever() -> None:
    store = FakeStore()
    index = ManifestIndex(store, rescan_after=0.0)
    orphans = [digest_of(blob(10)) for _ in range(50)]
    index.resolve(orphans, now=0.0)
    assert len(index._tried) == 50
    index.resolve([digest_of(blob(10))], now=TRIED_FOR + 1)
    assert len(index._tried) == 1
