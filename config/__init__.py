"""Configuration: YAML files -> validated models -> resolved InfraConfig."""

from config.errors import ConfigError, Problem
from config.loader import ConfigPaths, KeyLocator, LoadResult, load_config
from config.model import OWNER_TAG, InfraConfig, IsoSpec, ProxmoxSpec, StateBackendSpec, VmSpec

__all__ = [
    "OWNER_TAG",
    "ConfigError",
    "ConfigPaths",
    "InfraConfig",
    "IsoSpec",
    "KeyLocator",
    "LoadResult",
    "Problem",
    "ProxmoxSpec",
    "StateBackendSpec",
    "VmSpec",
    "load_config",
]
