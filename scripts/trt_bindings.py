"""Prepare what tests/test_tensorrt_api.py checks against, from PyPI: the real TensorRT Python bindings and
pip's resolution of the CUDA extras.

TensorRT's libraries come only from NVIDIA's index, but the bindings (``tensorrt-cuNN-bindings``: the
pybind11 extension ``tensorrt_bindings/tensorrt.so``) and the small package that makes them ``import
tensorrt`` (``tensorrt-cuNN``, an sdist) are on PyPI. The extension imports only a handful of C entry points
from libnvinfer, libnvonnxparser and libnvinfer_plugin, so a stub library that defines those (and aborts if
one is ever called) lets it import here, with every class, enum and method signature the real bindings have.

For each pinned version this downloads both packages (``pip download --no-deps`` with the interpreter the
bindings are built for), unpacks them into a site directory, generates and compiles the stub library, and
checks that ``import tensorrt`` works there. It also resolves each CUDA extra of pyproject.toml for the
platforms it promises to install on (``pip install --dry-run --report``). Everything goes to
build/trt-bindings/ (ignored by git); a second run reuses it and only checks the imports.

Usage: python scripts/trt_bindings.py [--keep-going]
  --keep-going  on failure, record the one-line reason for the test to report and exit 0 (``make test``)
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "build" / "trt-bindings"
#: the one-line reason of the last failed preparation (absent after a successful one)
FAILURE = CACHE / "failure.txt"


@dataclass(frozen=True)
class Bindings:
    """One TensorRT release's Python bindings, checked under the Python it is built for."""

    cuda: str  # "cu12" or "cu13": the CUDA major of the wheels
    version: str
    python: str  # "3.10"

    @property
    def distribution(self) -> str:
        return f"tensorrt-{self.cuda}-bindings"

    @property
    def package(self) -> str:
        """The distribution that provides ``import tensorrt`` on top of ``tensorrt_bindings``."""
        return f"tensorrt-{self.cuda}"

    @property
    def root(self) -> Path:
        return CACHE / f"{self.distribution}-{self.version}"

    @property
    def site(self) -> Path:
        """Where both packages are unpacked, as pip would install them into site-packages."""
        return self.root / "site"

    @property
    def stubs(self) -> Path:
        """The stub TensorRT libraries (LD_LIBRARY_PATH)."""
        return self.root / "stubs"

    @property
    def ready(self) -> Path:
        """Written last: the interpreter that imports these bindings."""
        return self.root / "ready.json"


BINDINGS = (
    Bindings("cu12", "10.3.0", "3.10"),  # JetPack 6.1/6.2 ship 10.3 (our minimum) with Python 3.10
    Bindings("cu12", "10.16.1.11", "3.11"),  # the newest 10.x, which Jetson stays on
    Bindings("cu13", "11.4.0.106", "3.12"),  # the newest 11.x (desktop GPUs)
)


@dataclass(frozen=True)
class Platform:
    """A machine the CUDA extras must install and work on: its Python, CPU, glibc and CUDA driver major."""

    name: str
    python: str
    arch: str
    glibc_minor: int  # 35: glibc 2.35 (Ubuntu 22.04, JetPack 6)
    cuda: int

    @property
    def pip_platforms(self) -> list[str]:
        """Every wheel platform tag this machine accepts (pip does not expand ``manylinux_2_35`` by itself)."""
        return [f"manylinux_2_{minor}_{self.arch}" for minor in range(self.glibc_minor, 16, -1)] + \
               [f"manylinux2014_{self.arch}"]


PLATFORMS = (
    Platform("JetPack 6", "3.10", "aarch64", 35, 12),
    Platform("desktop CUDA 12", "3.10", "x86_64", 35, 12),
    Platform("desktop CUDA 12", "3.12", "x86_64", 35, 12),
    Platform("desktop CUDA 13", "3.10", "x86_64", 35, 13),
    Platform("desktop CUDA 13", "3.12", "x86_64", 35, 13),
)
#: the extras (pyproject.toml) meant for each CUDA driver major; plain ``trt``/``kernel`` are the CUDA 12 ones
EXTRAS_FOR_CUDA = {12: ("trt", "trt-cu12", "kernel", "kernel-cu12"), 13: ("trt-cu13", "kernel-cu13")}


class PreparationError(Exception):
    """A step failed; the message is one line."""


def defined_extras(pyproject: Path = REPO / "pyproject.toml") -> set[str]:
    return set(tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"])


def extra_requirements(extra: str, pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The requirements of an optional-dependency group, with ``dannet-edge[other]`` expanded in place."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    if extra not in extras:
        raise KeyError(f"{pyproject}: no extra {extra!r} in [project.optional-dependencies]")
    self_reference = re.compile(rf"^{re.escape(project['name'])}\[(?P<names>[^\]]+)\]$")
    requirements: list[str] = []
    for requirement in extras[extra]:
        match = self_reference.match(requirement.replace(" ", ""))
        expanded = [item for name in match["names"].split(",") for item in extra_requirements(name, pyproject)] \
            if match else [requirement]
        for item in expanded:
            if item not in requirements:
                requirements.append(item)
    return requirements


def resolution_file(platform: Platform, requirements: list[str]) -> Path:
    """Where the resolution of these requirements on this platform is kept (keyed by both)."""
    key = hashlib.sha256(json.dumps([platform.python, platform.arch, platform.glibc_minor, requirements])
                         .encode()).hexdigest()[:16]
    return CACHE / "resolutions" / f"{key}.json"


def find_python(version: str) -> Path:
    """An interpreter of this ``major.minor`` (pyenv's, or one on PATH that really is that version)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(str(pyenv / "versions" / f"{version}.*" / "bin" / "python")), reverse=True)
    candidates += [p for p in (shutil.which(f"python{version}"),) if p]
    for candidate in candidates:
        out = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip() == version:
            return Path(candidate)
    raise PreparationError(f"no Python {version} interpreter (looked in {pyenv}/versions and on PATH): "
                           f"install one, e.g. pyenv install {version}")


def run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """Run a step; a failure becomes a PreparationError with the step and the last line it printed."""
    out = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if out.returncode != 0:
        lines = [line for line in (out.stderr + out.stdout).splitlines() if line.strip()]
        raise PreparationError(f"{what} failed: {lines[-1].strip() if lines else f'exit {out.returncode}'}")
    return out


def download(bindings: Bindings, python: Path, into: Path) -> tuple[Path, Path]:
    """The bindings wheel and the ``tensorrt`` sdist, pinned, without dependencies (the libs are stubs on PyPI)."""
    into.mkdir(parents=True, exist_ok=True)
    for spec in (f"{bindings.distribution}=={bindings.version}", f"{bindings.package}=={bindings.version}"):
        run([str(python), "-m", "pip", "download", "-q", "--no-deps", "--dest", str(into), spec],
            f"pip download {spec} (PyPI)")
    wheel_prefix = bindings.distribution.replace("-", "_") + f"-{bindings.version}-"
    wheels = [p for p in into.iterdir() if p.name.startswith(wheel_prefix) and p.suffix == ".whl"]
    sdists = [p for p in into.iterdir() if p.name.endswith(".tar.gz")]
    if len(wheels) != 1 or len(sdists) != 1:
        raise PreparationError(f"{into}: expected one {wheel_prefix}*.whl and one sdist, found "
                               f"{sorted(p.name for p in into.iterdir())}")
    return wheels[0], sdists[0]


def unpack(wheel: Path, sdist: Path, site: Path) -> None:
    """Lay both packages out as pip installs them: the wheel as is, the sdist's ``tensorrt`` package beside it."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.split("/")[1:2] == ["tensorrt"]]
        for member in members:
            member.name = member.name.split("/", 1)[1]  # drop the sdist's top directory
        archive.extractall(site, members=members, filter="data")
    if not (site / "tensorrt" / "__init__.py").is_file():
        raise PreparationError(f"{sdist}: has no tensorrt/__init__.py")


def tensorrt_imports(extension: Path) -> tuple[list[str], list[str]]:
    """The TensorRT libraries the extension needs and the symbols it takes from them.

    Those symbols are the undefined, global, unversioned functions: glibc's and libstdc++'s carry a symbol
    version, and the Python C API's are untyped (an extension module does not link libpython)."""
    dynamic = run(["readelf", "-d", "-W", str(extension)], f"readelf -d {extension}").stdout
    libraries = [lib for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
                 if lib.startswith("libnv")]
    symbols = set()
    for line in run(["readelf", "--dyn-syms", "-W", str(extension)], f"readelf --dyn-syms {extension}") \
            .stdout.splitlines():
        fields = line.split()  # Num: Value Size Type Bind Vis Ndx Name
        if len(fields) == 8 and fields[6] == "UND" and fields[3] == "FUNC" and fields[4] == "GLOBAL" \
                and "@" not in fields[7]:
            symbols.add(fields[7])
    if not libraries or not symbols:
        raise PreparationError(f"{extension}: found no TensorRT libraries or symbols to stub "
                               f"({len(libraries)} libraries, {len(symbols)} symbols)")
    return libraries, sorted(symbols)


def build_stubs(extension: Path, stubs: Path) -> None:
    """One stub library under the first TensorRT soname, the other sonames as links to it."""
    libraries, symbols = tensorrt_imports(extension)
    stubs.mkdir(parents=True, exist_ok=True)
    source = stubs / "stubs.c"
    source.write_text(
        "/* Generated by scripts/trt_bindings.py: TensorRT's entry points, which abort if called. */\n"
        "#include <stdio.h>\n#include <stdlib.h>\n\n"
        "static void notTensorRT(const char* name)\n{\n"
        '    fprintf(stderr, "%s: called in a stub library (no TensorRT here)\\n", name);\n    abort();\n}\n\n'
        + "".join(f'void {name}(void)\n{{\n    notTensorRT("{name}");\n}}\n\n' for name in symbols))
    run(["cc", "-shared", "-fPIC", "-o", str(stubs / libraries[0]), f"-Wl,-soname,{libraries[0]}", str(source)],
        f"cc {source}")
    for library in libraries[1:]:
        link = stubs / library
        link.unlink(missing_ok=True)
        link.symlink_to(libraries[0])


#: run by each bindings' interpreter: import tensorrt from the site directory as users do
IMPORT_CHECK = "import sys; sys.path.insert(0, sys.argv[1]); import tensorrt; print(tensorrt.__version__)"


def import_check(bindings: Bindings, python: Path) -> None:
    out = run([str(python), "-I", "-c", IMPORT_CHECK, str(bindings.site)], f"import tensorrt {bindings.version} "
              f"with {python}", env={**os.environ, "LD_LIBRARY_PATH": str(bindings.stubs)})
    if out.stdout.strip() != bindings.version:
        raise PreparationError(f"{bindings.site}: import tensorrt gave version {out.stdout.strip()!r}, "
                               f"expected {bindings.version}")


def prepare_bindings(bindings: Bindings) -> None:
    if bindings.ready.is_file():
        python = Path(json.loads(bindings.ready.read_text())["python"])
    else:
        python = find_python(bindings.python)
        shutil.rmtree(bindings.root, ignore_errors=True)  # a half-finished earlier try
        wheel, sdist = download(bindings, python, bindings.root / "downloads")
        unpack(wheel, sdist, bindings.site)
        build_stubs(bindings.site / "tensorrt_bindings" / "tensorrt.so", bindings.stubs)
    import_check(bindings, python)
    bindings.ready.write_text(json.dumps({"python": str(python)}))
    print(f"==> {bindings.distribution} {bindings.version}: imports with Python {bindings.python} ({python})")


def resolve(platform: Platform, requirements: list[str]) -> Path:
    """pip's resolution of the requirements for that platform, binary wheels only, kept in a file (returned):
    ``{"installs": {name: version}}``, or ``{"error": pip's first error line}`` (tried again on the next run)."""
    target = resolution_file(platform, requirements)
    if target.is_file() and "installs" in json.loads(target.read_text()):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    report = target.with_suffix(".report")
    command = [sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed",
               "--only-binary=:all:", "--python-version", platform.python,
               *(arg for tag in platform.pip_platforms for arg in ("--platform", tag)),
               "--report", str(report), *requirements]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode == 0:
        installs = json.loads(report.read_text())["install"]
        result = {"requirements": requirements,
                  "installs": {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}}
    else:
        errors = [line.strip() for line in out.stderr.splitlines() if line.startswith("ERROR")]
        result = {"requirements": requirements, "error": errors[0] if errors else f"pip exit {out.returncode}"}
    report.unlink(missing_ok=True)
    target.write_text(json.dumps(result))
    return target


def prepare() -> None:
    for bindings in BINDINGS:
        prepare_bindings(bindings)
    extras, kept = defined_extras(), set()
    for platform in PLATFORMS:
        for extra in EXTRAS_FOR_CUDA[platform.cuda]:
            if extra in extras:  # a missing one is for the test to report
                kept.add(resolve(platform, extra_requirements(extra)))
    for stale in set((CACHE / "resolutions").glob("*.json")) - kept:  # of extras as they were before an edit
        stale.unlink()
    print(f"==> CUDA extras resolved for {len(PLATFORMS)} platforms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-going", action="store_true",
                        help="on failure, record the reason for tests/test_tensorrt_api.py and exit 0")
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        prepare()
    except PreparationError as e:
        FAILURE.write_text(f"{e}\n")
        print(f"trt-bindings: {e}", file=sys.stderr)
        return 0 if args.keep_going else 1
    FAILURE.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
