// The one schema file: every trainops op is declared here, once. Backends only
// add TRAINOPS_LIBRARY_IMPL(CPU|CUDA, m) in csrc/cpu and csrc/cuda
// (TORCH_LIBRARY / STABLE_TORCH_LIBRARY, see csrc/torch_api.h).
//
// The compiled module is a Python limited-API (abi3) extension with an empty
// module init: importing it runs the static registrations below, and the ops
// are reached through torch.ops.trainops.*; there are no pybind11 bindings.
#include <Python.h>
#include <dlfcn.h>

#include <string>

#include "cpu/cpu_isa.h"
#include "torch_api.h"
#include "trainops/chunk_plan.h"

#if !defined(TRAINOPS_TORCH_VERSION)
#define TRAINOPS_TORCH_VERSION "unknown"
#endif
#if !defined(TRAINOPS_CUDA_ARCHS)
#define TRAINOPS_CUDA_ARCHS ""
#endif
#if !defined(TRAINOPS_CUDA_VERSION)
#define TRAINOPS_CUDA_VERSION ""
#endif

extern "C" {
// Empty module: `import trainops._C` only loads the shared library. The one
// exported symbol (the build hides everything else: -fvisibility=hidden).
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr,
  };
  return PyModule_Create(&module_def);
}
}

namespace trainops {

#if TRAINOPS_STABLE_ABI
// Deleting the handle of a tensor that Python also holds drops a reference
// to its PyObject, and torch takes the GIL for each drop. The kernels run with
// the GIL released (torch.ops releases it), so that was one acquisition per
// tensor: 10,000 x 100 fp32 clip op alone, medians 3.2-3.4 -> 2.4 ms with one
// acquisition for the list (see benchmarks/RESULTS.md). Only on a thread
// Python knows (a Python caller that released the GIL, which torch's
// per-tensor acquisitions already require); a thread without a Python thread
// state, a short list, or a process without Python (the functions are looked
// up, not linked: a C++ host may load this library for its ops) deletes the
// handles one by one exactly as before.
namespace {
constexpr size_t kGilBatchMin = 8;

struct PythonGil {
  int (*is_initialized)() = nullptr;
  PyThreadState* (*this_thread_state)() = nullptr;
  PyGILState_STATE (*ensure)() = nullptr;
  void (*release)(PyGILState_STATE) = nullptr;
};

const PythonGil& python_gil() {
  static const PythonGil gil = [] {
    PythonGil g;
    g.is_initialized = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "Py_IsInitialized"));
    g.this_thread_state =
        reinterpret_cast<PyThreadState* (*)()>(dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState"));
    g.ensure = reinterpret_cast<PyGILState_STATE (*)()>(dlsym(RTLD_DEFAULT, "PyGILState_Ensure"));
    g.release = reinterpret_cast<void (*)(PyGILState_STATE)>(dlsym(RTLD_DEFAULT, "PyGILState_Release"));
    if (!g.is_initialized || !g.this_thread_state || !g.ensure || !g.release) g = PythonGil{};
    return g;
  }();
  return gil;
}
}  // namespace

void delete_tensor_handles(const std::vector<AtenTensorHandle>& handles) {
  const PythonGil& py = python_gil();
  const bool batch = handles.size() >= kGilBatchMin && py.is_initialized != nullptr &&
                     py.is_initialized() && py.this_thread_state() != nullptr;
  PyGILState_STATE gil{};
  if (batch) gil = py.ensure();
  // Nothing here throws: the deletions are C calls that report through codes.
  for (AtenTensorHandle h : handles) aoti_torch_delete_tensor_object(h);
  if (batch) py.release(gil);
}
#endif

namespace {

// "key=value;..." facts about this binary, read by `trainops info` and by the
// import-time check that the extension matches the running torch.
std::string build_info() {
  return str("torch=", TRAINOPS_TORCH_VERSION, ";abi=", TRAINOPS_STABLE_ABI ? "stable" : "aten",
             ";cpu_isas=", cpu::compiled_cpu_isas(),
             ";cpu_isa=", cpu::cpu_isa_name(cpu::current_cpu_isa()),
             ";cuda=", TRAINOPS_CUDA_VERSION, ";cuda_archs=", TRAINOPS_CUDA_ARCHS,
             ";chunk_size=", kChunkSize);
}

}  // namespace

TRAINOPS_LIBRARY(m) {
  // Global p-norm (p > 0 or inf) of a list of fp16/bf16/fp32/fp64 tensors on
  // one device, as if they were concatenated. Returns (total, per_tensor):
  // total is a 0-dim tensor, fp64 if any input is fp64 else fp32; per_tensor
  // holds each tensor's norm from the same pass when per_tensor=True (else it
  // is empty). No host sync.
  m.def("multi_tensor_norm(Tensor[] tensors, float norm_type, bool per_tensor) -> (Tensor, Tensor)");
  // In place: tensors *= min(max_norm / (total_norm + 1e-6), 1), the
  // coefficient computed from the device tensor total_norm (no host sync on
  // CUDA). Writes nothing when the coefficient is exactly 1.
  m.def("multi_tensor_clip_scale_(Tensor(a!)[] tensors, Tensor total_norm, float max_norm) -> ()");
  // In place: tensors = clamp(tensors, -clip_value, clip_value); NaN stays NaN.
  m.def("multi_tensor_clamp_(Tensor(a!)[] tensors, float clip_value) -> ()");
  // In place: clip_grad_norm_ in one call, multi_tensor_norm then
  // multi_tensor_clip_scale_; returns the total norm (before clipping).
  // One Python->C++ call instead of two, which is half the per-tensor
  // argument conversion that dominates lists of 10,000 small grads; each
  // backend also shares its list preparation between the two passes.
  m.def("multi_tensor_clip_grad_norm_(Tensor(a!)[] tensors, float max_norm, float norm_type) -> Tensor");
  // In place: random / constant initialisation of a list of fp16/bf16/fp32/fp64
  // tensors in one fused pass. Per tensor i: kinds[i] (0 uniform(low, high),
  // 1 normal(mean, std), 2 truncated normal(mean, std, a, b), 3 constant(value))
  // with its arguments in params[4i .. 4i+3] (unused ones 0), and a 64-bit key.
  // Element values are a pure function of (seed, keys[i], the element's
  // row-major index in the global tensor, the distribution): identical for any
  // thread count, on CPU and CUDA, and for any sharding. global_shapes and
  // global_offsets are empty (every tensor is whole) or hold, concatenated, one
  // entry per dimension of every tensor: the global tensor's sizes and the
  // shard's offset in it.
  m.def(
      "init_tensors_(Tensor(a!)[] tensors, int[] kinds, float[] params, int seed, int[] keys, "
      "int[] global_shapes, int[] global_offsets) -> ()");
  // The same with the seed as a one-element int64 tensor (on the CPU, or on
  // the tensors' device, where the kernel reads it without a host sync): a
  // seed drawn from a CUDA generator or inside a compiled graph.
  m.def(
      "init_tensors_.seeded(Tensor(a!)[] tensors, int[] kinds, float[] params, Tensor seed, "
      "int[] keys, int[] global_shapes, int[] global_offsets) -> ()");
  // Facts about this build (see build_info above).
  m.def("build_info() -> str");
}

// No tensor arguments: the catch-all key serves every call.
TRAINOPS_LIBRARY_IMPL(CompositeExplicitAutograd, m) {
  m.impl("build_info", TRAINOPS_KERNEL(build_info));
}

}  // namespace trainops
