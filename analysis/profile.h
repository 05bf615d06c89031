// `moekit profile`: routing statistics of a checkpoint on some data (METHODS.md §1-4).
//
// Two sources, one computation: either the model runs over the data (windows and batches as in
// `moekit eval`, model/corpus.h) while a TraceRecorder records a RoutingTrace, or saved traces
// are loaded and concatenated. Every statistic is then computed from the trace alone, so a
// profile recomputed from a saved trace is identical to the run that saved it. Under MPI the
// batches of windows are cut as for one process, each rank runs a contiguous share of them and
// rank 0 concatenates the partial traces in batch order: the result does not depend on the
// number of ranks (bit for bit; a rank with no batch idles).
//
// The report (docs/PROFILE.md): profile.json, CSV tables and a self-contained index.html, written
// into a temporary sibling of the output directory and renamed into place when complete.
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
#include "model/calib_cache.h"
#include "model/corpus.h"

#include "analysis/bootstrap.h"
#include "analysis/trace.h"
#include "io/dataset.h"

namespace moekit::analysis {

inline constexpr std::string_view kTraceKind = "profile-trace";

struct ProfileParams {
    std::vector<int64_t> segment_lengths{4, 16, 64, 256};
    std::vector<int64_t> cache_ratios{1, 2, 3, 4};
    int64_t default_segment_length = 16;
    int64_t default_cache_ratio = 2;
    BootstrapOptions bootstrap;
    int64_t vocab_min_count = 20;
    int64_t top_specialized = 10;       // entries in summary.top_specialized
    int threads = 0;                    // 0: all cores
};

struct ProfileOptions {
    // Source A: the model over data.
    std::filesystem::path model_dir;
    model::CorpusOptions corpus;        // --data and how it becomes windows
    int64_t batch_tokens = 16384;
    int64_t logit_sample_stride = 0;    // 0: auto_logit_sample_stride()
    // Source B: saved traces (when non-empty, model_dir/data are not used).
    std::vector<std::filesystem::path> traces;

    std::optional<std::filesystem::path> save_trace;
    // Saved traces by content key (model/calib_cache.h, kind kTraceKind): looked up before the
    // forward passes and saved after them; single-process runs only. nullptr: always record.
    model::CalibrationCache* calib_cache = nullptr;
    // Where the recording forward runs (model::EngineOptions::device); nullptr: the CPU.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    ProfileParams params;
    // Called on rank 0's calling thread: fraction done in [0, 1] and a short description.
    std::function<void(double, const std::string&)> progress;
};

struct ProfileResult {
    bool is_root = true;                // false on MPI ranks other than 0 (nothing below is set)
    nlohmann::ordered_json doc;         // profile.json
    RoutingTrace trace;
    model::CalibrationUse calibration;  // how the trace was obtained (model source only)
    double record_s = 0;                // forward passes (or trace loading)
    double stats_s = 0;                 // statistics
};

// Throws moekit::Error for bad input (checkpoint, data, traces, parameters).
// The default stride of sampled router logits: 8, raised so that about kMultiFitRows rows per
// layer are kept (the multi-type fit's cost grows with them), but never past seq_len / 4 (so
// every sequence keeps several positions).
inline constexpr int64_t kMultiFitRows = 8192;
int64_t auto_logit_sample_stride(int64_t n_tokens, int64_t seq_len);

ProfileResult profile(const ProfileOptions& options);

// profile's trace as a sink for a shared pass (model/calib_cache.h): the same recorder and key, so
// profile finds the trace and skips its forward passes (used by `moekit run`).
std::unique_ptr<model::CalibrationSink> calibration_sink(const model::ModelConfig& config, const model::Corpus& corpus,
                                                         const ProfileOptions& options);

// Every statistic from a trace. `source` is merged into doc["data"] and `extra_params` into
// doc["params"] (the caller's description of how the trace was made).
nlohmann::ordered_json compute_profile(const RoutingTrace& trace, const ProfileParams& params,
                                       const nlohmann::ordered_json& source = nlohmann::ordered_json::object(),
                                       const nlohmann::ordered_json& extra_params = nlohmann::ordered_json::object());

// The terminal summary of a profile document.
std::string profile_summary_text(const nlohmann::ordered_json& doc);

// Writes profile.json, the CSV tables and index.html into out_dir atomically (temporary sibling,
// then rename). An existing out_dir needs `force`. Returns the file names written.
std::vector<std::string> write_profile_report(const nlohmann::ordered_json& doc, const std::filesystem::path& out_dir, bool force);

}  // namespace moekit::analysis
