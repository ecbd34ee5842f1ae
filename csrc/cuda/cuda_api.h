// The CUDA side of csrc/torch_api.h: the device guard, the current stream and
// the launch check, in both builds. The stable build reaches the stream
// through the C shim (aoti_torch_get_current_cuda_stream), so the kernels run
// on whatever stream torch has current, as with the aten build.
#pragma once

#include <cuda_runtime.h>

#include "../torch_api.h"

#if TRAINOPS_STABLE_ABI
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>
#else
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace trainops {
namespace cuda {

// Makes t's device current for the scope.
class DeviceScope {
 public:
  explicit DeviceScope(const Tensor& t)
#if TRAINOPS_STABLE_ABI
      : guard_(static_cast<torch::stable::accelerator::DeviceIndex>(device_index(t))) {
  }

 private:
  torch::stable::accelerator::DeviceGuard guard_;
#else
      : guard_(t.device()) {
  }

 private:
  c10::cuda::CUDAGuard guard_;
#endif
};

// torch's current stream on t's device.
inline cudaStream_t current_stream(const Tensor& t) {
#if TRAINOPS_STABLE_ABI
  void* stream = nullptr;
  TRAINOPS_CHECK_VALUE(aoti_torch_get_current_cuda_stream(device_index(t), &stream) == AOTI_TORCH_SUCCESS,
                       "trainops: could not get the current CUDA stream");
  return static_cast<cudaStream_t>(stream);
#else
  return at::cuda::getCurrentCUDAStream(t.device().index()).stream();
#endif
}

// After every launch: a bad launch configuration fails here, not later, as
// torch's own CUDA error (with its CUDA_LAUNCH_BLOCKING / device-side assert
// hints), not as a trainops input error.
// TRAINOPS_CUDA_CHECK: the same for a CUDA runtime call (e.g. cudaMemsetAsync).
#if TRAINOPS_STABLE_ABI
#define TRAINOPS_CUDA_LAUNCH_CHECK() STD_CUDA_KERNEL_LAUNCH_CHECK()
#define TRAINOPS_CUDA_CHECK(EXPR) STD_CUDA_CHECK(EXPR)
#else
#define TRAINOPS_CUDA_LAUNCH_CHECK() C10_CUDA_KERNEL_LAUNCH_CHECK()
#define TRAINOPS_CUDA_CHECK(EXPR) C10_CUDA_CHECK(EXPR)
#endif

}  // namespace cuda
}  // namespace trainops
