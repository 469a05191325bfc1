"""The API server stand-in the hot-plug, agent, injector and DRA tests talk to (sriovkit.kubesim.apiserver)."""

from sriovkit.kubesim.apiserver import CLAIMS, NADS, PODS, SLICES, FakeKubeApi, merge_patch, rbac_verb

__all__ = ["CLAIMS", "NADS", "PODS", "SLICES", "FakeKubeApi", "merge_patch", "rbac_verb"]
