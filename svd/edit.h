// From the experts' low-rank factors to the CheckpointEdit the writer applies (io/checkpoint_edit.h).
//
// --format dense: every routed expert's gate/up/down weight is replaced, under its own name, by
// its reconstruction W' = (W_b +) A B in the original dtype and shape: any loader runs it, but it
// is as large as the input. The factors are rounded to that dtype first, so the dense weights are
// the rounding of exactly what the factored checkpoint computes.
//
// --format factored: the experts' weights are dropped and replaced by, per projection,
//   <expert prefix><proj>.lowrank_a  [m, r]   and   <expert prefix><proj>.lowrank_b  [r, n]
// (e.g. model.layers.1.mlp.experts.3.down_proj.lowrank_a; Mixtral: ...experts.3.w2.lowrank_a), in
// the original dtype, with W ≈ A B; d2-moe adds the shared base once per layer and projection,
//   <experts prefix>base.<proj>.weight  [m, n]  (e.g. model.layers.1.mlp.experts.base.gate_proj.weight),
// and W ≈ W_b + A B. config.json gains "moekit_lowrank" (model::kLowRankKey):
//   {"format": "factored", "method": ..., "ratio": ..., "base": true|false, "rank": {"gate": r, ...}},
// which moekit's engine reads to run each expert as two thin GEMMs per projection (x Bᵀ, then Aᵀ).
// transformers cannot load a factored checkpoint. Every other tensor and config field is untouched.
#pragma once

#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/checkpoint_edit.h"
#include "model/arch.h"
#include "svd/compress.h"

namespace moekit::svd {

enum class Format { dense, factored };
Format parse_format(const std::string& name);  // "dense" | "factored"; Error("svd") otherwise
std::string format_name(Format format);

// The d2-moe base of projection p (0 gate, 1 up, 2 down) in layer il (model::lowrank_base_tensors).
std::string base_tensor(const model::ArchSpec& arch, int64_t il, int p);

// Refuses (Error("svd")) expert weights whose dtype cannot be written back (anything but
// F32/BF16/F16, e.g. FP8 with block scales).
void check_expert_dtypes(const io::Checkpoint& checkpoint, const model::ArchSpec& arch, const model::ModelConfig& config);

// `layers` and `checkpoint` must outlive the write (fill callbacks read them).
io::CheckpointEdit make_edit(const io::Checkpoint& checkpoint, const model::ArchSpec& arch,
                             const std::vector<LayerFactors>& layers, Format format, Method method, double ratio);

}  // namespace moekit::svd
