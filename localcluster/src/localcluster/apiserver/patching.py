"""Patches: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge, and server-side apply.

Strategic merge knows the list merge keys of the built-in kinds by field name (as the Go types'
`patchMergeKey` tags declare them); custom resources refuse it, as on a real cluster.
Server-side apply tracks field ownership per manager in `metadata.managedFields` (FieldsV1),
detects conflicts with other managers, and removes fields a manager stops applying.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jsonpatch

from .errors import APIError

Obj = dict[str, Any]
Path = tuple[str, ...]
# given the path of field names to a list (no indices), its merge keys, "set", or None (atomic)
ListStrategy = Callable[[tuple[str, ...]], "list[str] | str | None"]

_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ownerReferences": "uid",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
    "taints": "key",
    "addresses": "type",
    "secrets": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "ephemeralContainerStatuses": "name",
}
_PRIMITIVE_MERGE = {"finalizers"}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


def builtin_list_strategy(path: tuple[str, ...]) -> list[str] | str | None:
    """Merge keys of built-in kinds' lists, by the field's name and its parent's."""
    if not path:
        return None
    name = path[-1]
    if name == "ports":
        if len(path) >= 2 and path[-2] in _CONTAINER_LISTS:
            return ["containerPort", "protocol"]
        if path[:2] == ("spec", "ports"):
            return ["port", "protocol"]
        return None
    if name in _PRIMITIVE_MERGE and path == ("metadata", "finalizers"):
        return "set"
    if name in _MERGE_KEYS:
        if name == "addresses" and path[0] != "status":
            return None
        if name == "secrets" and path != ("secrets",):
            return None
        return [_MERGE_KEYS[name]]
    return None


def schema_list_strategy(schema: dict[str, Any] | None) -> ListStrategy:
    """List strategies of a CRD's schema: `x-kubernetes-list-type` map/set, else atomic."""

    def strategy(path: tuple[str, ...]) -> list[str] | str | None:
        if path[:1] == ("metadata",):
            return builtin_list_strategy(path)
        node = schema
        for part in path:
            if node is None:
                return None
            if node.get("type") == "array" or "items" in node:
                node = node.get("items")
                if node is None:
                    return None
            props = node.get("properties") or {}
            if part in props:
                node = props[part]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            else:
                return None
        if node is None:
            return None
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "map":
            return list(node.get("x-kubernetes-list-map-keys") or [])
        if list_type == "set":
            return "set"
        return None

    return strategy


# -- JSON merge patch ---------------------------------------------------------


def merge_patch(original: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# -- JSON patch ---------------------------------------------------------------


def json_patch(original: Obj, patch: Any) -> Obj:
    if not isinstance(patch, list):
        raise APIError(
            400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    try:
        # `apply` copies the document itself (in_place=False): one deep copy, not two.
        result = jsonpatch.JsonPatch(patch).apply(original)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise APIError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
    ) as exc:
        raise APIError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    if not isinstance(result, dict):
        raise APIError(422, "Invalid", "the patch turned the object into something that is not an object")
    return result


# -- strategic merge patch ----------------------------------------------------


def strategic_merge(original: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    out: dict[str, Any] = copy.deepcopy(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [v for v in out[field] if v not in (value or [])]
            continue
        if key.startswith("$"):
            continue
        sub = (*path, key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                out.pop(key, None)
            else:
                out[key] = strategic_merge(out.get(key), value, sub)
        elif isinstance(value, list):
            strategy = builtin_list_strategy(sub)
            existing = out.get(key)
            current: list[Any] = existing if isinstance(existing, list) else []
            if isinstance(strategy, list):
                out[key] = _merge_keyed_list(current, value, strategy, sub)
            elif strategy == "set":
                out[key] = current + [v for v in value if v not in current]
            else:
                out[key] = [copy.deepcopy(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
        else:
            out[key] = copy.deepcopy(value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        for key in list(out):
            if key not in retain:
                del out[key]
    for field, order in orders.items():
        if isinstance(out.get(field), list):
            out[field] = _reorder(out[field], order, builtin_list_strategy((*path, field)))
    return out


def _item_key(item: Any, keys: list[str]) -> tuple[Any, ...] | None:
    if not isinstance(item, dict):
        return None
    primary = keys[0]
    if primary not in item:
        return None
    return (json.dumps(item[primary]),)


def _merge_keyed_list(
    current: list[Any], patch: list[Any], keys: list[str], path: tuple[str, ...]
) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    out = [copy.deepcopy(c) for c in current]
    for item in patch:
        k = _item_key(item, keys)
        idx = next((i for i, c in enumerate(out) if k is not None and _item_key(c, keys) == k), None)
        if isinstance(item, dict) and item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item, path) if isinstance(item, dict) else copy.deepcopy(item))
        else:
            out[idx] = strategic_merge(out[idx], item, path)
    return out


def _reorder(items: list[Any], order: list[Any], strategy: list[str] | str | None) -> list[Any]:
    if isinstance(strategy, list):
        wanted = [_item_key(o, strategy) for o in order]

        def pos(item: Any) -> int:
            k = _item_key(item, strategy)
            return wanted.index(k) if k in wanted else len(wanted)
    else:

        def pos(item: Any) -> int:
            return order.index(item) if item in order else len(order)

    return sorted(items, key=pos)


# -- field sets (server-side apply) --------------------------------------------

_META_TRACKED = {"labels", "annotations", "finalizers", "ownerReferences"}


def _key_element(item: dict[str, Any], keys: list[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in sorted(keys) if k in item}, separators=(",", ":"))


def field_set(obj: Obj, strategy: ListStrategy, *, skip_status: bool = False) -> set[Path]:
    """The fields set in `obj`, as FieldsV1 paths; metadata only labels/annotations/finalizers/owners."""
    out: set[Path] = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or (skip_status and key == "status"):
            continue
        if key == "metadata":
            if isinstance(value, dict):
                for mk, mv in value.items():
                    if mk in _META_TRACKED:
                        _walk(mv, ("metadata", mk), ("f:metadata", "f:" + mk), strategy, out)
            continue
        _walk(value, (key,), ("f:" + key,), strategy, out)
    return out


def _walk(value: Any, names: tuple[str, ...], path: Path, strategy: ListStrategy, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk(v, (*names, k), (*path, "f:" + k), strategy, out)
        return
    if isinstance(value, list) and value:
        kind = strategy(names)
        if isinstance(kind, list) and kind and all(isinstance(i, dict) for i in value):
            for item in value:
                ip = (*path, _key_element(item, kind))
                out.add(ip)
                for k, v in item.items():
                    _walk(v, (*names, k), (*ip, "f:" + k), strategy, out)
            return
        if kind == "set":
            for item in value:
                out.add((*path, "v:" + json.dumps(item, separators=(",", ":"))))
            return
    out.add(path)


def field_values(obj: Obj, strategy: ListStrategy) -> dict[Path, Any]:
    """`field_set` with the value at each path (what `value_at` finds there), in one walk."""
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            if isinstance(value, dict):
                for mk, mv in value.items():
                    if mk in _META_TRACKED:
                        _walk_values(mv, ("metadata", mk), ("f:metadata", "f:" + mk), strategy, out)
            continue
        _walk_values(value, (key,), ("f:" + key,), strategy, out)
    return out


def _walk_values(
    value: Any, names: tuple[str, ...], path: Path, strategy: ListStrategy, out: dict[Path, Any]
) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk_values(v, (*names, k), (*path, "f:" + k), strategy, out)
        return
    if isinstance(value, list) and value:
        kind = strategy(names)
        if isinstance(kind, list) and kind and all(isinstance(i, dict) for i in value):
            for item in value:
                ip = (*path, _key_element(item, kind))
                out.setdefault(ip, item)  # value_at finds the first item with the key
                for k, v in item.items():
                    _walk_values(v, (*names, k), (*ip, "f:" + k), strategy, out)
            return
        if kind == "set":
            for item in value:
                out.setdefault((*path, "v:" + json.dumps(item, separators=(",", ":"))), item)
            return
    out.setdefault(path, value)


def value_at(obj: Any, path: Path) -> tuple[bool, Any]:
    """(found, value) at a FieldsV1 path."""
    cur = obj
    for el in path:
        kind, _, rest = el.partition(":")
        if kind == "f":
            if not isinstance(cur, dict) or rest not in cur:
                return False, None
            cur = cur[rest]
        elif kind == "k":
            if not isinstance(cur, list):
                return False, None
            want = json.loads(rest)
            cur = next(
                (i for i in cur if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())), None
            )
            if cur is None:
                return False, None
        elif kind == "v":
            if not isinstance(cur, list):
                return False, None
            want_v = json.loads(rest)
            if want_v not in cur:
                return False, None
            cur = want_v
        else:
            return False, None
    return True, cur


def remove_at(obj: Any, path: Path) -> None:
    if not path:
        return
    found, parent = value_at(obj, path[:-1])
    if not found:
        return
    kind, _, rest = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
    elif kind == "k" and isinstance(parent, list):
        want = json.loads(rest)
        parent[:] = [
            i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))
        ]
    elif kind == "v" and isinstance(parent, list):
        want_v = json.loads(rest)
        parent[:] = [i for i in parent if i != want_v]


def encode_fields(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for el in path:
            node = node.setdefault(el, {})
    for path in paths:
        node = root
        for el in path:
            node = node[el]
        if node and "." not in node:
            node["."] = {}
    return root


def decode_fields(fields: dict[str, Any] | None) -> set[Path]:
    out: set[Path] = set()

    def walk(node: dict[str, Any], path: Path) -> None:
        if path and (not node or "." in node):
            out.add(path)
        for k, v in node.items():
            if k != "." and isinstance(v, dict):
                walk(v, (*path, k))

    walk(fields or {}, ())
    return out


def _prune_empty_parents(obj: Obj, path: Path) -> None:
    """After removing a field, drop maps it leaves empty (but never the top-level sections)."""
    for cut in range(len(path) - 1, 1, -1):
        found, value = value_at(obj, path[:cut])
        if found and isinstance(value, dict) and not value and path[cut - 1].startswith("f:"):
            remove_at(obj, path[:cut])
        else:
            break


def apply_merge(live: Any, config: Any, strategy: ListStrategy, names: tuple[str, ...] = ()) -> Any:
    """Merge an applied configuration into the live object: maps recurse, keyed lists merge by key."""
    if not isinstance(config, dict) or not isinstance(live, dict):
        return copy.deepcopy(config)
    out = copy.deepcopy(live)
    for key, value in config.items():
        sub = (*names, key)
        if value is None:
            out.pop(key, None)
            continue
        if isinstance(value, dict):
            out[key] = apply_merge(out.get(key), value, strategy, sub)
        elif isinstance(value, list):
            kind = strategy(sub)
            existing = out.get(key)
            current: list[Any] = existing if isinstance(existing, list) else []
            if isinstance(kind, list) and kind:
                merged = [copy.deepcopy(c) for c in current]
                for item in value:
                    if not isinstance(item, dict):
                        merged.append(copy.deepcopy(item))
                        continue
                    kel = _key_element(item, kind)
                    idx = next(
                        (
                            i
                            for i, c in enumerate(merged)
                            if isinstance(c, dict) and _key_element(c, kind) == kel
                        ),
                        None,
                    )
                    if idx is None:
                        merged.append(copy.deepcopy(item))
                    else:
                        merged[idx] = apply_merge(merged[idx], item, strategy, sub)
                out[key] = merged
            elif kind == "set":
                out[key] = current + [v for v in value if v not in current]
            else:
                out[key] = copy.deepcopy(value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ManagedFields:
    """`metadata.managedFields` as {(manager, operation, subresource): (apiVersion, time, paths)}."""

    def __init__(self, entries: list[dict[str, Any]] | None) -> None:
        self.entries: dict[tuple[str, str, str], tuple[str, str, set[Path]]] = {}
        for e in entries or []:
            key = (e.get("manager", ""), e.get("operation", "Update"), e.get("subresource", ""))
            self.entries[key] = (e.get("apiVersion", ""), e.get("time", ""), decode_fields(e.get("fieldsV1")))

    def to_list(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for (manager, op, sub), (api_version, time, paths) in self.entries.items():
            if not paths:
                continue
            entry: dict[str, Any] = {
                "manager": manager,
                "operation": op,
                "apiVersion": api_version,
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode_fields(paths),
            }
            if sub:
                entry["subresource"] = sub
            out.append(entry)
        return out

    def owned_by_others(self, me: tuple[str, str, str]) -> set[Path]:
        out: set[Path] = set()
        for key, (_, _, paths) in self.entries.items():
            if key != me:
                out |= paths
        return out

    def record_update(
        self,
        old: Obj | None,
        new: Obj,
        manager: str,
        api_version: str,
        strategy: ListStrategy,
        subresource: str = "",
    ) -> None:
        """A non-apply write by `manager`: it takes the fields it changed; removed fields leave every set."""
        old_values = field_values(old, strategy) if old else {}
        new_values = field_values(new, strategy)
        old_fs, new_fs = old_values.keys(), new_values.keys()
        changed = {p for p, v in new_values.items() if p not in old_values or old_values[p] != v}
        removed = old_fs - new_fs
        me = (manager, "Update", subresource)
        for key, (av, t, paths) in list(self.entries.items()):
            if key == me:
                continue
            self.entries[key] = (av, t, (paths - changed) - removed)
        mine = self.entries.get(me, (api_version, "", set()))[2]
        if changed or mine:
            updated = ((mine | changed) - removed) & new_fs
            self.entries[me] = (
                api_version,
                now_rfc3339() if changed else self.entries.get(me, ("", "", set()))[1],
                updated,
            )
        self._drop_empty()

    def _drop_empty(self) -> None:
        for key in [k for k, v in self.entries.items() if not v[2]]:
            del self.entries[key]


def server_side_apply(
    live: Obj | None,
    config: Obj,
    manager: str,
    api_version: str,
    strategy: ListStrategy,
    *,
    force: bool,
    skip_status: bool,
    subresource: str = "",
) -> tuple[Obj, list[dict[str, Any]], list[tuple[str, Path]]]:
    """Apply `config` as `manager`: (new object, managedFields, conflicts [(other manager, path)]).

    With conflicts and not `force` the caller answers 409; the new object is then meaningless.
    """
    managed = ManagedFields((live or {}).get("metadata", {}).get("managedFields"))
    me = (manager, "Apply", subresource)
    applied = field_set(config, strategy, skip_status=skip_status)
    conflicts: list[tuple[str, Path]] = []
    if live is not None:
        for key, (_, _, paths) in managed.entries.items():
            if key == me:
                continue
            for p in sorted(applied & paths):
                found_l, lv = value_at(live, p)
                found_c, cv = value_at(config, p)
                if p[-1].startswith("k:") or p[-1].startswith("v:"):
                    continue
                if found_l and found_c and lv != cv:
                    conflicts.append((key[0], p))
    if conflicts and not force:
        return live or {}, managed.to_list(), conflicts

    base = copy.deepcopy(live) if live is not None else {}
    previous = managed.entries.get(me, ("", "", set()))[2]
    others = managed.owned_by_others(me)
    # fields this manager applied before and no longer applies, unless another manager owns them
    removable = {p for p in previous - applied if not any(o[: len(p)] == p for o in others)}
    for p in sorted(removable, key=len, reverse=True):
        if any(p[:i] in removable for i in range(1, len(p))):
            continue  # its parent goes as a whole
        remove_at(base, p)
        _prune_empty_parents(base, p)
    body = {k: v for k, v in config.items() if not (skip_status and k == "status")}
    meta_cfg = body.pop("metadata", {}) or {}
    new = apply_merge(base, body, strategy)
    new.setdefault("metadata", {})
    for mk in _META_TRACKED:
        if mk in meta_cfg:
            new["metadata"][mk] = apply_merge(
                new["metadata"].get(mk), meta_cfg[mk], strategy, ("metadata", mk)
            )
            if not new["metadata"][mk] and new["metadata"][mk] != meta_cfg[mk]:
                new["metadata"].pop(mk)
    for mk in ("name", "namespace", "generateName"):
        if mk in meta_cfg and live is None:
            new["metadata"][mk] = meta_cfg[mk]
    if conflicts:
        lost = {p for _, p in conflicts}
        for key, (av, t, paths) in list(managed.entries.items()):
            if key != me:
                managed.entries[key] = (av, t, paths - lost)
    managed.entries[me] = (api_version, now_rfc3339(), applied)
    managed._drop_empty()
    return new, managed.to_list(), conflicts


def path_to_string(path: Path) -> str:
    """A FieldsV1 path as conflict messages print it (`.spec.replicas`, `.spec.containers[name="x"]`)."""
    out = ""
    for el in path:
        kind, _, rest = el.partition(":")
        if kind == "f":
            out += "." + rest
        elif kind == "k":
            keys = json.loads(rest)
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif kind == "v":
            out += f"[{rest}]"
    return out
