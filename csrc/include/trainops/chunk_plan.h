// Torch-free chunk plan for multi-tensor kernels.
//
// A list of tensors of any sizes is cut into chunks of at most kChunkSize
// elements; chunk boundaries depend only on the tensor sizes, never on the
// thread count or launch grid, which is what makes every reduction over the
// chunks reproducible. The plan is O(tensors + chunks) and never O(model size):
// GPT-2's 124M parameters in 148 tensors make 1,995 chunks.
//
// Chunks are also grouped into tasks of roughly kChunkSize elements so that a
// list of 10,000 tensors of 100 elements is processed in ~16 parallel tasks
// instead of 10,000 tiny ones; the grouping changes scheduling only, not the
// result.
#pragma once

#include <cstdint>
#include <vector>

namespace trainops {

// 2^16 elements: 256 KiB of fp32 fits in L2 on every CPU we target, so the
// rare rescaled second pass over a chunk reads from cache.
constexpr int64_t kChunkSize = int64_t{1} << 16;

struct Chunk {
  int64_t tensor;  // index into the tensor list
  int64_t begin;   // first element (64-bit: tensors may exceed 2^31 elements)
  int64_t length;  // elements, in (0, kChunkSize]
};

struct ChunkPlan {
  std::vector<Chunk> chunks;
  // chunk_begin[t] .. chunk_begin[t + 1] are tensor t's chunks; size tensors+1.
  std::vector<int64_t> chunk_begin;
  // task_begin[k] .. task_begin[k + 1] are the chunks of task k; size tasks+1.
  std::vector<int64_t> task_begin;

  int64_t num_tasks() const { return static_cast<int64_t>(task_begin.size()) - 1; }
};

inline int64_t num_chunks_of(int64_t numel, int64_t chunk_size = kChunkSize) {
  return (numel + chunk_size - 1) / chunk_size;
}

// Build the plan for tensors with the given element counts.
inline ChunkPlan make_chunk_plan(const std::vector<int64_t>& numels,
                                 int64_t chunk_size = kChunkSize) {
  ChunkPlan plan;
  int64_t total_chunks = 0;
  for (int64_t n : numels) total_chunks += num_chunks_of(n, chunk_size);
  plan.chunks.reserve(static_cast<size_t>(total_chunks));
  plan.chunk_begin.reserve(numels.size() + 1);
  for (size_t t = 0; t < numels.size(); ++t) {
    plan.chunk_begin.push_back(static_cast<int64_t>(plan.chunks.size()));
    for (int64_t b = 0; b < numels[t]; b += chunk_size) {
      const int64_t len = numels[t] - b < chunk_size ? numels[t] - b : chunk_size;
      plan.chunks.push_back(Chunk{static_cast<int64_t>(t), b, len});
    }
  }
  plan.chunk_begin.push_back(static_cast<int64_t>(plan.chunks.size()));

  plan.task_begin.push_back(0);
  int64_t filled = 0;
  for (size_t c = 0; c < plan.chunks.size(); ++c) {
    filled += plan.chunks[c].length;
    if (filled >= chunk_size) {
      plan.task_begin.push_back(static_cast<int64_t>(c) + 1);
      filled = 0;
    }
  }
  if (plan.task_begin.back() != static_cast<int64_t>(plan.chunks.size())) {
    plan.task_begin.push_back(static_cast<int64_t>(plan.chunks.size()));
  }
  return plan;
}

}  // namespace trainops
