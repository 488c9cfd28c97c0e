"""The deny-list: modules and callables whose import from a model file is an attack.

An entry matches any contiguous dotted sub-path of a callable's name, so a
module entry (``os``) also denies re-exports (``torch.serialization.os``).
Sources: the callables in public bypass reports against picklescan, modelscan
and fickling (2023-2026), the Python docs' lists of process, file, network and
code-loading APIs, and the known ML-framework gadgets.
"""

from __future__ import annotations


def _words(text: str) -> list[str]:
    return text.split()


_MODULES = _words(
    """
os posix nt posixpath ntpath subprocess sys pty pipes commands popen2 platform shutil socket
socketserver ssl select selectors asyncio signal threading _thread multiprocessing
concurrent ctypes cffi importlib imp pkgutil zipimport runpy pydoc code codeop marshal
compileall py_compile pickle _pickle cPickle pickletools dill cloudpickle shelve dbm
webbrowser urllib urllib2 urllib3 http httplib ftplib smtplib poplib imaplib telnetlib
nntplib xmlrpc requests httpx aiohttp mailcap pdb bdb timeit trace profile cProfile doctest
idlelib lib2to3 distutils setuptools pip ensurepip venv site sysconfig tempfile glob
fileinput linecache tarfile zipfile gzip bz2 lzma io.open io.FileIO _io.open _io.FileIO
codecs.open operator _operator functools _functools types.CodeType types.FunctionType
types.MethodType types.ModuleType types.LambdaType types.BuiltinFunctionType types.CellType
antigravity this builtins.eval builtins.exec builtins.compile builtins.open builtins.getattr
builtins.setattr builtins.delattr builtins.__import__ builtins.globals builtins.locals
builtins.vars builtins.input builtins.breakpoint builtins.help builtins.classmethod
builtins.staticmethod builtins.property builtins.super builtins.type builtins.exit
builtins.quit builtins.copyright builtins.license builtins.credits builtins.dir
builtins.hasattr builtins.print builtins.apply builtins.execfile builtins.file
builtins.reload copyreg._reconstructor_unsafe numpy.load numpy.save numpy.savez
numpy.loadtxt numpy.genfromtxt numpy.fromfile numpy.memmap numpy.lib.npyio numpy.lib.format
numpy.testing numpy.f2py numpy.distutils numpy.ctypeslib numpy.lib.utils numpy.__config__
numpy._pytesttester torch.load torch.save torch.hub torch.utils.collect_env
torch.utils.cpp_extension torch.utils.data.datapipes torch.utils.tensorboard
torch.utils.bottleneck torch._dynamo torch._inductor torch.jit.load torch.jit._serialization
torch.jit.frontend torch.serialization.load torch.serialization._load
torch.serialization._legacy_load torch.serialization.save torch.package torch.distributed
torch.multiprocessing torch.ops torch._ops torch.library torch.backends torch.compiler
torch.fx torch.testing torch._C._jit torch.cuda.memory torch.storage._load_from_bytes
pandas.read_csv pandas.read_pickle pandas.read_json pandas.read_html pandas.read_xml
pandas.read_sql pandas.read_excel pandas.read_parquet pandas.read_feather pandas.read_hdf
pandas.read_table pandas.read_fwf pandas.read_clipboard pandas.read_stata pandas.read_sas
pandas.read_spss pandas.read_orc pandas.io pandas.eval pandas.core.computation mlflow
keras.utils.get_file tensorflow.io tensorflow.keras.utils.get_file tf.io joblib.load
joblib.dump joblib.Parallel joblib.numpy_pickle.load joblib._parallel_backends
sklearn.datasets sklearn.utils._testing sklearn.externals.joblib.load scipy.io scipy.misc
yaml.load yaml.unsafe_load yaml.full_load jinja2 mako IPython ipykernel jupyter_client
nbconvert
"""
)

DENIED: frozenset[str] = frozenset(_MODULES)

# Callables that take a serialised payload: their bytes arguments are analysed as nested pickles.
LOADS_LIKE: frozenset[str] = frozenset(
    {
        "pickle.loads",
        "pickle._loads",
        "_pickle.loads",
        "cPickle.loads",
        "dill.loads",
        "cloudpickle.loads",
        "numpy.loads",
        "joblib.load",
        "torch.load",
        "torch.storage._load_from_bytes",
        "marshal.loads",
    }
)
