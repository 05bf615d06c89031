// `moekit merge`: merge each MoE layer's routed experts into N (METHODS.md §6) and write a
// Hugging Face checkpoint transformers loads, with OUT_DIR/moekit.json recording the groups,
// member weights, routing agreement and parameters (and expert_map: the originals of every new
// expert, which `moekit eval --ref ORIGINAL` uses) and a README.md note.
//
// Calibration: the --calib files are tokenized and cut into windows exactly as `moekit eval`
// does (model/corpus.h). One teacher-forced pass over all windows records the router statistics
// and captures router inputs (merge/calib.h; every stride-th token when all of them would exceed
// 2 GiB). HC-SMoE and Sub-MoE then run every expert on a sample (evenly spaced windows up to
// --sample-tokens, fewer if n_moe_layer x E x tokens x d_model x 8 bytes would exceed 4 GiB),
// the engine's costed kSiteAllExperts request, as prune's NAEE does.
//
// DeepSeek group-limited routing (n_group > 1): N must be a multiple of n_group, and each
// routing group's experts are merged among themselves into N / n_group (so renumbered experts
// stay in their group); topk_group x N / n_group must still reach top-k.
//
// Bad input is refused before any heavy work and before anything is written.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/device_ops.h"
#include "io/checkpoint_edit.h"
#include "merge/calib.h"
#include "model/calib_cache.h"
#include "merge/edit.h"
#include "merge/grouping.h"
#include "merge/router.h"
#include "model/corpus.h"

namespace moekit::merge {

struct MergeOptions {
    std::filesystem::path model_dir;
    std::filesystem::path out_dir;        // required unless dry_run
    std::string method = "m-smoe";
    std::string experts;                  // count ("8") or ratio of the experts ("0.5")
    std::string router = "refit";         // refit | mean
    bool align = true;                    // permute neurons to the group's reference before merging
    int64_t svd_rank = 0;                 // sub-moe joint SVD rank cut (0: full rank)
    bool dry_run = false;
    bool force = false;
    uint64_t seed = 0;                    // Sub-MoE k-means seeding
    model::CorpusOptions calib;
    int64_t batch_tokens = 16384;
    int64_t sample_tokens = 2048;         // all-experts sample (HC-SMoE, Sub-MoE)
    int threads = 0;
    // Where the calibration forward runs (model::EngineOptions::device); nullptr: the CPU.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    // Saved calibration statistics (model/calib_cache.h) for the router pass and the all-experts
    // sample; nullptr: always compute.
    model::CalibrationCache* calib_cache = nullptr;
    uint64_t max_shard_bytes = 5'000'000'000;
    std::string tool_version;
    std::function<void(double, const std::string&)> progress;
};

struct LayerReport {
    int64_t layer = 0;
    std::vector<int64_t> load;            // per original expert
    Agreement agreement;
    Agreement agreement_mean;             // what the mean router would give (for comparison)
    std::vector<double> align_gain;       // per group: relative weight distance reduction by alignment
};

struct MergeResult {
    MergeOptions options;
    Method method = Method::m_smoe;
    int64_t n_new = 0;
    std::string model_type, display_name;
    int64_t n_layer = 0, n_expert = 0, n_expert_used = 0, n_group = 1;
    int64_t seq_len = 0, calib_tokens = 0, calib_windows = 0, captured_tokens = 0, sample_tokens = 0, capture_stride = 1;
    std::string tokenization;
    nlohmann::ordered_json calib_files = nlohmann::ordered_json::array();
    std::vector<LayerMerge> layers;
    std::vector<LayerReport> reports;
    EditSummary edit;
    std::optional<io::WriteResult> written;
    uint64_t input_tensor_bytes = 0, output_tensor_bytes = 0;
    model::CalibrationUse calibration;          // the router pass
    model::CalibrationUse sample_calibration;   // the all-experts sample (HC-SMoE, Sub-MoE)
    double calib_s = 0, sample_s = 0, plan_s = 0, write_s = 0, wall_s = 0;
    std::vector<double> layer_merge_s;    // per layer: grouping + alignment + router (not the weight write)
    int threads = 0;
    std::string device = "cpu";          // where calibration ran (DeviceOps::describe)
    nlohmann::ordered_json moekit_json;
};

MergeResult merge(const MergeOptions& options);

// Resolves --experts against E (count or ratio, round half away from zero); Error("merge").
int64_t parse_experts(const std::string& text, int64_t n_expert);
// Refuses counts the routing cannot use (< top-k, >= E, group-limited constraints).
void check_experts(const model::ModelConfig& config, int64_t n_new, const std::string& text);

nlohmann::ordered_json make_moekit_json(const MergeResult& result);
std::string readme_note(const MergeResult& result);
nlohmann::ordered_json to_json(const MergeResult& result);
std::string to_text(const MergeResult& result);

// Every calibration-token-th router input kept: the stride that keeps the captures under 2 GiB.
int64_t capture_stride(const model::ModelConfig& config, int64_t calib_tokens);

// merge's router pass as a sink for a shared pass (model/calib_cache.h): the same observer and key,
// so merge finds the entry and skips that pass (used by `moekit run`; the all-experts sample is not
// shared: it runs on sampled windows).
std::unique_ptr<model::CalibrationSink> calibration_sink(const model::ModelConfig& config, const model::Corpus& corpus,
                                                         const MergeOptions& options);

}  // namespace moekit::merge
