// A directory of saved calibration statistics, so that a statistic computed once on a model and
// a corpus is reused instead of running the model again (`moekit run` shares one across steps
// and, with --reuse-calibration, across runs).
//
// Each entry is one safetensors file `<kind>-<key>.safetensors` holding the statistic's
// mergeable accumulators (sums, counts, maxima; F64/I64/F32 tensors named by the method that
// owns them) and `__metadata__` {"moekit_calibration": kind, "key": ...}. The key is a 64-bit
// XXH3 hash over everything the statistic depends on:
//   * the model: config.json's bytes and every safetensors file's bytes (header and data), so
//     a checkpoint rewritten with identical bytes (a deterministic re-run) keeps its key and a
//     changed weight changes it;
//   * the corpus: seq_len and every window's token ids, in order;
//   * the kind and a JSON object of the remaining parameters (batch size, sample sizes, the
//     format version of the statistic), serialized canonically.
// Entries are written to a temporary sibling and renamed, so a killed run never leaves a
// partial entry that a later run would trust.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/corpus.h"
#include "model/engine.h"

namespace moekit::model {

// How a command obtained one calibration statistic (reported in its JSON as "calibration").
struct CalibrationUse {
    std::string kind;
    std::string source = "computed";    // "computed" (no cache), "computed+saved" or "reused"
    std::string file;                   // the cache entry, when a cache is in use
    int64_t forward_tokens = 0;         // tokens pushed through the model for this statistic
    nlohmann::ordered_json to_json() const;
};

class CalibrationCache {
public:
    // Entries live in `dir` (created on the first save).
    explicit CalibrationCache(std::filesystem::path dir);

    const std::filesystem::path& dir() const { return dir_; }

    // The key of statistic `kind` on `checkpoint` over `corpus` with `params`. Hashing a model
    // reads all its bytes once; the hash is remembered per checkpoint directory.
    std::string key(const io::Checkpoint& checkpoint, const Corpus& corpus, std::string_view kind,
                    const nlohmann::json& params);

    std::filesystem::path path(std::string_view kind, const std::string& key) const;
    // path(), with the cache directory created: for entries written by their own writer (traces).
    std::filesystem::path writable_path(std::string_view kind, const std::string& key) const;
    // The entry, or nullopt when absent. Throws Error("calibration") for an entry that exists
    // but is not a moekit calibration file of this kind and key.
    std::optional<io::SafetensorsFile> find(std::string_view kind, const std::string& key) const;
    bool contains(std::string_view kind, const std::string& key) const;
    // Writes the entry atomically (temporary sibling + rename); returns its path.
    std::filesystem::path save(std::string_view kind, const std::string& key,
                               const std::vector<io::TensorSource>& tensors) const;

private:
    std::filesystem::path dir_;
    std::map<std::string, uint64_t> model_hash_;  // checkpoint dir -> hash
};

// One statistic a method gathers from a teacher-forced pass over a corpus, so that several
// methods' statistics of one model and corpus can come from a single shared pass
// (run_shared_pass). A method builds it exactly as it would for its own pass (same observer,
// same key parameters), so the saved entry is the one the method itself would have saved.
class CalibrationSink {
public:
    virtual ~CalibrationSink() = default;
    virtual std::string_view kind() const = 0;
    virtual nlohmann::json params() const = 0;            // the key's parameters
    virtual int64_t batch_tokens() const = 0;             // the batching the statistic is keyed on
    virtual Observer& observer() = 0;
    // Called before each batch with its sequences and their domain indices.
    virtual void begin_batch(const std::vector<std::vector<int32_t>>& /*sequences*/, const std::vector<int32_t>& /*domains*/) {}
    // Writes the entry after the pass.
    virtual void save(CalibrationCache& cache, const std::string& key) = 0;
};

struct SharedPass {
    std::vector<std::string> kinds;     // the statistics it computed (those not already saved)
    int64_t tokens = 0;                 // tokens through the model (0: everything was saved)
    double seconds = 0;
};

// One pass over `corpus` (batches of the sinks' common batch_tokens) feeding every sink whose
// entry `cache` lacks; saves their entries. Throws InternalError for sinks with different
// batch_tokens (the caller groups them).
SharedPass run_shared_pass(CalibrationCache& cache, const io::Checkpoint& checkpoint, const Engine& engine,
                           const Corpus& corpus, const std::vector<CalibrationSink*>& sinks,
                           const std::function<void(double, const std::string&)>& progress = nullptr);

// A method's own calibration with an optional cache: with `cache`, the sink's entry is looked up
// and handed to `load` when present; otherwise the sink's observer runs over `corpus` (batches of
// its batch_tokens) and, with `cache`, its entry is saved. The caller reads the result from its
// sink unless the returned source is "reused".
CalibrationUse calibrate(CalibrationCache* cache, const io::Checkpoint& checkpoint, const Engine& engine, const Corpus& corpus,
                         CalibrationSink& sink, const std::function<void(const io::SafetensorsFile&)>& load,
                         const std::function<void(double, const std::string&)>& progress = nullptr);

// A statistic's key parameters as computed with `engine`: `params` plus "device" when the engine
// runs on a compute device (a GPU's sums differ from the CPU's in the last bits, so its entries
// must not stand in for them). Every key a method saves goes through this.
nlohmann::json key_params(const Engine& engine, nlohmann::json params);

// Helpers for turning accumulators into tensors and back (names are the caller's).
io::TensorSource f64_tensor(std::string name, std::vector<double> values);
io::TensorSource i64_tensor(std::string name, std::vector<int64_t> values);
io::TensorSource f32_vector_tensor(std::string name, std::vector<float> values);
// Read a tensor of exactly that dtype; throws Error("calibration") naming the file when it is
// missing or has another dtype / element count (expected < 0: any count).
std::vector<double> read_f64(const io::SafetensorsFile& file, std::string_view name, int64_t expected = -1);
std::vector<int64_t> read_i64(const io::SafetensorsFile& file, std::string_view name, int64_t expected = -1);
std::vector<float> read_f32_exact(const io::SafetensorsFile& file, std::string_view name, int64_t expected = -1);

}  // namespace moekit::model
