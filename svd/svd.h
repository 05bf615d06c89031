// `moekit svd`: low-rank compression of every routed expert (METHODS.md §7) into a checkpoint
// written dense (original layout and dtype, any loader) or factored (the factors themselves,
// run by moekit's engine as two thin GEMMs per projection), with OUT_DIR/moekit.json (method,
// ratio, ranks, per-layer routed tokens, fallbacks, truncation energy, parameter counts) and a
// README.md note.
//
// Calibration (svd-llm, d2-moe): the --calib files are tokenized and cut into windows exactly as
// `moekit eval` does (model/corpus.h); one teacher-forced pass over all windows feeds a
// CalibObserver (svd/calib.h: routed inputs per expert and the recomputed intermediate
// activations). `--method svd` (plain truncated SVD, the baseline) needs no calibration.
// Then svd/compress.h factorizes every expert and svd/edit.h turns the factors into the edit.
//
// Bad input is refused before any heavy work and before anything is written: unknown method or
// format, a ratio outside (0, 1), a d2-moe ratio whose base leaves no rank, expert weights that
// cannot be written back (FP8), missing calibration data, a missing or existing output.
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
#include "model/corpus.h"
#include "svd/compress.h"
#include "svd/edit.h"

namespace moekit::svd {

// 128 Ki tokens: a typical calibration set in one pass (activations ~0.5 GiB per buffer at d 1024).
inline constexpr int64_t kDefaultBatchTokens = 131072;

struct SvdOptions {
    std::filesystem::path model_dir;
    std::filesystem::path out_dir;        // required unless dry_run
    std::string method = "svd-llm";       // svd-llm | d2-moe | svd
    double ratio = 0.0;                   // kept fraction of the routed experts' parameters, in (0, 1)
    std::string format = "dense";         // dense | factored
    bool dry_run = false;                 // calibrate and factorize, report, write nothing
    bool force = false;
    model::CorpusOptions calib;           // its flag is named "--calib" in messages
    // Tokens per engine pass. When the calibration fits in one pass, each layer is factorized as
    // soon as its statistics are complete and only one layer's are held; more passes hold every
    // MoE layer's statistics until the last (svd/calib.h). Larger passes hold more activations.
    int64_t batch_tokens = kDefaultBatchTokens;
    int threads = 0;                      // 0: all cores
    // --device cuda: the calibration forward on the device (model::EngineOptions::device) and the
    // truncated SVDs through svd_fn (backend::cuda_svd); empty / nullptr: the CPU.
    std::shared_ptr<backend::DeviceOps> device = nullptr;
    SvdFn svd_fn;
    uint64_t max_shard_bytes = 5'000'000'000;
    std::string tool_version;
    std::function<void(double, const std::string&)> progress;
};

struct SvdResult {
    SvdOptions options;                   // as resolved (progress unset)
    Method method = Method::svd_llm;
    Format format = Format::dense;
    std::string model_type, display_name;
    int64_t n_layer = 0, n_expert = 0, d_model = 0, d_ff_expert = 0;
    int64_t rank[3] = {0, 0, 0};          // gate, up, down
    int64_t seq_len = 0, calib_tokens = 0, calib_windows = 0;
    int64_t calib_passes = 0;             // engine passes over the calibration (1: layer streaming)
    std::string tokenization;
    nlohmann::ordered_json calib_files = nlohmann::ordered_json::array();
    std::vector<LayerFactors> layers;     // MoE layers, ascending (factors kept for the write)
    int64_t expert_params = 0;            // routed experts' parameters in the input
    int64_t kept_params = 0;              // factors (+ d2-moe bases): what the factored format stores
    uint64_t input_tensor_bytes = 0;
    uint64_t output_tensor_bytes = 0;     // planned (= written when not a dry run)
    std::optional<io::WriteResult> written;
    double calib_s = 0, factor_s = 0, write_s = 0, wall_s = 0;
    int threads = 0;
    std::string device = "cpu";          // where calibration and SVDs ran
    nlohmann::ordered_json moekit_json;
};

SvdResult svd(const SvdOptions& options);

nlohmann::ordered_json make_moekit_json(const SvdResult& result);
std::string readme_note(const SvdResult& result);
nlohmann::ordered_json to_json(const SvdResult& result);
std::string to_text(const SvdResult& result);

}  // namespace moekit::svd
