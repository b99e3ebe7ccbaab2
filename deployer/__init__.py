"""A thin Kamal 2 compatible deployer that drives kamal-proxy over SSH.

Layers: :mod:`deployer.config` (validate, derive names) → :mod:`deployer.commands` (pure argv
builders) → :mod:`deployer.runner` / :mod:`deployer.workflows` (SSH, parallelism, orchestration) →
:mod:`deployer.cli`.
"""
