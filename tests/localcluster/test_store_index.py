"""The store's per-namespace index answers exactly what a scan of every object would: a namespaced
list, watch or controller pass that reads the index must see the same objects, in the same order,
after any mix of creates, replaces, deletes, a dropped kind and a reload from a state file."""

from __future__ import annotations

import random

from localcluster.apiserver.store import Obj, StorageKey, Store

PODS: StorageKey = ("", "pods")
SERVICES: StorageKey = ("", "services")
NODES: StorageKey = ("", "nodes")  # cluster-scoped: namespace ""


def _obj(namespace: str, name: str, n: int) -> Obj:
    meta = {"name": name, "uid": f"{namespace}/{name}/{n}", "labels": {"n": str(n)}}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta, "spec": {"n": n}}


def _expected(store: Store, storage: StorageKey, namespace: str | None) -> list[Obj]:
    """What a scan of every object of the kind selects, in (namespace, name) order."""
    items = store.objects.get(storage, {})
    return [items[k] for k in sorted(items) if namespace is None or k[0] == namespace]


def _check(store: Store, namespaces: list[str]) -> None:
    for storage in (PODS, SERVICES, NODES):
        assert store.scan(storage) == _expected(store, storage, None)
        for ns in [*namespaces, ""]:
            want = _expected(store, storage, ns)
            got = store.scan(storage, ns)
            assert got == want, (storage, ns)
            # the stored objects themselves, not copies; `select` copies them
            assert all(a is b for a, b in zip(got, want, strict=True))
            copies = store.select(storage, ns)
            assert copies == want and all(a is not b for a, b in zip(copies, want, strict=True))
            by_name = store.namespace_objects(storage, ns)
            assert sorted(by_name) == [o["metadata"]["name"] for o in want]
            assert all(by_name[o["metadata"]["name"]] is o for o in want)


def test_namespace_index_matches_a_full_scan_through_every_kind_of_write() -> None:
    rng = random.Random(16)
    store = Store(history=50)
    namespaces = [f"ns-{i}" for i in range(6)]
    for step in range(1500):
        storage = rng.choice((PODS, PODS, SERVICES, NODES))
        ns = "" if storage == NODES else rng.choice(namespaces)
        name = f"o-{rng.randrange(12)}"
        if rng.random() < 0.3:
            store.remove(storage, ns, name)
        else:
            store.put(storage, _obj(ns, name, step))
        if step % 100 == 0:
            _check(store, namespaces)
    _check(store, namespaces)
    assert store.scan(PODS, "ns-0"), "the random writes left pods to compare"

    # A namespace whose last object goes reads as empty, and fills again.
    for o in store.scan(PODS, "ns-1"):
        store.remove(PODS, "ns-1", o["metadata"]["name"])
    assert store.scan(PODS, "ns-1") == [] and store.namespace_objects(PODS, "ns-1") == {}
    store.put(PODS, _obj("ns-1", "back", 0))
    assert [o["metadata"]["name"] for o in store.scan(PODS, "ns-1")] == ["back"]
    _check(store, namespaces)

    # A dropped kind leaves nothing behind in the index.
    store.drop_storage(SERVICES)
    assert all(store.scan(SERVICES, ns) == [] for ns in namespaces)
    _check(store, namespaces)

    # A reload (state file) rebuilds the index from the loaded objects only.
    kept = [(s, o) for s, o in store.iter_all() if s == PODS and o["metadata"]["namespace"] != "ns-2"]
    store.load(store.rv, kept)
    assert store.scan(PODS, "ns-2") == [] and store.scan(NODES) == []
    _check(store, namespaces)
