"""The agent's provisioning loop: one node policy file drives the VFs and the device plugin's pools.

At start-up and whenever the policy file changes, the reconciler plans against the host, then:
1. publishes the pools with every pool behind a PF that still has steps emptied, and lets the
   device plugin pick that up (`before_apply`), so the kubelet stops placing pods on VFs about to be
   recreated or rebound;
2. applies the plan (sriov_numvfs, driver binding, MTU);
3. publishes the pools as the policy defines them on the host as it now is.
"Publishing" writes the device plugin's config.json (`pools_file`) atomically; the device plugin
reloads it as it would an operator's. A plan that would remove or rebind a VF a pod holds is
refused as a whole: nothing changes and the pools stay as last published. A step the kernel
refuses stops the run; what it touched stays withheld until a later run succeeds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sriovkit.errors import InUseUnknown
from sriovkit.filestamp import FileStamp
from sriovkit.host.model import HostSnapshot
from sriovkit.host.statefile import write_json_atomic
from sriovkit.host.sysfs import Sysfs
from sriovkit.provision.apply import ApplyError, Provisioner, apply, read_host_state
from sriovkit.provision.plan import Plan, PlanRefused, plan
from sriovkit.provision.policy import Policy, PolicyError, load_policy
from sriovkit.provision.resources import pools_pending, resources_from_policy, withhold
from sriovkit.resources.config import DEFAULT_RESOURCE_PREFIX, ResourceList, to_config_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolicySettings:
    policy_file: Path
    pools_file: Path  # the config.json this writes and the device plugin reads
    sysfs: Sysfs = field(default_factory=Sysfs)
    proc_root: str = "/proc"
    resource_prefix: str = DEFAULT_RESOURCE_PREFIX
    poll_interval: float = 1.0
    strict: bool = False  # refuse a policy with unknown fields instead of warning


class PolicyReconciler:
    """A node-agent component. Call `reconcile()` once before the device plugin starts (so its
    config exists); `start()` then watches the policy file."""

    def __init__(self, settings: PolicySettings, *, provisioner: Provisioner,
                 in_use: Callable[[], Iterable[str]] = tuple, before_apply: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.in_use = in_use
        self.provisioner = provisioner
        self.before_apply = before_apply
        self.published: ResourceList | None = None
        self._stamp: FileStamp | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.problem: str | None = None  # why the node does not match the policy now (None: it does)
        self.on_failure: Callable[[str], None] | None = None  # told each new problem (an Event on the Node)

    def readiness_problems(self) -> list[str]:
        """For /readyz: the policy on disk is not what the node runs."""
        return [] if self.problem is None else [f"policy {self.settings.policy_file}: not applied: {self.problem}"]

    def _note(self, ok: bool, problem: str = "") -> bool:
        if ok:
            self.problem = None
        elif problem != self.problem:
            self.problem = problem
            if self.on_failure is not None:
                self.on_failure(problem)
        return ok

    # -- one pass -----------------------------------------------------------------------------
    def reconcile(self) -> bool:
        """Make the node match the policy; True when it does afterwards."""
        self._stamp = FileStamp.of(self.settings.policy_file)
        try:
            policy = load_policy(self.settings.policy_file, strict=self.settings.strict)
        except PolicyError as exc:
            for line in exc.problems:
                log.error("policy not applied: %s", line)
            return self._note(False, "; ".join(exc.problems))
        state = read_host_state(self.settings.sysfs, self.settings.proc_root)
        try:
            held = set(self.in_use())
        except InUseUnknown as exc:  # e.g. the kubelet did not answer: try again on the next poll
            log.error("policy not applied yet, nothing changed: cannot tell which VFs pods hold: %s", exc)
            self._stamp = None
            if self.published is None:  # first run: every pool registered, none offering a device yet
                resources = self._resources(policy, state.snapshot)
                self._publish(withhold(resources, frozenset(r.full_name for r in resources.resources)))
            return self._note(False, f"cannot tell which VFs pods hold: {exc}")
        try:
            steps = plan(policy, state, allocated=held)
        except PlanRefused as exc:
            for line in exc.problems:
                log.error("policy not applied, nothing changed: %s: %s", self.settings.policy_file, line)
            if self.published is None:  # first run: the pools as the host is, rather than none
                self._publish(self._resources(policy, state.snapshot))
            return self._note(False, "; ".join(exc.problems))
        if steps:
            return self._apply(policy, state.snapshot, steps)
        self._publish(self._resources(policy, state.snapshot))
        return self._note(True)

    def _apply(self, policy: Policy, before: HostSnapshot, steps: Plan) -> bool:
        pending = pools_pending(policy, before, steps, default_prefix=self.settings.resource_prefix)
        self._publish(withhold(self._resources(policy, before), pending))
        if self.before_apply is not None:
            self.before_apply()
        ok = True
        try:
            apply(steps, self.provisioner, self.settings.sysfs,
                  on_step=lambda s: log.info("provisioned %s", s.describe()))
        except ApplyError as exc:
            log.error("policy %s: %s", self.settings.policy_file, exc)
            ok = False
            self._note(False, str(exc))
        after = read_host_state(self.settings.sysfs, self.settings.proc_root).snapshot
        resources = self._resources(policy, after)
        self._publish(resources if ok else withhold(resources, pending))
        return self._note(True) if ok else False

    def _resources(self, policy: Policy, snapshot: HostSnapshot) -> ResourceList:
        return resources_from_policy(policy, snapshot, default_prefix=self.settings.resource_prefix,
                                     source=str(self.settings.policy_file))

    def _publish(self, resources: ResourceList) -> None:
        if resources == self.published:
            return
        write_json_atomic(self.settings.pools_file, to_config_json(resources))
        self.published = resources
        log.info("pools from policy published file=%s resources=%s", self.settings.pools_file,
                 ",".join(r.full_name for r in resources.resources) or "-")

    # -- component ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._stamp is None:
            self.reconcile()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name="policy-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _watch(self) -> None:
        while not self._stopping.wait(self.settings.poll_interval):
            if FileStamp.of(self.settings.policy_file) == self._stamp:
                continue
            try:
                self.reconcile()
            except Exception:  # the loop must outlive one bad pass; the next change retries
                log.exception("policy reconcile failed")
