// Calibration statistics saved by content key (see calib_cache.h).
#include "model/calib_cache.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include <xxhash.h>

#include "core/clock.h"
#include "core/error.h"

namespace moekit::model {
namespace fs = std::filesystem;

namespace {

std::string hex64(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

// A streaming XXH3-64 state, freed however the hashing ends.
class Xxh3 {
public:
    Xxh3() : state_(XXH3_createState()) {
        if (state_ == nullptr) throw InternalError("calibration", "XXH3_createState failed");
        XXH3_64bits_reset(state_);
    }
    ~Xxh3() { XXH3_freeState(state_); }
    Xxh3(const Xxh3&) = delete;
    Xxh3& operator=(const Xxh3&) = delete;
    void update(const void* data, size_t n) { XXH3_64bits_update(state_, data, n); }
    uint64_t digest() const { return XXH3_64bits_digest(state_); }

private:
    XXH3_state_t* state_;
};

// XXH3 over config.json and every safetensors file of the checkpoint, in shard order.
uint64_t hash_model(const io::Checkpoint& checkpoint) {
    Xxh3 h;
    std::ifstream config(checkpoint.dir() / "config.json", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
    h.update(bytes.data(), bytes.size());
    for (const auto& shard : checkpoint.shards()) {
        const io::MappedFile file(shard->path());
        // In 64 MiB steps, giving pages back as we go so hashing a large model stays small in RSS.
        constexpr uint64_t step = uint64_t{64} << 20;
        for (uint64_t at = 0; at < file.size(); at += step) {
            const uint64_t n = std::min(step, file.size() - at);
            h.update(file.data() + at, n);
            file.release(at, at + n);
        }
    }
    return h.digest();
}

uint64_t hash_corpus(const Corpus& corpus, std::string_view kind, const nlohmann::json& params, uint64_t model) {
    Xxh3 h;
    h.update(&model, sizeof(model));
    h.update(kind.data(), kind.size());
    const std::string p = params.dump();  // nlohmann::json sorts object keys: canonical
    h.update(p.data(), p.size());
    h.update(&corpus.seq_len, sizeof(corpus.seq_len));
    for (size_t w = 0; w < corpus.windows.size(); ++w) {
        const std::vector<int32_t> ids = corpus.window_ids(w);
        const int64_t n = static_cast<int64_t>(ids.size());
        h.update(&n, sizeof(n));
        h.update(ids.data(), ids.size() * sizeof(int32_t));
    }
    return h.digest();
}

template <class T>
io::TensorSource vector_tensor(std::string name, core::DType dtype, std::vector<T> values) {
    io::TensorSource t;
    t.name = std::move(name);
    t.dtype = dtype;
    t.shape = {static_cast<int64_t>(values.size())};
    t.nbytes = values.size() * sizeof(T);
    t.fill = [v = std::move(values)](std::byte* dst) {
        if (!v.empty()) std::memcpy(dst, v.data(), v.size() * sizeof(T));
    };
    return t;
}

template <class T>
std::vector<T> read_exact(const io::SafetensorsFile& file, std::string_view name, core::DType dtype, int64_t expected) {
    const io::TensorInfo* info = file.find(name);
    if (info == nullptr)
        throw Error("calibration", file.path().string() + ": missing tensor '" + std::string(name) + "'");
    if (info->dtype != dtype || (expected >= 0 && info->n_elements() != static_cast<uint64_t>(expected)))
        throw Error("calibration", file.path().string() + ": tensor '" + std::string(name) + "' has dtype " +
                                       std::string(core::dtype_name(info->dtype)) + " and " +
                                       std::to_string(info->n_elements()) + " elements; expected " +
                                       std::string(core::dtype_name(dtype)) +
                                       (expected >= 0 ? " and " + std::to_string(expected) : std::string()));
    std::vector<T> out(info->n_elements());
    const auto bytes = file.bytes(*info);
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
}

// Every window of `corpus` through the engine once, in batches of the sinks' batch_tokens, feeding
// their observers; returns the tokens pushed through.
int64_t run_pass(const Engine& engine, const Corpus& corpus, const std::vector<CalibrationSink*>& sinks,
                 const std::function<void(double, const std::string&)>& progress) {
    std::vector<Observer*> observers;
    for (CalibrationSink* sink : sinks) observers.push_back(&sink->observer());
    const auto batches = batch_windows(corpus.windows, sinks.front()->batch_tokens());
    int64_t tokens = 0;
    for (size_t b = 0; b < batches.size(); ++b) {
        if (progress)
            progress(static_cast<double>(b) / static_cast<double>(batches.size()),
                     "calibration batch " + std::to_string(b + 1) + "/" + std::to_string(batches.size()));
        std::vector<std::vector<int32_t>> seqs;
        std::vector<int32_t> domains;
        for (size_t w = batches[b].first; w < batches[b].second; ++w) {
            seqs.push_back(corpus.window_ids(w));
            domains.push_back(static_cast<int32_t>(corpus.windows[w].domain));
            tokens += corpus.windows[w].len;
        }
        for (CalibrationSink* sink : sinks) sink->begin_batch(seqs, domains);
        engine.forward_hidden(seqs, observers);
    }
    if (progress) progress(1.0, "calibration done");
    return tokens;
}

}  // namespace

nlohmann::ordered_json CalibrationUse::to_json() const {
    nlohmann::ordered_json j{{"kind", kind}, {"source", source}, {"forward_tokens", forward_tokens}};
    j["file"] = file.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(file);
    return j;
}

CalibrationCache::CalibrationCache(fs::path dir) : dir_(std::move(dir)) {}

std::string CalibrationCache::key(const io::Checkpoint& checkpoint, const Corpus& corpus, std::string_view kind,
                                  const nlohmann::json& params) {
    const std::string dir = fs::weakly_canonical(checkpoint.dir()).string();
    auto it = model_hash_.find(dir);
    if (it == model_hash_.end()) it = model_hash_.emplace(dir, hash_model(checkpoint)).first;
    return hex64(hash_corpus(corpus, kind, params, it->second));
}

fs::path CalibrationCache::path(std::string_view kind, const std::string& key) const {
    return dir_ / (std::string(kind) + "-" + key + ".safetensors");
}

std::optional<io::SafetensorsFile> CalibrationCache::find(std::string_view kind, const std::string& key) const {
    const fs::path p = path(kind, key);
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) return std::nullopt;
    io::SafetensorsFile file(p);
    const auto& meta = file.header().metadata;
    const auto k = meta.find("moekit_calibration");
    const auto h = meta.find("key");
    if (k == meta.end() || k->second != kind || h == meta.end() || h->second != key)
        throw Error("calibration", p.string() + " is not a moekit '" + std::string(kind) +
                                       "' calibration entry with key " + key + "; remove it");
    return file;
}

bool CalibrationCache::contains(std::string_view kind, const std::string& key) const {
    std::error_code ec;
    return fs::is_regular_file(path(kind, key), ec);
}

nlohmann::json key_params(const Engine& engine, nlohmann::json params) {
    if (engine.device_name() != "cpu") params["device"] = engine.device_name();
    return params;
}

SharedPass run_shared_pass(CalibrationCache& cache, const io::Checkpoint& checkpoint, const Engine& engine,
                           const Corpus& corpus, const std::vector<CalibrationSink*>& sinks,
                           const std::function<void(double, const std::string&)>& progress) {
    SharedPass pass;
    std::vector<CalibrationSink*> todo;
    std::vector<std::string> keys;
    for (CalibrationSink* sink : sinks) {
        const std::string key = cache.key(checkpoint, corpus, sink->kind(), key_params(engine, sink->params()));
        // The key covers the kind: an equal key is the same statistic (two prunes of one model).
        if (std::find(keys.begin(), keys.end(), key) != keys.end() || cache.contains(sink->kind(), key)) continue;
        if (!todo.empty() && sink->batch_tokens() != todo.front()->batch_tokens())
            throw InternalError("calibration", "a shared pass needs one batch size");
        todo.push_back(sink);
        keys.push_back(key);
        pass.kinds.emplace_back(sink->kind());
    }
    if (todo.empty()) return pass;
    const auto t0 = std::chrono::steady_clock::now();
    pass.tokens = run_pass(engine, corpus, todo, progress);
    for (size_t i = 0; i < todo.size(); ++i) todo[i]->save(cache, keys[i]);
    pass.seconds = core::seconds_since(t0);
    return pass;
}

CalibrationUse calibrate(CalibrationCache* cache, const io::Checkpoint& checkpoint, const Engine& engine, const Corpus& corpus,
                         CalibrationSink& sink, const std::function<void(const io::SafetensorsFile&)>& load,
                         const std::function<void(double, const std::string&)>& progress) {
    CalibrationUse use;
    use.kind = std::string(sink.kind());
    std::string key;
    if (cache != nullptr) {
        if (progress) progress(0.0, "calibration: looking up saved statistics");
        key = cache->key(checkpoint, corpus, sink.kind(), key_params(engine, sink.params()));
        if (const auto saved = cache->find(sink.kind(), key)) {
            load(*saved);
            use.source = "reused";
            use.file = saved->path().string();
            return use;
        }
    }
    use.forward_tokens = run_pass(engine, corpus, {&sink}, progress);
    if (cache != nullptr) {
        sink.save(*cache, key);
        use.source = "computed+saved";
        use.file = cache->path(sink.kind(), key).string();
    }
    return use;
}

fs::path CalibrationCache::writable_path(std::string_view kind, const std::string& key) const {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) throw Error("calibration", "cannot create " + dir_.string() + ": " + ec.message());
    return path(kind, key);
}

fs::path CalibrationCache::save(std::string_view kind, const std::string& key,
                                const std::vector<io::TensorSource>& tensors) const {
    const fs::path final_path = writable_path(kind, key);
    std::error_code ec;
    const fs::path tmp = final_path.string() + ".tmp-" + std::to_string(::getpid());
    io::write_safetensors(tmp, tensors, {{"moekit_calibration", std::string(kind)}, {"key", key}});
    fs::rename(tmp, final_path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        throw Error("calibration", "cannot write " + final_path.string());
    }
    return final_path;
}

io::TensorSource f64_tensor(std::string name, std::vector<double> values) {
    return vector_tensor(std::move(name), core::DType::F64, std::move(values));
}
io::TensorSource i64_tensor(std::string name, std::vector<int64_t> values) {
    return vector_tensor(std::move(name), core::DType::I64, std::move(values));
}
io::TensorSource f32_vector_tensor(std::string name, std::vector<float> values) {
    return vector_tensor(std::move(name), core::DType::F32, std::move(values));
}
std::vector<double> read_f64(const io::SafetensorsFile& file, std::string_view name, int64_t expected) {
    return read_exact<double>(file, name, core::DType::F64, expected);
}
std::vector<int64_t> read_i64(const io::SafetensorsFile& file, std::string_view name, int64_t expected) {
    return read_exact<int64_t>(file, name, core::DType::I64, expected);
}
std::vector<float> read_f32_exact(const io::SafetensorsFile& file, std::string_view name, int64_t expected) {
    return read_exact<float>(file, name, core::DType::F32, expected);
}

}  // namespace moekit::model
