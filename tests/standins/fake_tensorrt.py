"""A stand-in `tensorrt` module per release, built from the project's copy of that release's name list.

Every attribute the code under test touches must be in tests/data/tensorrt_api/<release>.txt: a name missing from
the release raises AttributeError, exactly as the real module would (so version guards are exercised). Behaviour is
implemented only for what the project uses. The "engine" is the ONNX graph itself: building serializes the graph and
the optimization profiles; executing runs the graph with ONNX Runtime on the bytes behind the device pointers the
runner set, read and written through the device-memory layer given to `make_tensorrt`. This is not TensorRT: it checks
names, call order and buffer handling, never TensorRT's numerics or speed.
"""
from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Set, Tuple

import numpy as np

API_DIR = Path(__file__).resolve().parent.parent / "data" / "tensorrt_api"
RELEASES = ("8.5", "8.6", "10.3", "11.1")
_DTYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
           "BOOL": np.bool_, "UINT8": np.uint8}
_ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8"}
MAGIC = b"STANDIN-TRT\n"


class HostMemory(bytes):
    """What build_serialized_network returns: a buffer with `nbytes` (IHostMemory)."""

    @property
    def nbytes(self) -> int:
        return len(self)


def api_names(release: str) -> Dict[str, str]:
    names = {}
    for line in (API_DIR / ("%s.txt" % release)).read_text().splitlines():
        if line and not line.startswith("#"):
            fields = line.split("\t")
            names[fields[0]] = fields[1]
    return names


class _Checked:
    """Attribute access checked against the release's names for `owner`. A Python subclass (a logger, a progress
    monitor) may add its own attributes, as with the real bindings."""

    _owner = ""
    _names: Set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and not _own_attribute(self, name):
            owner = type(self)._owner
            if "%s.%s" % (owner, name) not in type(self)._names:
                raise AttributeError("tensorrt %s has no %s.%s" % (type(self)._release, owner, name))
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and "_owner" in vars(type(self)) and \
                "%s.%s" % (type(self)._owner, name) not in type(self)._names:
            raise AttributeError("tensorrt %s has no %s.%s" % (type(self)._release, type(self)._owner, name))
        object.__setattr__(self, name, value)


def _own_attribute(obj: Any, name: str) -> bool:
    """Defined by a Python subclass of a stand-in class, or set on such an instance."""
    for cls in type(obj).__mro__:
        if "_owner" in vars(cls):
            break
        if name in vars(cls):
            return True
    return "_owner" not in vars(type(obj)) and name in object.__getattribute__(obj, "__dict__")


class _EnumValue:
    def __init__(self, owner: str, name: str, value: int) -> None:
        self.owner, self.name, self.value = owner, name, value

    def __int__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _EnumValue) and (self.owner, self.name) == (other.owner, other.name)

    def __hash__(self) -> int:
        return hash((self.owner, self.name))

    def __repr__(self) -> str:
        return "%s.%s" % (self.owner, self.name)


def _enum(release: str, names: Dict[str, str], owner: str) -> Any:
    values = [n.split(".")[-1] for n in names if n.startswith(owner + ".") and names[n] == "enum-value"
              and n.count(".") == owner.count(".") + 1]
    members = {v: _EnumValue(owner, v, i) for i, v in enumerate(values)}

    class Enum:
        def __getattr__(self, name: str) -> Any:
            if name in members:
                return members[name]
            raise AttributeError("tensorrt %s has no %s.%s" % (release, owner, name))

    return Enum()


def make_tensorrt(release: str, memory: Any) -> types.ModuleType:
    """The stand-in module of `release`; `memory` reads/writes device bytes: read(ptr, nbytes) -> bytes,
    write(ptr, data), sync(stream_handle)."""
    names = api_names(release)
    name_set = set(names)
    module = types.ModuleType("tensorrt")
    module.__version__ = {"8.5": "8.5.2.2", "8.6": "8.6.2.3", "10.3": "10.3.0.30", "11.1": "11.1.0.9"}[release]

    def checked(owner: str, base: type = object) -> type:
        return type(owner, (_Checked, base), {"_owner": owner, "_names": name_set, "_release": release})

    for enum_name in ("NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "DeviceType",
                      "TensorIOMode", "DataType"):
        setattr(module, enum_name, _enum(release, names, enum_name))

    severity = _enum(release, names, "ILogger.Severity")
    ILogger = checked("ILogger")
    ILogger.Severity = severity
    Logger = type("Logger", (ILogger,), {"_owner": "Logger"})

    def logger_init(self, min_severity=None):
        object.__setattr__(self, "_severity", min_severity)

    def logger_log(self, level, msg):
        if int(level) <= int(self._severity):
            print("[TRT] %s" % msg)

    Logger.__init__ = logger_init
    Logger.log = logger_log
    for level in ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"):
        setattr(ILogger, level, getattr(severity, level))  # nested enum values reachable on the owner
    module.ILogger, module.Logger = ILogger, Logger
    registered = []  # as TensorRT: the first logger a process hands over is the one it keeps

    def process_logger(logger):
        if not registered:
            registered.append(logger)
        elif logger is not registered[0]:
            registered[0].log(severity.WARNING, "The logger passed into createInferBuilder differs from one already "
                              "registered for an existing builder, runtime, or refitter. So the current new logger "
                              "is ignored, and TensorRT will use the existing one")
        return registered[0]

    if "IProgressMonitor" in name_set:
        module.IProgressMonitor = checked("IProgressMonitor")

    OptimizationProfile = checked("IOptimizationProfile")

    def set_shape(self, name, min_shape, opt_shape, max_shape):
        self._shapes[name] = [tuple(min_shape), tuple(opt_shape), tuple(max_shape)]

    OptimizationProfile.set_shape = set_shape

    TimingCache = checked("ITimingCache")
    TimingCache.serialize = lambda self: self._data

    Config = checked("IBuilderConfig")

    def config_init(self):
        for key, value in (("_flags", set()), ("_profiles", []), ("_pools", {}), ("_cache", None)):
            object.__setattr__(self, key, value)

    Config.__init__ = config_init
    Config.set_flag = lambda self, flag: self._flags.add(flag)
    def set_memory_pool_limit(self, pool, size):
        if not isinstance(size, int) or size < 0:  # the bindings refuse anything but a non-negative int
            raise TypeError("set_memory_pool_limit(): incompatible function arguments")
        self._pools[pool] = size

    Config.set_memory_pool_limit = set_memory_pool_limit
    Config.add_optimization_profile = lambda self, profile: self._profiles.append(profile) or len(self._profiles) - 1

    def create_timing_cache(self, data):
        cache = TimingCache.__new__(TimingCache)
        object.__setattr__(cache, "_data", bytes(data) or b"standin-timing-cache")
        return cache

    Config.create_timing_cache = create_timing_cache
    Config.set_timing_cache = lambda self, cache, ignore_mismatch: object.__setattr__(self, "_cache", cache) or True
    Config.get_timing_cache = lambda self: self._cache
    module._Config = Config

    Network = checked("INetworkDefinition")
    Parser = checked("OnnxParser")

    ParserError = checked("ParserError")

    def parser_error(description, node=-1):
        error = ParserError.__new__(ParserError)
        object.__setattr__(error, "_fields", {"desc": description, "node": node, "node_name": "",
                                              "node_operator": "", "code": 1})
        for field in error._fields:  # methods, as in the real bindings (only those the release has)
            object.__setattr__(error, field, (lambda value: lambda: value)(error._fields[field]))
        return error

    def parser_init(self, network, logger):
        object.__setattr__(self, "_network", network)
        object.__setattr__(self, "_errors", [])
        object.__setattr__(self, "_logger", process_logger(logger))

    def parse(self, data):
        import onnx

        try:
            model = onnx.load_from_string(bytes(data))
        except Exception as exc:  # noqa: BLE001 - the real parser reports any failure as an error
            self._errors.append(parser_error(str(exc)))
            self._logger.log(severity.ERROR, "ModelImporter: %s" % exc)
            return False
        object.__setattr__(self._network, "_onnx", bytes(data))
        object.__setattr__(self._network, "_inputs", {i.name: _ONNX_TO_TRT[i.type.tensor_type.elem_type]
                                                      for i in model.graph.input})
        return True

    Parser.__init__ = parser_init
    Parser.parse = parse
    Parser.parse_from_file = lambda self, path: self.parse(Path(path).read_bytes())
    Parser.num_errors = property(lambda self: len(self._errors))
    Parser.get_error = lambda self, index: self._errors[index]
    module.OnnxParser = Parser

    Builder = checked("Builder")

    def builder_init(self, logger):
        object.__setattr__(self, "_logger", process_logger(logger))

    def create_network(self, flags=0):
        network = Network.__new__(Network)
        object.__setattr__(network, "_flags", flags)
        return network

    def create_optimization_profile(self):
        profile = OptimizationProfile.__new__(OptimizationProfile)
        object.__setattr__(profile, "_shapes", {})
        return profile

    def build_serialized_network(self, network, config):
        monitor = getattr(config, "_monitor", None)
        if monitor is not None:
            monitor.phase_start("Building engine", None, 1)
            monitor.step_complete("Building engine", 0)
            monitor.phase_finish("Building engine")
        missing = sorted(set(network._inputs) - set(config._profiles[0]._shapes if config._profiles else ()))
        if missing:  # dynamic inputs without a complete profile: TensorRT logs why and returns None
            self._logger.log(severity.ERROR, "IBuilder::buildSerializedNetwork: Error Code 4: API Usage Error "
                             "(Dynamic input tensor %s is missing dimensions in profile 0.)" % missing[0])
            return None
        header = {"inputs": network._inputs, "profiles": [p._shapes for p in config._profiles],
                  "flags": sorted(repr(f) for f in config._flags), "release": release}
        return HostMemory(MAGIC + json.dumps(header).encode() + b"\n" + network._onnx)

    Builder.__init__ = builder_init
    Builder.create_network = create_network
    Builder.create_builder_config = lambda self: Config()
    Builder.create_optimization_profile = create_optimization_profile
    Builder.build_serialized_network = build_serialized_network
    Builder.num_DLA_cores = property(lambda self: 0)
    module.Builder = Builder
    if "IBuilderConfig.progress_monitor" in name_set:
        Config.progress_monitor = property(lambda self: getattr(self, "_monitor", None),
                                           lambda self, value: object.__setattr__(self, "_monitor", value))

    Engine = _engine_class(checked, module, memory)
    Runtime = checked("Runtime")
    Runtime.__init__ = lambda self, logger: process_logger(logger) and None
    Runtime.deserialize_cuda_engine = lambda self, data: Engine.load(bytes(data))
    module.Runtime = Runtime
    return module


def _engine_class(checked: Callable[..., type], module: types.ModuleType, memory: Any) -> type:
    Engine = checked("ICudaEngine")
    Context = checked("IExecutionContext")

    def load(data: bytes):
        if not data.startswith(MAGIC):
            return None
        header, onnx_bytes = data[len(MAGIC):].split(b"\n", 1)
        engine = Engine.__new__(Engine)
        object.__setattr__(engine, "_header", json.loads(header))
        object.__setattr__(engine, "_onnx", onnx_bytes)
        from edge.engines.onnxrt import open_session

        session = open_session(onnx_bytes)
        object.__setattr__(engine, "_session", session)
        io = [(i.name, module.TensorIOMode.INPUT) for i in session.get_inputs()]
        io += [(o.name, module.TensorIOMode.OUTPUT) for o in session.get_outputs()]
        object.__setattr__(engine, "_io", io)
        return engine

    Engine.load = staticmethod(load)
    Engine.num_io_tensors = property(lambda self: len(self._io))
    Engine.get_tensor_name = lambda self, index: self._io[index][0]
    Engine.get_tensor_mode = lambda self, name: dict(self._io)[name]

    def get_tensor_dtype(self, name):
        kinds = {"tensor(float)": "FLOAT", "tensor(float16)": "HALF", "tensor(int32)": "INT32",
                 "tensor(int64)": "INT64"}
        ios = list(self._session.get_inputs()) + list(self._session.get_outputs())
        return getattr(module.DataType, kinds[next(i.type for i in ios if i.name == name)])

    Engine.get_tensor_dtype = get_tensor_dtype
    Engine.get_tensor_profile_shape = lambda self, name, profile: self._header["profiles"][profile][name]

    def create_execution_context(self):
        context = Context.__new__(Context)
        object.__setattr__(context, "_engine", self)
        object.__setattr__(context, "_shapes", {})
        object.__setattr__(context, "_addresses", {})
        return context

    Engine.create_execution_context = create_execution_context

    def set_input_shape(self, name, shape):
        low, _, high = self._engine._header["profiles"][0][name]
        if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            return False
        self._shapes[name] = tuple(int(s) for s in shape)
        return True

    def set_tensor_address(self, name, address):
        self._addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream_handle):
        session = self._engine._session
        memory.sync(stream_handle)
        feeds = {}
        for tensor in session.get_inputs():
            dtype = _DTYPES[repr(self._engine.get_tensor_dtype(tensor.name)).split(".")[1]]
            shape = self._shapes[tensor.name]
            count = int(np.prod(shape))
            raw = memory.read(self._addresses[tensor.name], count * np.dtype(dtype).itemsize)
            feeds[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        for tensor, value in zip(session.get_outputs(), session.run(None, feeds)):
            memory.write(self._addresses[tensor.name], np.ascontiguousarray(value).tobytes())
            self._shapes[tensor.name] = value.shape
        return True

    def get_tensor_shape(self, name):
        return self._shapes[name]

    Context.set_input_shape = set_input_shape
    Context.set_tensor_address = set_tensor_address
    Context.execute_async_v3 = execute_async_v3
    Context.get_tensor_shape = get_tensor_shape
    return Engine


def profile_shapes(engine: Any) -> Optional[Dict[str, Tuple]]:
    """The optimization profile a stand-in engine was built with (for assertions)."""
    return engine._header["profiles"][0] if engine is not None else None
