"""Configuration: YAML files -> validated models -> resolved InfraConfig."""

from config.errors import ConfigError, Problem
from config.loader import ConfigPaths, LoadResult, load_config
from config.model import InfraConfig, IsoSpec, ProxmoxSpec, StateBackendSpec, VmSpec

__all__ = [
    "ConfigError",
    "ConfigPaths",
    "InfraConfig",
    "IsoSpec",
    "LoadResult",
    "Problem",
    "ProxmoxSpec",
    "StateBackendSpec",
    "VmSpec",
    "load_config",
]
