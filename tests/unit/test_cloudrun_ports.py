"""Ports of the local Cloud Run: a revision never takes a port a service URL or a tag holds, nor the reverse."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from iris_tools.cloudrun.routes import Routes
from iris_tools.cloudrun.store import Store
from iris_tools.cloudrun.supervisor import Supervisor


def test_a_revision_never_takes_a_service_or_tag_port_even_when_it_is_free(tmp_path: Path) -> None:
    """Broken on purpose (no `taken` set in Supervisor._home_port): the revision got the tag's port back."""
    store = Store(tmp_path, "p", "r", "process")
    with socket.socket() as probe:  # a port that is free now, recorded as a tag's
        probe.bind(("127.0.0.1", 0))
        tag_port = probe.getsockname()[1]
    store.services["iris"] = {"ports": {"": 1, "candidate": tag_port}}
    revision = {"port": tag_port, "service": "iris"}
    store.revisions["iris-00001-abc"] = revision
    supervisor = Supervisor(store, tmp_path, Routes(store, tmp_path), threading.RLock())
    assert supervisor._home_port(revision) not in (tag_port, 1)


def test_a_service_port_is_never_one_a_revision_or_an_instance_holds(tmp_path: Path, monkeypatch) -> None:
    store = Store(tmp_path, "p", "r", "process")
    store.revisions["iris-00001-abc"] = {"port": 40001, "service": "iris", "instances": [{"port": 40002}]}
    offered = iter([40001, 40002, 40003])
    monkeypatch.setattr("iris_tools.cloudrun.routes.free_port", lambda: next(offered))
    entry = {"ports": {}}
    store.services["iris"] = entry
    assert Routes(store, tmp_path).port(entry, "candidate") == 40003
