"""The allow-list: callables the frameworks' own pickles use, known to be safe to import.

Only exact dotted names; everything not listed (and not denied) is *unknown*.
Scikit-learn estimators are matched structurally in :func:`is_allowed_class`:
public or private classes (CamelCase names) inside ``sklearn.*`` modules, whose
constructors only store parameters by the library's convention; so are the
configuration and state classes of the major training libraries (Hugging Face
``TrainingArguments``, accelerate, PEFT, Lightning, OmegaConf containers).
"""

from __future__ import annotations

import re


def _words(text: str) -> list[str]:
    return text.split()


_TORCH = _words(
    """
torch._utils._rebuild_tensor torch._utils._rebuild_tensor_v2 torch._utils._rebuild_tensor_v3
torch._utils._rebuild_parameter torch._utils._rebuild_parameter_with_state
torch._utils._rebuild_sparse_tensor torch._utils._rebuild_nested_tensor
torch._utils._rebuild_device_tensor_from_numpy torch._utils._rebuild_meta_tensor_no_storage
torch._utils._rebuild_wrapper_subclass torch._utils._rebuild_qtensor
torch._utils._rebuild_xla_tensor torch._utils._rebuild_mtia_tensor
torch._tensor._rebuild_from_type torch._tensor._rebuild_from_type_v2
torch.nn.parameter.Parameter torch.nn.parameter.Buffer torch.Tensor torch.Size torch.device
torch.dtype torch.float32 torch.float64 torch.float16 torch.bfloat16 torch.int64 torch.int32
torch.int16 torch.int8 torch.uint8 torch.bool torch.complex64 torch.complex128
torch.FloatStorage torch.DoubleStorage torch.HalfStorage torch.BFloat16Storage
torch.LongStorage torch.IntStorage torch.ShortStorage torch.CharStorage torch.ByteStorage
torch.BoolStorage torch.ComplexFloatStorage torch.ComplexDoubleStorage torch.QUInt8Storage
torch.QInt8Storage torch.QInt32Storage torch.QUInt4x2Storage torch.QUInt2x4Storage
torch.storage.TypedStorage torch.storage.UntypedStorage torch.storage._TypedStorage
torch.per_tensor_affine torch.per_channel_affine torch.contiguous_format torch.channels_last
torch.preserve_format torch.strided torch.sparse_coo
torch.distributed._shard.sharded_tensor.ShardedTensor torch.optim.lr_scheduler.StepLR
torch.optim.lr_scheduler.LambdaLR torch.torch_version.TorchVersion
torch.serialization._get_layout torch.qint8 torch.quint8 torch.qint32 torch.quint4x2
torch.float8_e4m3fn torch.float8_e5m2 torch.sparse_csr torch.jit._pickle.build_intlist
torch.jit._pickle.build_tensorlist torch.jit._pickle.build_doublelist
torch.jit._pickle.build_boollist torch.jit._pickle.build_tensor_from_id
torch.jit._pickle.restore_type_tag
"""
)

_TORCH_MODULE_PREFIXES = (
    "torch.nn.modules.",
    "torch.optim.sgd.",
    "torch.optim.adam.",
    "torch.optim.adamw.",
    "torch.optim.rmsprop.",
    "torch.optim.adagrad.",
)

_STDLIB = _words(
    """
collections.OrderedDict collections.defaultdict collections.Counter collections.deque
builtins.set builtins.frozenset builtins.list builtins.dict builtins.tuple builtins.slice
builtins.range builtins.complex builtins.bytearray builtins.bytes builtins.str builtins.int
builtins.float builtins.bool builtins.NoneType builtins.object builtins.memoryview
_codecs.encode codecs.encode copyreg._reconstructor copyreg.__newobj__ copyreg.__newobj_ex__
datetime.datetime datetime.date datetime.time datetime.timedelta datetime.timezone
decimal.Decimal fractions.Fraction uuid.UUID pathlib.PosixPath pathlib.WindowsPath
pathlib.PurePosixPath pathlib.PureWindowsPath re._compile enum.Enum
"""
)

_NUMPY = _words(
    """
numpy.core.multiarray._reconstruct numpy._core.multiarray._reconstruct
numpy.core.multiarray.scalar numpy._core.multiarray.scalar numpy.ndarray numpy.dtype
numpy.core.numeric._frombuffer numpy._core.numeric._frombuffer numpy.ma.core._mareconstruct
numpy.random._pickle.__randomstate_ctor numpy.random._pickle.__bit_generator_ctor
numpy.random._pickle.__generator_ctor numpy.random.mtrand.RandomState
numpy.random._mt19937.MT19937 numpy.random._pcg64.PCG64 numpy.random._generator.Generator
numpy.random.mtrand._rand numpy.random.bit_generator.SeedSequence
numpy.core._ufunc_reconstruct numpy._core._ufunc_reconstruct numpy.dtypes.Float64DType
numpy.dtypes.Float32DType numpy.dtypes.Int64DType numpy.dtypes.Int32DType
numpy.dtypes.BoolDType numpy.dtypes.ObjectDType numpy.dtypes.StrDType
numpy.dtypes.UInt8DType numpy.float64 numpy.float32 numpy.float16 numpy.int64 numpy.int32
numpy.int16 numpy.int8 numpy.uint64 numpy.uint32 numpy.uint16 numpy.uint8 numpy.bool_
numpy.complex128 numpy.complex64 numpy.str_ numpy.bytes_ numpy.object_
"""
)

_JOBLIB = _words(
    """
joblib.numpy_pickle.NumpyArrayWrapper joblib.numpy_pickle_compat.NDArrayWrapper
joblib.numpy_pickle_compat.ZNDArrayWrapper
sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper
"""
)

_UFUNC_NAMES = _words(
    """
absolute add arccos arccosh arcsin arcsinh arctan arctanh cbrt ceil cos cosh deg2rad degrees
divide exp exp2 expm1 fabs floor log log10 log1p log2 logaddexp maximum minimum multiply
negative power rad2deg radians reciprocal rint sign sin sinh sqrt square subtract tan tanh
trunc isnan isfinite isinf clip
"""
)

ALLOWED: frozenset[str] = frozenset(
    _TORCH + _STDLIB + _NUMPY + _JOBLIB + [f"numpy.{name}" for name in _UFUNC_NAMES]
)

_CLASS = re.compile(r"^_?[A-Z][A-Za-z0-9]*$")
_SKLEARN_DENIED = ("sklearn.datasets", "sklearn.utils._testing", "sklearn.externals")


_CYTHON_FRAMEWORKS = ("sklearn.", "numpy.", "scipy.")

# Modules of major libraries whose classes are plain configuration or state
# holders (dataclasses, enums, containers): what Trainer and Lightning
# checkpoints pickle (training_args.bin, hyper_parameters) and what Hydra
# configs instantiate. Classes only (CamelCase); functions stay unknown.
_LIBRARY_CLASS_MODULES = (
    "transformers.training_args", "transformers.trainer_utils", "transformers.trainer_pt_utils",
    "transformers.configuration_utils", "transformers.generation.configuration_utils",
    "transformers.utils.quantization_config", "transformers.tokenization_utils_base",
    "transformers.debug_utils", "transformers.integrations.deepspeed",
    "accelerate.utils.dataclasses", "accelerate.state", "peft.utils.peft_types",
    "tokenizers", "omegaconf", "lightning_fabric.utilities.data",
    "pytorch_lightning.utilities.parsing", "lightning.pytorch.utilities.parsing",
    "lightning.fabric.utilities.data", "torch.optim", "torch.nn", "torch.utils.data",
    "transformers", "pytorch_lightning", "lightning.pytorch", "diffusers", "timm",
)  # fmt: skip
# Library namespaces whose model and layer classes a Hydra `_target_` may name.
_LIBRARY_CLASS_PREFIXES = (
    "transformers.models.", "peft.tuners.", "trl.trainer.", "nemo.collections.",
    "omegaconf.", "tokenizers.", "torch.optim.", "torch.nn.", "torch.utils.data.",
    "torchvision.transforms.", "torchvision.models.", "torchaudio.transforms.", "torchmetrics.",
    "pytorch_lightning.callbacks.", "pytorch_lightning.loggers.", "lightning.pytorch.callbacks.",
    "lightning.pytorch.loggers.", "timm.models.", "diffusers.models.", "diffusers.schedulers.",
)  # fmt: skip


def is_allowed_class(dotted: str) -> bool:
    """Framework classes matched by structure (module prefix and a CamelCase name).

    Cython's generated ``__pyx_unpickle_<Class>`` helpers of those frameworks are
    allowed too: they only call ``<Class>.__new__`` and restore its state.
    """
    module, _, name = dotted.rpartition(".")
    if module.startswith("scipy.sparse.") and re.match(r"^[a-z]{3}_(matrix|array)$", name):
        return True  # csr_matrix, coo_array ...
    if name.startswith("__pyx_unpickle_") and module.startswith(_CYTHON_FRAMEWORKS):
        return _CLASS.match(name.removeprefix("__pyx_unpickle_")) is not None
    if not _CLASS.match(name):
        return False
    if module.startswith(("sklearn.", "scipy.sparse.")) and not module.startswith(_SKLEARN_DENIED):
        return True
    if module in _LIBRARY_CLASS_MODULES or f"{module}.".startswith(_LIBRARY_CLASS_PREFIXES):
        return True
    return dotted.startswith(_TORCH_MODULE_PREFIXES) or module.startswith("__torch__")
