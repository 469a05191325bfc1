"""The node agent: one process per node composing long-running components.

Each component has ``start()`` and ``stop()``; the agent starts them in order
and stops them in reverse, so what started last (and may depend on the rest)
stops first. The device-plugin manager is always there; the CNI socket server
and the metrics endpoint are added by whoever wires the process (`add`).
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Sequence
from typing import Protocol

from sriovkit import signals as signals_
from sriovkit.agent.metrics import AgentMetrics, MetricsServer
from sriovkit.deviceplugin.manager import DevicePluginManager, DevicePluginSettings

log = logging.getLogger(__name__)


class Component(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class NodeAgent:
    """Construction only wires; `start()` makes sockets and threads."""

    def __init__(self, device_plugins: DevicePluginSettings, *, metrics: AgentMetrics | None = None,
                 components: Sequence[Component] = ()) -> None:
        self.metrics = metrics
        self.device_plugins = DevicePluginManager(device_plugins, metrics=metrics)
        self.components: list[Component] = [self.device_plugins, *components]
        self._started: list[Component] = []
        self._checked = False  # check_conflicts() done (the command does it before provisioning)
        self._done = threading.Event()

    def add(self, component: Component) -> None:
        """Add a component (e.g. `CniSocketServer`, `MetricsServer`) before `start()`. A metrics
        endpoint given no readiness check answers /readyz from this agent's components."""
        if isinstance(component, MetricsServer) and component.ready is None:
            component.ready = self.readiness_problems
        self.components.append(component)

    def check_conflicts(self, extra: Sequence[object] = ()) -> None:
        """Raise (OSError) when another process holds what a component would listen on: a live
        socket (another agent), a port. Changes nothing: called before anything starts, so a second
        agent never disturbs the first."""
        for component in [*self.components, *extra]:
            check = getattr(component, "check_conflicts", None)
            if check is not None:
                check()
        self._checked = True

    def start(self) -> None:
        """Start every component; if one fails, stop those already started and re-raise. Nothing
        starts when another process holds a socket or port of ours (`check_conflicts`)."""
        if not self._checked:
            self.check_conflicts()
        for component in self.components:
            try:
                component.start()
            except BaseException:
                self.stop()
                raise
            self._started.append(component)
        log.info("agent started components=%s", ",".join(type(c).__name__ for c in self._started))

    def stop(self) -> None:
        while self._started:
            component = self._started.pop()
            try:
                component.stop()
            except Exception:  # keep stopping the others: their sockets must go too
                log.exception("stopping %s failed", type(component).__name__)
        self._done.set()

    def healthy(self) -> bool:
        """For /healthz: started and not stopping."""
        return bool(self._started) and not self._done.is_set()

    def readiness_problems(self) -> list[str]:
        """For /readyz: what keeps the node unusable, from every component that can tell."""
        if not self.healthy():
            return ["agent: not running"]
        problems: list[str] = []
        for component in list(self._started):
            check = getattr(component, "readiness_problems", None)
            if check is not None:
                problems += check()
        return problems

    def run_until_signal(self, signals: Sequence[signal.Signals] = signals_.STOP_SIGNALS) -> None:
        """Start, serve until one of `signals`, then stop cleanly. Main thread only."""
        with signals_.stop_requested(signals) as stop:
            try:
                self.start()
                # What start-up built (modules, pools, payloads) lives as long as the agent: out of the
                # collector's sight, a full collection no longer walks it, stalling a request for ms.
                gc.collect()
                gc.freeze()
                signals_.wait(stop)
            finally:
                self.stop()
