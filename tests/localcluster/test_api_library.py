"""`localcluster.apiserver.APIServer` used in-process (the library entry point)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from localcluster.apiserver import APIServer


async def test_in_process_server(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    server = APIServer(port=0, kubeconfig=kubeconfig, state_file=tmp_path / "state.json", node_name="n1")
    await server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        cfg = yaml.safe_load(kubeconfig.read_text())
        assert cfg["clusters"][0]["cluster"]["server"] == server.url
        assert cfg["current-context"] == cfg["contexts"][0]["name"]
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        async with aiohttp.ClientSession(headers=headers) as s:
            pod: dict[str, Any] = {
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            }
            async with s.post(f"{server.url}/api/v1/namespaces/default/pods", json=pod) as r:
                assert r.status == 201
                assert "nodeName" not in (await r.json())["spec"]  # no node yet: nothing to bind to
            node = {"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "1", "pods": "10"}}}
            async with s.post(f"{server.url}/api/v1/nodes", json=node) as r:
                assert r.status == 201
            for _ in range(100):  # the in-process scheduler binds it
                async with s.get(f"{server.url}/api/v1/namespaces/default/pods/p") as r:
                    pod = await r.json()
                if pod["spec"].get("nodeName"):
                    break
                await asyncio.sleep(0.02)
            assert pod["spec"]["nodeName"] == "n1" and pod["status"]["phase"] == "Pending"
    finally:
        await server.stop()
    state = json.loads((tmp_path / "state.json").read_text())
    assert any(o["object"]["metadata"]["name"] == "p" for o in state["objects"])
    # a second server on the same state file sees the pod
    again = APIServer(port=0, state_file=tmp_path / "state.json")
    await again.start()
    try:
        assert again.store.get(("", "pods"), "default", "p") is not None
    finally:
        await again.stop()


async def test_abandoned_watch_is_released(tmp_path: Path) -> None:
    server = APIServer(port=0)
    await server.start()
    try:
        headers = {"Authorization": f"Bearer {server.admin_token}"}
        async with aiohttp.ClientSession(headers=headers) as s:
            resp = await s.get(f"{server.url}/api/v1/configmaps?watch=true")
            assert resp.status == 200
            await asyncio.sleep(0.2)
            assert len(server.store.subscribers) == 1
            resp.close()  # the client goes away without the server writing anything
        for _ in range(100):
            if not server.store.subscribers:
                break
            await asyncio.sleep(0.1)
        assert not server.store.subscribers
    finally:
        await server.stop()
