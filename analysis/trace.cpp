// RoutingTrace: recording (TraceRecorder), merging and the safetensors file format
// (analysis/trace.h, docs/PROFILE.md).
#include "analysis/trace.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"

namespace moekit::analysis {

namespace fs = std::filesystem;
using core::DType;

namespace {

constexpr const char* kFormat = "moekit-trace";
constexpr const char* kVersion = "1";

std::string layer_key(size_t j, const char* field) { return "layers." + std::to_string(j) + "." + field; }

template <typename T>
void check_size(const std::vector<T>& v, int64_t expected, const std::string& what) {
    if (static_cast<int64_t>(v.size()) != expected)
        throw Error("trace", what + " has " + std::to_string(v.size()) + " values, expected " + std::to_string(expected));
}

template <typename T>
void append(std::vector<T>& into, const std::vector<T>& part) {
    into.insert(into.end(), part.begin(), part.end());
}

}  // namespace

void RoutingTrace::validate() const {
    if (n_expert < 1 || n_expert_used < 1 || n_expert_used > n_expert)
        throw Error("trace", "bad expert counts: n_expert " + std::to_string(n_expert) + ", n_expert_used " + std::to_string(n_expert_used));
    if (logit_sample_stride < 1) throw Error("trace", "logit_sample_stride must be at least 1");
    if (seq_begin.empty() || seq_begin.front() != 0 || seq_begin.back() != n_tokens())
        throw Error("trace", "seq_begin does not span the token ids");
    for (size_t s = 1; s < seq_begin.size(); ++s)
        if (seq_begin[s] < seq_begin[s - 1]) throw Error("trace", "seq_begin is not ascending");
    check_size(seq_domain, n_seq(), "seq_domain");
    for (int32_t d : seq_domain)
        if (d < 0 || d >= static_cast<int32_t>(domains.size())) throw Error("trace", "seq_domain names an unknown domain");
    for (size_t i = 0; i < sample_rows.size(); ++i)
        if (sample_rows[i] < 0 || sample_rows[i] >= n_tokens() || (i > 0 && sample_rows[i] <= sample_rows[i - 1]))
            throw Error("trace", "sample_rows must be ascending token rows");
    const int64_t T = n_tokens(), S = n_seq(), E = n_expert, k = n_expert_used;
    const auto n_sample = static_cast<int64_t>(sample_rows.size());
    int64_t prev_layer = -1;
    for (size_t j = 0; j < layers.size(); ++j) {
        const TraceLayer& l = layers[j];
        const std::string name = "layer " + std::to_string(l.layer);
        if (l.layer <= prev_layer || l.layer >= n_layer) throw Error("trace", "MoE layer indices must be ascending and below n_layer");
        prev_layer = l.layer;
        check_size(l.selected, T * k, name + " selected");
        check_size(l.gates, T * k, name + " gates");
        check_size(l.seq_sum_prob, S * E, name + " seq_sum_prob");
        check_size(l.seq_sum_centered_logit, S * E, name + " seq_sum_centered_logit");
        check_size(l.seq_sum_entropy, S, name + " seq_sum_entropy");
        check_size(l.seq_sum_out_norm, S * E, name + " seq_sum_out_norm");
        check_size(l.seq_max_abs_out, S * E, name + " seq_max_abs_out");
        check_size(l.sample_logits, n_sample * E, name + " sample_logits");
        for (int64_t t = 0; t < T; ++t) {
            const int32_t* row = l.selected.data() + t * k;
            for (int64_t a = 0; a < k; ++a) {
                if (row[a] < 0 || row[a] >= E)
                    throw Error("trace", name + ": token " + std::to_string(t) + " selects expert " + std::to_string(row[a]) +
                                             " outside [0, " + std::to_string(E) + ")");
                for (int64_t b = 0; b < a; ++b)
                    if (row[a] == row[b]) throw Error("trace", name + ": token " + std::to_string(t) + " selects expert " + std::to_string(row[a]) + " twice");
            }
        }
    }
}

void append_trace(RoutingTrace& into, const RoutingTrace& part) {
    if (into.layers.empty() && into.n_tokens() == 0 && into.n_expert == 0) {
        into = part;
        return;
    }
    auto differs = [&](const std::string& what, const std::string& a, const std::string& b) {
        if (a != b) throw Error("trace", "cannot merge traces of different models: " + what + " " + a + " vs " + b);
    };
    differs("model_type", into.model_type, part.model_type);
    differs("n_layer", std::to_string(into.n_layer), std::to_string(part.n_layer));
    differs("n_expert", std::to_string(into.n_expert), std::to_string(part.n_expert));
    differs("n_expert_used", std::to_string(into.n_expert_used), std::to_string(part.n_expert_used));
    differs("scoring", into.scoring, part.scoring);
    differs("logit_sample_stride", std::to_string(into.logit_sample_stride), std::to_string(part.logit_sample_stride));
    differs("number of MoE layers", std::to_string(into.layers.size()), std::to_string(part.layers.size()));
    for (size_t j = 0; j < into.layers.size(); ++j)
        differs("MoE layer", std::to_string(into.layers[j].layer), std::to_string(part.layers[j].layer));
    if (into.model_name != part.model_name) into.model_name += "+" + part.model_name;

    std::vector<int32_t> domain_map(part.domains.size());
    for (size_t d = 0; d < part.domains.size(); ++d) {
        auto it = std::find(into.domains.begin(), into.domains.end(), part.domains[d]);
        if (it == into.domains.end()) it = into.domains.insert(into.domains.end(), part.domains[d]);
        domain_map[d] = static_cast<int32_t>(it - into.domains.begin());
    }
    const int64_t row0 = into.n_tokens();
    append(into.token_ids, part.token_ids);
    for (size_t s = 1; s < part.seq_begin.size(); ++s) into.seq_begin.push_back(row0 + part.seq_begin[s]);
    for (int32_t d : part.seq_domain) into.seq_domain.push_back(domain_map[static_cast<size_t>(d)]);
    for (int64_t r : part.sample_rows) into.sample_rows.push_back(row0 + r);
    for (size_t j = 0; j < into.layers.size(); ++j) {
        TraceLayer& a = into.layers[j];
        const TraceLayer& b = part.layers[j];
        append(a.selected, b.selected);
        append(a.gates, b.gates);
        append(a.seq_sum_prob, b.seq_sum_prob);
        append(a.seq_sum_centered_logit, b.seq_sum_centered_logit);
        append(a.seq_sum_entropy, b.seq_sum_entropy);
        append(a.seq_sum_out_norm, b.seq_sum_out_norm);
        append(a.seq_max_abs_out, b.seq_max_abs_out);
        append(a.sample_logits, b.sample_logits);
    }
}

RoutingTrace merge_traces(const std::vector<RoutingTrace>& parts) {
    RoutingTrace out;
    for (const auto& p : parts) append_trace(out, p);
    out.validate();
    return out;
}

double trace_bytes_per_token_layer(const RoutingTrace& trace) {
    const double T = static_cast<double>(std::max<int64_t>(trace.n_tokens(), 1));
    const double S = static_cast<double>(trace.n_seq());
    const double E = static_cast<double>(trace.n_expert), k = static_cast<double>(trace.n_expert_used);
    const double id_bytes = trace.n_expert > 32767 ? 4.0 : 2.0;
    const double per_seq = E * (8 + 8 + 8 + 4) + 8;
    const double sampled = static_cast<double>(trace.sample_rows.size()) * E * 4;
    return k * (id_bytes + 4) + (S * per_seq + sampled) / T;
}

// ---- file format ----------------------------------------------------------------------------

namespace {

template <typename T>
io::TensorSource source(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& v) {
    io::TensorSource s{name, dtype, std::move(shape), v.size() * sizeof(T), nullptr};
    s.fill = [&v](std::byte* dst) {
        if (!v.empty()) std::memcpy(dst, v.data(), v.size() * sizeof(T));
    };
    return s;
}

template <typename T>
std::vector<T> read_tensor(const io::SafetensorsFile& file, const std::string& name, DType dtype, std::vector<int64_t> shape) {
    const io::TensorInfo* info = file.find(name);
    if (!info) throw Error("trace", "'" + file.path().string() + "' lacks tensor " + name);
    if (info->dtype != dtype || info->shape != shape)
        throw Error("trace", "'" + file.path().string() + "': tensor " + name + " has the wrong dtype or shape");
    std::vector<T> out(info->n_elements());
    const auto bytes = file.bytes(*info);
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
}

int64_t meta_int(const std::map<std::string, std::string>& meta, const std::string& key, const fs::path& path) {
    const auto it = meta.find(key);
    if (it == meta.end()) throw Error("trace", "'" + path.string() + "' metadata lacks " + key);
    try {
        size_t used = 0;
        const int64_t v = std::stoll(it->second, &used);
        if (used != it->second.size()) throw std::invalid_argument(key);
        return v;
    } catch (const std::exception&) {
        throw Error("trace", "'" + path.string() + "' metadata " + key + " is not an integer");
    }
}

}  // namespace

void save_trace(const RoutingTrace& trace, const fs::path& path) {
    trace.validate();
    const int64_t T = trace.n_tokens(), S = trace.n_seq(), E = trace.n_expert, k = trace.n_expert_used;
    const auto n_sample = static_cast<int64_t>(trace.sample_rows.size());
    const bool wide = E > 32767;
    std::vector<std::vector<int16_t>> narrow(trace.layers.size());
    std::vector<io::TensorSource> tensors;
    tensors.push_back(source("token_ids", DType::I32, {T}, trace.token_ids));
    tensors.push_back(source("seq_begin", DType::I64, {S + 1}, trace.seq_begin));
    tensors.push_back(source("seq_domain", DType::I32, {S}, trace.seq_domain));
    tensors.push_back(source("sample_rows", DType::I64, {n_sample}, trace.sample_rows));
    nlohmann::json moe_layers = nlohmann::json::array();
    for (size_t j = 0; j < trace.layers.size(); ++j) {
        const TraceLayer& l = trace.layers[j];
        moe_layers.push_back(l.layer);
        if (wide) {
            tensors.push_back(source(layer_key(j, "selected"), DType::I32, {T, k}, l.selected));
        } else {
            narrow[j].assign(l.selected.begin(), l.selected.end());
            tensors.push_back(source(layer_key(j, "selected"), DType::I16, {T, k}, narrow[j]));
        }
        tensors.push_back(source(layer_key(j, "gates"), DType::F32, {T, k}, l.gates));
        tensors.push_back(source(layer_key(j, "seq_sum_prob"), DType::F64, {S, E}, l.seq_sum_prob));
        tensors.push_back(source(layer_key(j, "seq_sum_centered_logit"), DType::F64, {S, E}, l.seq_sum_centered_logit));
        tensors.push_back(source(layer_key(j, "seq_sum_entropy"), DType::F64, {S}, l.seq_sum_entropy));
        tensors.push_back(source(layer_key(j, "seq_sum_out_norm"), DType::F64, {S, E}, l.seq_sum_out_norm));
        tensors.push_back(source(layer_key(j, "seq_max_abs_out"), DType::F32, {S, E}, l.seq_max_abs_out));
        tensors.push_back(source(layer_key(j, "sample_logits"), DType::F32, {n_sample, E}, l.sample_logits));
    }
    const std::map<std::string, std::string> meta = {
        {"format", kFormat},
        {"trace_version", kVersion},
        {"model_type", trace.model_type},
        {"model_name", trace.model_name},
        {"n_layer", std::to_string(trace.n_layer)},
        {"n_expert", std::to_string(E)},
        {"n_expert_used", std::to_string(k)},
        {"scoring", trace.scoring},
        {"logit_sample_stride", std::to_string(trace.logit_sample_stride)},
        {"domains", nlohmann::json(trace.domains).dump()},
        {"moe_layers", moe_layers.dump()},
    };
    const fs::path tmp = path.string() + ".moekit-tmp-" + std::to_string(::getpid());
    try {
        io::write_safetensors(tmp, tensors, meta);
        fs::rename(tmp, path);
    } catch (const fs::filesystem_error& e) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw Error("trace", "cannot write '" + path.string() + "': " + e.code().message());
    } catch (...) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw;
    }
}

RoutingTrace load_trace(const fs::path& path) {
    if (!fs::is_regular_file(path)) throw Error("trace", "'" + path.string() + "' is not a file");
    const io::SafetensorsFile file(path);
    const auto& meta = file.header().metadata;
    const auto fmt = meta.find("format");
    if (fmt == meta.end() || fmt->second != kFormat)
        throw Error("trace", "'" + path.string() + "' is not a moekit trace (safetensors metadata format != \"moekit-trace\")");
    const auto ver = meta.find("trace_version");
    if (ver == meta.end() || ver->second != kVersion)
        throw Error("trace", "'" + path.string() + "' has trace_version " + (ver == meta.end() ? "(none)" : ver->second) +
                                 "; this moekit reads version " + kVersion);
    RoutingTrace t;
    auto text = [&](const char* key) {
        const auto it = meta.find(key);
        if (it == meta.end()) throw Error("trace", "'" + path.string() + "' metadata lacks " + key);
        return it->second;
    };
    t.model_type = text("model_type");
    t.model_name = text("model_name");
    t.scoring = text("scoring");
    t.n_layer = meta_int(meta, "n_layer", path);
    t.n_expert = meta_int(meta, "n_expert", path);
    t.n_expert_used = meta_int(meta, "n_expert_used", path);
    t.logit_sample_stride = meta_int(meta, "logit_sample_stride", path);
    std::vector<int64_t> moe_layers;
    try {
        t.domains = nlohmann::json::parse(text("domains")).get<std::vector<std::string>>();
        moe_layers = nlohmann::json::parse(text("moe_layers")).get<std::vector<int64_t>>();
    } catch (const nlohmann::json::exception&) {
        throw Error("trace", "'" + path.string() + "' metadata domains/moe_layers are not JSON lists");
    }
    if (t.n_expert < 1 || t.n_expert_used < 1 || t.n_expert_used > t.n_expert)
        throw Error("trace", "'" + path.string() + "' has bad expert counts");
    const io::TensorInfo* ids = file.find("token_ids");
    const io::TensorInfo* sb = file.find("seq_begin");
    const io::TensorInfo* sr = file.find("sample_rows");
    if (!ids || !sb || !sr || ids->shape.size() != 1 || sb->shape.size() != 1 || sr->shape.size() != 1)
        throw Error("trace", "'" + path.string() + "' lacks token_ids, seq_begin or sample_rows");
    const int64_t T = ids->shape[0], S = sb->shape[0] - 1, N = sr->shape[0], E = t.n_expert, k = t.n_expert_used;
    if (S < 0) throw Error("trace", "'" + path.string() + "': empty seq_begin");
    t.token_ids = read_tensor<int32_t>(file, "token_ids", DType::I32, {T});
    t.seq_begin = read_tensor<int64_t>(file, "seq_begin", DType::I64, {S + 1});
    t.seq_domain = read_tensor<int32_t>(file, "seq_domain", DType::I32, {S});
    t.sample_rows = read_tensor<int64_t>(file, "sample_rows", DType::I64, {N});
    for (size_t j = 0; j < moe_layers.size(); ++j) {
        TraceLayer l;
        l.layer = moe_layers[j];
        if (E > 32767) {
            l.selected = read_tensor<int32_t>(file, layer_key(j, "selected"), DType::I32, {T, k});
        } else {
            const auto narrow = read_tensor<int16_t>(file, layer_key(j, "selected"), DType::I16, {T, k});
            l.selected.assign(narrow.begin(), narrow.end());
        }
        l.gates = read_tensor<float>(file, layer_key(j, "gates"), DType::F32, {T, k});
        l.seq_sum_prob = read_tensor<double>(file, layer_key(j, "seq_sum_prob"), DType::F64, {S, E});
        l.seq_sum_centered_logit = read_tensor<double>(file, layer_key(j, "seq_sum_centered_logit"), DType::F64, {S, E});
        l.seq_sum_entropy = read_tensor<double>(file, layer_key(j, "seq_sum_entropy"), DType::F64, {S});
        l.seq_sum_out_norm = read_tensor<double>(file, layer_key(j, "seq_sum_out_norm"), DType::F64, {S, E});
        l.seq_max_abs_out = read_tensor<float>(file, layer_key(j, "seq_max_abs_out"), DType::F32, {S, E});
        l.sample_logits = read_tensor<float>(file, layer_key(j, "sample_logits"), DType::F32, {N, E});
        t.layers.push_back(std::move(l));
    }
    try {
        t.validate();
    } catch (const Error& e) {
        throw Error("trace", "'" + path.string() + "' is inconsistent: " + e.what());
    }
    return t;
}

// ---- recording ------------------------------------------------------------------------------

TraceRecorder::TraceRecorder(RoutingTrace& trace) : trace_(trace) {
    if (trace_.seq_begin.empty()) trace_.seq_begin.push_back(0);
}

void TraceRecorder::begin_batch(const std::vector<std::vector<int32_t>>& sequences, const std::vector<int32_t>& domains) {
    if (domains.size() != sequences.size()) throw InternalError("trace", "one domain per sequence expected");
    batch_row0_ = trace_.n_tokens();
    batch_seq0_ = trace_.n_seq();
    batch_row_seq_.clear();
    const int64_t E = trace_.n_expert, k = trace_.n_expert_used;
    int64_t n_sample = 0;
    for (size_t s = 0; s < sequences.size(); ++s) {
        const auto& seq = sequences[s];
        const int64_t row0 = trace_.n_tokens();
        trace_.token_ids.insert(trace_.token_ids.end(), seq.begin(), seq.end());
        trace_.seq_begin.push_back(trace_.n_tokens());
        trace_.seq_domain.push_back(domains[s]);
        for (int64_t p = 0; p < static_cast<int64_t>(seq.size()); ++p) {
            batch_row_seq_.push_back(batch_seq0_ + static_cast<int64_t>(s));
            if (p % trace_.logit_sample_stride == 0) {
                trace_.sample_rows.push_back(row0 + p);
                ++n_sample;
            }
        }
    }
    const auto T = static_cast<int64_t>(batch_row_seq_.size());
    const auto S = static_cast<int64_t>(sequences.size());
    for (TraceLayer& l : trace_.layers) {
        l.selected.resize(l.selected.size() + static_cast<size_t>(T * k), 0);
        l.gates.resize(l.gates.size() + static_cast<size_t>(T * k), 0.0f);
        l.seq_sum_prob.resize(l.seq_sum_prob.size() + static_cast<size_t>(S * E), 0.0);
        l.seq_sum_centered_logit.resize(l.seq_sum_centered_logit.size() + static_cast<size_t>(S * E), 0.0);
        l.seq_sum_entropy.resize(l.seq_sum_entropy.size() + static_cast<size_t>(S), 0.0);
        l.seq_sum_out_norm.resize(l.seq_sum_out_norm.size() + static_cast<size_t>(S * E), 0.0);
        l.seq_max_abs_out.resize(l.seq_max_abs_out.size() + static_cast<size_t>(S * E), 0.0f);
        l.sample_logits.resize(l.sample_logits.size() + static_cast<size_t>(n_sample * E), 0.0f);
    }
}

namespace {
TraceLayer& layer_for(RoutingTrace& trace, int64_t il) {
    for (TraceLayer& l : trace.layers)
        if (l.layer == il) return l;
    throw InternalError("trace", "router event for layer " + std::to_string(il) + ", which the trace does not hold");
}
}  // namespace

void TraceRecorder::on_router(const model::RouterEvent& event) {
    TraceLayer& l = layer_for(trace_, event.layer);
    const int64_t T = event.logits.rows(), E = trace_.n_expert, k = trace_.n_expert_used;
    if (T != static_cast<int64_t>(batch_row_seq_.size()) || event.logits.cols() != E || event.selected.cols() != k)
        throw InternalError("trace", "router event shape does not match the batch");
    // Sample rows of this batch: those at or after batch_row0_ (sample_rows is ascending).
    auto sample_it = std::lower_bound(trace_.sample_rows.begin(), trace_.sample_rows.end(), batch_row0_);
    int64_t sample_index = sample_it - trace_.sample_rows.begin();
    std::vector<double> p(static_cast<size_t>(E));
    for (int64_t r = 0; r < T; ++r) {
        const int64_t row = batch_row0_ + r;
        const int64_t seq = batch_row_seq_[static_cast<size_t>(r)];
        for (int64_t a = 0; a < k; ++a) {
            l.selected[static_cast<size_t>(row * k + a)] = event.selected(r, a);
            l.gates[static_cast<size_t>(row * k + a)] = event.gates(r, a);
        }
        const float* z = event.logits.row(r).data();
        double mx = z[0], mean = 0.0;
        for (int64_t e = 0; e < E; ++e) mx = std::max(mx, static_cast<double>(z[e])), mean += z[e];
        mean /= static_cast<double>(E);
        double sum = 0.0;
        for (int64_t e = 0; e < E; ++e) sum += (p[static_cast<size_t>(e)] = std::exp(static_cast<double>(z[e]) - mx));
        double entropy = 0.0;
        double* sp = l.seq_sum_prob.data() + seq * E;
        double* sc = l.seq_sum_centered_logit.data() + seq * E;
        for (int64_t e = 0; e < E; ++e) {
            const double pe = p[static_cast<size_t>(e)] / sum;
            if (pe > 0) entropy -= pe * std::log(pe);
            sp[e] += pe;
            sc[e] += static_cast<double>(z[e]) - mean;
        }
        l.seq_sum_entropy[static_cast<size_t>(seq)] += entropy;
        if (sample_index < static_cast<int64_t>(trace_.sample_rows.size()) && trace_.sample_rows[static_cast<size_t>(sample_index)] == row) {
            std::copy(z, z + E, l.sample_logits.begin() + sample_index * E);
            ++sample_index;
        }
    }
}

void TraceRecorder::on_expert(const model::ExpertEvent& event) {
    TraceLayer& l = layer_for(trace_, event.layer);
    const int64_t E = trace_.n_expert;
    for (size_t i = 0; i < event.rows.size(); ++i) {
        const int64_t seq = batch_row_seq_[static_cast<size_t>(event.rows[i])];
        const auto row = event.output.row(static_cast<Eigen::Index>(i));
        const double norm = std::sqrt(row.cast<double>().squaredNorm());
        const float max_abs = row.size() ? row.cwiseAbs().maxCoeff() : 0.0f;
        l.seq_sum_out_norm[static_cast<size_t>(seq * E + event.expert)] += norm;
        float& m = l.seq_max_abs_out[static_cast<size_t>(seq * E + event.expert)];
        m = std::max(m, max_abs);
    }
}

}  // namespace moekit::analysis
