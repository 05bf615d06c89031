// From merged layers to the CheckpointEdit the writer applies (io/checkpoint_edit.h):
//  * new expert j of a layer is group j. A group of one expert is that expert renamed (bytes
//    copied as-is); a larger group is written as new gate/up/down tensors (computed when the
//    writer streams them: members read as fp32, aligned, merged, encoded back to the input
//    tensor's dtype, F32/BF16/F16); every other original expert tensor is dropped;
//  * the router weight becomes [N, d] (and router bias / e_score_correction_bias [N]) in the
//    input dtype;
//  * config.json: the expert-count keys set to N (as prune does); DeepSeek-V3 MTP layers dropped
//    with num_nextn_predict_layers = 0 (their experts cannot be calibrated).
// Shared experts, attention, norms and everything else are untouched (copied byte-for-byte).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/checkpoint_edit.h"
#include "merge/combine.h"
#include "merge/grouping.h"
#include "model/arch.h"
#include "model/engine.h"

namespace moekit::merge {

struct LayerMerge {
    int64_t layer = 0;
    int64_t n_expert = 0;                             // before merging
    Groups groups;                                    // new expert j = groups[j]
    std::vector<std::vector<double>> weights;         // normalized member weights per group
    std::vector<int64_t> reference;                   // per group: member the others are aligned to
    std::vector<std::vector<std::vector<int64_t>>> perms;  // [group][member]: neuron permutation (empty: none)
    bool joint_svd = false;                           // Sub-MoE joint SVD instead of averaging
    int64_t svd_rank = 0;                             // 0: full rank
    model::Matrix router;                             // [N, d]
    std::vector<float> router_bias;                   // [N] or empty
    std::vector<float> correction_bias;               // [N] or empty
};

struct EditSummary {
    int64_t dropped = 0, renamed = 0, merged = 0, router = 0;
    std::vector<std::string> notes;
};

// Refuses (Error "merge") expert tensors it cannot merge (FP8, extra per-expert tensors) and an
// FP8 router. `checkpoint` and `layers` must outlive the write.
io::CheckpointEdit make_edit(const io::Checkpoint& checkpoint, const model::ArchSpec& arch, const model::ModelConfig& config,
                             const std::vector<LayerMerge>& layers, EditSummary* summary = nullptr);

// Reads expert ie of layer il as fp32.
ExpertWeights read_expert(const io::Checkpoint& checkpoint, const model::ArchSpec& arch, int64_t il, int64_t ie);

// The merged projections of group g of `layer` (what the edit writes); which: 0 gate, 1 up, 2 down.
model::Matrix merged_projection(const io::Checkpoint& checkpoint, const model::ArchSpec& arch, const LayerMerge& layer, size_t g,
                                int which);
ExpertWeights merged_expert(const io::Checkpoint& checkpoint, const model::ArchSpec& arch, const LayerMerge& layer, size_t g);

}  // namespace moekit::merge
