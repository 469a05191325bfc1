"""VF provisioning from a node policy: create VFs (sriov_numvfs) and bind their drivers.

`policy` parses the file, `plan` computes the steps against a host's state (pure),
`apply` runs them through a small port (`Provisioner`), handed in by the entry point.
"""
