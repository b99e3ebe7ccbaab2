"""The proxy image, built from the repository's own Dockerfile the way users build it, except for
where the base and the wheels come from (there is no Docker Hub here, and builds run offline):

* the base is ``BASE=localhost/bookworm-python:<recipe>``, a Debian bookworm root filesystem made by
  ``base-image.sh`` (debootstrap, cached under /var/cache/kamal-proxy-py) and ``podman import``-ed
  with what the Dockerfile relies on in python:3.11-slim (``python3`` and ``useradd`` on PATH,
  ``LANG=C.UTF-8``);
* the proxy's dependencies come from a wheel directory made here with the host's pip, mounted into
  the build (``--volume``) and used through the Dockerfile's ``PIP_OPTIONS`` build argument.
"""

from __future__ import annotations

import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.deployer.e2e import env

BASE_SCRIPT = Path(__file__).with_name("base-image.sh")
# what python:3.11-slim's configuration gives the Dockerfile (its PATH has /usr/local/bin first)
BASE_CHANGES = [
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["python3"]',
]


@dataclass
class Timings:
    base: float = 0.0  # base tarball (debootstrap when not cached) + podman import
    wheels: float = 0.0
    build: float = 0.0

    def __str__(self) -> str:
        return f"base {self.base:.1f}s, wheels {self.wheels:.1f}s, build {self.build:.1f}s"


def base_tarball() -> Path:
    """The bookworm + Python root filesystem tarball (built by debootstrap unless cached)."""
    out = env.run(["sh", str(BASE_SCRIPT)], timeout=900).stdout.strip().splitlines()
    return Path(out[-1])


def proxy_requirements() -> list[str]:
    """The build backend and the proxy's runtime dependencies, as pyproject.toml declares them."""
    pyproject = tomllib.loads((env.REPO / "pyproject.toml").read_text())
    return [*pyproject["build-system"]["requires"], *pyproject["project"]["dependencies"]]


def wheelhouse(dest: Path) -> Path:
    """Wheels for everything ``pip install .`` needs in the image (same CPython minor version and
    glibc family as the host: bookworm, 3.11)."""
    dest.mkdir(parents=True, exist_ok=True)
    env.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(dest), *proxy_requirements()],
        timeout=600,
    )
    return dest


def build_proxy_image(builder: env.Builder, ref: str, work: Path) -> Timings:
    """Build the repository's Dockerfile as ``ref`` (offline) and push it to the builder's registry."""
    timings = Timings()
    started = time.monotonic()
    tarball = base_tarball()
    base_ref = f"localhost/bookworm-python:{tarball.stem.rsplit('-', 1)[-1]}"
    builder.podman("import", *(a for c in BASE_CHANGES for a in ("--change", c)), str(tarball), base_ref)
    timings.base = time.monotonic() - started
    started = time.monotonic()
    wheels = wheelhouse(work / "wheels")
    timings.wheels = time.monotonic() - started
    started = time.monotonic()
    builder.podman(
        "build",
        "--quiet",
        "--network",
        "none",
        *(a for limit in env.ULIMITS for a in ("--ulimit", limit)),
        "--build-arg",
        f"BASE={base_ref}",
        "--build-arg",
        "PIP_OPTIONS=--no-index --find-links /wheels",
        "--volume",
        f"{wheels}:/wheels:ro",
        "-t",
        ref,
        str(env.REPO),
        timeout=600,
    )
    builder.podman("push", "--quiet", "--tls-verify=false", ref)
    timings.build = time.monotonic() - started
    return timings


def image_size(builder: env.Builder, ref: str) -> int:
    """Bytes, as ``podman image inspect`` reports the (uncompressed) image."""
    out = builder.podman("image", "inspect", "--format", "{{.Size}}", ref).stdout
    return int(out.strip())
