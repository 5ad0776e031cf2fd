"""The TensorRT Python API the project uses (tests/tensorrt_api.py) against the real bindings of every supported
TensorRT version, and the CUDA extras against pip's resolution for each platform they promise.

Both need what ``make trt-bindings`` (scripts/trt_bindings.py) prepares from PyPI; ``make test`` runs it first.
Nothing here skips: without that preparation the tests fail and say why.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from tensorrt_api import API

REPO = Path(__file__).resolve().parents[1]
MANIFEST = Path(__file__).with_name("tensorrt_api.py")
#: where the project's code uses TensorRT
SCANNED = ("runtime", "export", "benchmarks", "tests")


def _load_preparation() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trt_bindings", REPO / "scripts" / "trt_bindings.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


prep = _load_preparation()


def tensorrt_uses(source: str) -> set[tuple[str, ...]]:
    """Every ``trt.X.Y...`` attribute chain (the module under the name ``trt``, ``tensorrt`` or an ``import
    tensorrt as`` alias) and every ``from tensorrt import X``, as tuples of names after the module."""
    tree = ast.parse(source)
    module_names = {"trt", "tensorrt"} | {alias.asname for node in ast.walk(tree) if isinstance(node, ast.Import)
                                         for alias in node.names if alias.name == "tensorrt" and alias.asname}
    uses = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "tensorrt":
            uses |= {(alias.name,) for alias in node.names}
        elif isinstance(node, ast.Attribute):
            chain, inner = [], node
            while isinstance(inner, ast.Attribute):
                chain.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name) and inner.id in module_names:
                uses.add(tuple(reversed(chain)))
    return uses


def not_in_manifest(uses: set[tuple[str, ...]]) -> list[str]:
    """The module-level names, and the members of listed classes and enums, that API does not list."""
    missing = set()
    for chain in uses:
        if chain[0] not in API["tensorrt"]:
            missing.add(f"tensorrt.{chain[0]}")
        elif len(chain) > 1 and chain[1] not in API.get(chain[0], ()):
            missing.add(f"{chain[0]}.{chain[1]}")
    return sorted(missing)


def test_the_scan_finds_chains_aliases_and_from_imports() -> None:
    source = ("import tensorrt as nv\nfrom tensorrt import Builder, NotAThing\n"
              "def f(trt):\n    trt.Logger(trt.Logger.ERROR)\n    return nv.DeviceType.GPU, trt.Builder\n")
    assert not_in_manifest(tensorrt_uses(source)) == ["DeviceType.GPU", "Logger.ERROR", "tensorrt.NotAThing"]


def test_manifest_lists_every_module_level_name_the_code_uses() -> None:
    """Module-level names (``trt.X``, ``trt.X.Y``, ``from tensorrt import X``) are found here; the members of
    objects TensorRT returns (``engine.create_execution_context``) cannot be found by a scan: the strict
    stand-in (tests/tensorrt_standin.py) exposes only the manifest's members, so code that uses an unlisted
    one fails its CPU tests until the manifest lists it."""
    missing = {}
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            if names := not_in_manifest(tensorrt_uses(path.read_text())):
                missing[str(path.relative_to(REPO))] = names
    assert not missing, f"TensorRT names used but not in tests/tensorrt_api.py: {missing}"


#: run by each bindings' own interpreter: import tensorrt as users do, print the manifest entries it lacks
CHECK = r"""
import json, re, runpy, sys
site, manifest = sys.argv[1:3]
sys.path.insert(0, site)
import tensorrt
listed = runpy.run_path(manifest)
missing = []
for owner, members in listed["API"].items():
    found = tensorrt if owner == "tensorrt" else getattr(tensorrt, owner, None)
    if found is None:
        missing.append(f"tensorrt.{owner}")
        continue
    missing += [f"{owner}.{member}" for member in sorted(members) if not hasattr(found, member)]
for method, keywords in listed["KEYWORDS"].items():
    owner, name = method.split(".")
    doc = getattr(getattr(getattr(tensorrt, owner, None), name, None), "__doc__", None) or ""
    signatures = [line for line in doc.splitlines() if re.match(rf"\s*(\d+\. )?{name}\(", line)]
    missing += [f"{method}({keyword}=)" for keyword in sorted(keywords)
                if not any(re.search(rf"[(,]\s*{keyword}\s*:", line) for line in signatures)]
print(json.dumps(missing))
"""


@pytest.fixture(scope="module")
def prepared() -> None:
    """Fails (never skips) where ``make trt-bindings`` did not run or did not succeed."""
    if prep.FAILURE.is_file():
        pytest.fail(f"make trt-bindings failed: {prep.FAILURE.read_text().strip()}", pytrace=False)
    unready = [f"{b.distribution} {b.version}" for b in prep.BINDINGS if not b.ready.is_file()]
    if unready:
        pytest.fail(f"{', '.join(unready)} not prepared: run `make trt-bindings` (downloads them from PyPI)",
                    pytrace=False)


def test_every_manifest_entry_exists_in_every_supported_tensorrt(prepared: None) -> None:
    missing = {}
    for bindings in prep.BINDINGS:
        python = json.loads(bindings.ready.read_text())["python"]
        out = subprocess.run([python, "-I", "-c", CHECK, str(bindings.site), str(MANIFEST)], capture_output=True,
                             text=True, env={"LD_LIBRARY_PATH": str(bindings.stubs)}, timeout=60)
        assert out.returncode == 0, f"TensorRT {bindings.version} ({python}): {out.stderr.strip()[-2000:]}"
        if lacking := json.loads(out.stdout):
            missing[f"TensorRT {bindings.version}"] = lacking
    assert not missing, f"used by the project but missing from the real bindings: {missing}"


def major(version: str) -> int:
    return int(version.split(".")[0])


def test_cuda_extras_install_the_cuda_major_of_each_platform(prepared: None) -> None:
    """cuda.bindings must be the driver's CUDA major (13 needs a CUDA 13 driver; ``cuda.bindings`` does not exist
    before cuda-python 12.6.1), and so must NVRTC where an extra brings it."""
    extras, problems = prep.defined_extras(), []
    for platform in prep.PLATFORMS:
        for extra in prep.EXTRAS_FOR_CUDA[platform.cuda]:
            where = f"[{extra}] on {platform.name} (Python {platform.python}, {platform.arch})"
            if extra not in extras:
                problems.append(f"{where}: pyproject.toml has no such extra")
                continue
            path = prep.resolution_file(platform, prep.extra_requirements(extra))
            if not path.is_file():
                problems.append(f"{where}: not resolved yet: run `make trt-bindings`")
                continue
            result = json.loads(path.read_text())
            if "error" in result:
                problems.append(f"{where}: pip cannot install it: {result['error']}")
                continue
            installs = result["installs"]
            if major(installs.get("cuda-bindings", "0")) != platform.cuda:
                problems.append(f"{where}: cuda-bindings {installs.get('cuda-bindings', '(none)')}, "
                                f"expected {platform.cuda}.x")
            nvrtc = {name: version for name, version in installs.items() if name.startswith("nvidia-cuda-nvrtc")}
            if extra.startswith("kernel") and (not nvrtc or {major(v) for v in nvrtc.values()} != {platform.cuda}):
                problems.append(f"{where}: NVRTC {nvrtc or '(none)'}, expected {platform.cuda}.x")
    assert not problems, "\n".join(problems)
