"""Reading the kubernetes client's typed objects in tests: the client types every field optional,
while the API server always sets an object's metadata and name. These say so once, for the
comprehensions where an assert cannot narrow."""

from __future__ import annotations

from typing import Protocol, TypeVar

from kubernetes.client import V1ObjectMeta

T = TypeVar("T")


class _HasMetadata(Protocol):
    @property
    def metadata(self) -> V1ObjectMeta | None: ...


def meta_of(obj: _HasMetadata) -> V1ObjectMeta:
    """The object's metadata, which a stored object always has."""
    assert obj.metadata is not None, obj
    return obj.metadata


def name_of(obj: _HasMetadata) -> str:
    """The object's name, which a stored object always has."""
    name = meta_of(obj).name
    assert name is not None, obj
    return name


def present(value: T | None) -> T:
    """A field the client types optional that the object at hand has (its spec, its status)."""
    assert value is not None
    return value
