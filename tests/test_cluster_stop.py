"""LocalCluster.stop against a server that exits by itself while we stop it (a recovery short of its target does)."""
import subprocess

import pytest

from apps.databases.clusters import LocalCluster, as_server_user, server_bin_dir
from tests.helpers import throwaway_cluster


def _exits_after_the_check(monkeypatch, cluster: LocalCluster) -> None:
    """The first is_running() sees the server up, and the server then goes away before pg_ctl stop runs."""
    real = LocalCluster.is_running
    calls = []

    def racing(self):
        running = real(self)
        if not calls:
            subprocess.run(as_server_user([f"{server_bin_dir()}/pg_ctl", "-D", str(self.data), "-m", "immediate",
                                           "-w", "stop"]), check=True, capture_output=True)
        calls.append(running)
        return running

    monkeypatch.setattr(LocalCluster, "is_running", racing)


def test_a_server_gone_between_the_check_and_pg_ctl_counts_as_stopped(monkeypatch):
    with throwaway_cluster("stoprace-") as cluster:
        _exits_after_the_check(monkeypatch, cluster)
        cluster.stop(mode="immediate")  # pg_ctl says the PID file is gone: not an error
        monkeypatch.undo()
        assert not cluster.is_running()


def test_a_stop_that_fails_while_the_server_runs_still_raises():
    with throwaway_cluster("stopfail-") as cluster:
        with pytest.raises(RuntimeError, match="pg_ctl failed"):
            cluster.stop(mode="no-such-mode")
        assert cluster.is_running()
