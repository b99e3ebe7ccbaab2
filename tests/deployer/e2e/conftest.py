"""Session fixtures shared by the end-to-end modules: one local registry, one image builder, and the
proxy image built once from the repository's Dockerfile (tests/deployer/e2e/image.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deployer.e2e import env, image

PROXY_REPOSITORY = "kamal-proxy"
PROXY_VERSION = "v0.9.2"  # Kamal refuses a proxy image tagged below v0.9.2


@pytest.fixture(scope="session")
def e2e_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = env.missing_prerequisites()
    if reason:
        pytest.skip(reason)
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def registry(e2e_root: Path) -> Iterator[env.Registry]:
    registry = env.Registry(e2e_root / "registry")
    try:
        registry.start()
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def builder(e2e_root: Path, registry: env.Registry) -> Iterator[env.Builder]:
    builder = env.Builder(e2e_root / "builder", registry)
    try:
        yield builder
    finally:
        builder.cleanup()


@pytest.fixture(scope="session")
def proxy_image(e2e_root: Path, registry: env.Registry, builder: env.Builder) -> str:
    """``<registry>/kamal-proxy:v0.9.2``, built from ./Dockerfile and pushed to the local registry."""
    ref = f"{registry.server}/{PROXY_REPOSITORY}:{PROXY_VERSION}"
    timings = image.build_proxy_image(builder, ref, e2e_root / "proxy-image")
    size = image.image_size(builder, ref)
    print(f"proxy image {ref}: {size / 1e6:.0f} MB; {timings}")
    return ref
