// From a pruning plan to the CheckpointEdit the writer applies (io/checkpoint_edit.h):
//  * every tensor of a removed expert is dropped (found by the expert's name prefix, so FP8
//    weight_scale_inv tensors and biases go with it);
//  * kept experts are renumbered 0..E'-1 in their original order (tensor bytes copied as-is);
//  * the router weight rows, and any router bias / e_score_correction_bias entries, are sliced
//    to the kept experts byte-for-byte (no dtype conversion);
//  * config.json: every expert-count key the config holds (num_experts, num_local_experts,
//    n_routed_experts) is set to the largest kept count; when layers keep different counts,
//    "moekit_experts_per_layer" (model::kExpertsPerLayerKey) lists every decoder layer's count
//    (0 for dense layers) — moekit's engine reads it, transformers cannot load such a model;
//  * DeepSeek-V3 multi-token-prediction layers (model.layers.{n_layer + j}, never run by
//    transformers or moekit, so their experts cannot be calibrated) are dropped and
//    num_nextn_predict_layers set to 0 when the checkpoint carries them.
// Every other tensor and config field is untouched.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/checkpoint_edit.h"
#include "model/arch.h"
#include "prune/plan.h"

namespace moekit::prune {

struct EditSummary {
    int64_t dropped = 0;                // tensors left out
    int64_t renamed = 0;                // tensors copied under a new expert index
    int64_t sliced = 0;                 // router tensors rewritten
    std::vector<std::string> notes;     // e.g. MTP layers dropped
};

// The edit; `checkpoint` must outlive the write (router slices read its mapped bytes).
// Throws Error("prune") for what it cannot slice (an FP8-quantized router).
io::CheckpointEdit make_edit(const io::Checkpoint& checkpoint, const model::ArchSpec& arch,
                             const model::ModelConfig& config, const Plan& plan, EditSummary* summary = nullptr);

// {"<layer>": [original expert of each new expert]} (model/eval.h reads it).
nlohmann::ordered_json expert_map_json(const Plan& plan);

}  // namespace moekit::prune
