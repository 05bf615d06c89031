// Pruning scores and super experts (prune/scores.h).
#include "prune/scores.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "core/error.h"
#include "model/calib_cache.h"

namespace moekit::prune {

namespace {

struct MethodName {
    Method method;
    std::string_view name;
};

constexpr MethodName kMethods[] = {
    {Method::frequency, "frequency"}, {Method::weighted_frequency, "weighted-frequency"},
    {Method::ean, "ean"},             {Method::reap, "reap"},
    {Method::tcess, "tcess"},         {Method::easy_ep, "easy-ep"},
    {Method::naee, "naee"},           {Method::random, "random"},
};

}  // namespace

std::string_view method_name(Method method) {
    for (const auto& m : kMethods)
        if (m.method == method) return m.name;
    return "?";
}

std::vector<Method> all_methods() {
    std::vector<Method> out;
    for (const auto& m : kMethods) out.push_back(m.method);
    return out;
}

Method parse_method(std::string_view name) {
    std::string norm(name);
    std::transform(norm.begin(), norm.end(), norm.begin(), [](char c) { return c == '_' ? '-' : char(std::tolower(c)); });
    std::string list;
    for (const auto& m : kMethods) {
        if (m.name == norm) return m.method;
        list += (list.empty() ? "" : ", ") + std::string(m.name);
    }
    throw Error("prune", "unknown method '" + std::string(name) + "'; choose one of: " + list);
}

LayerStats::LayerStats(int64_t layer_, int64_t n_expert_)
    : layer(layer_), n_expert(n_expert_), load(static_cast<size_t>(n_expert_), 0),
      gate_sum(static_cast<size_t>(n_expert_), 0.0), norm_sum(gate_sum), reap_sum(gate_sum), tcess_sum(gate_sum),
      easy_sum(gate_sum), max_abs(static_cast<size_t>(n_expert_), 0.0f) {}

void LayerStats::merge(const LayerStats& o) {
    if (o.layer != layer || o.n_expert != n_expert)
        throw InternalError("prune", "merging statistics of different layers");
    n_tokens += o.n_tokens;
    for (size_t e = 0; e < load.size(); ++e) {
        load[e] += o.load[e];
        gate_sum[e] += o.gate_sum[e];
        norm_sum[e] += o.norm_sum[e];
        reap_sum[e] += o.reap_sum[e];
        tcess_sum[e] += o.tcess_sum[e];
        easy_sum[e] += o.easy_sum[e];
        max_abs[e] = std::max(max_abs[e], o.max_abs[e]);
    }
}

std::vector<double> method_scores(Method method, const LayerStats& s, uint64_t seed) {
    const auto E = static_cast<size_t>(s.n_expert);
    std::vector<double> out(E, 0.0);
    auto per_routed = [&](const std::vector<double>& sum) {
        for (size_t e = 0; e < E; ++e) out[e] = s.load[e] > 0 ? sum[e] / static_cast<double>(s.load[e]) : 0.0;
    };
    switch (method) {
        case Method::frequency:
            for (size_t e = 0; e < E; ++e) out[e] = static_cast<double>(s.load[e]);
            break;
        case Method::weighted_frequency: out = s.gate_sum; break;
        case Method::ean: per_routed(s.norm_sum); break;
        case Method::reap: per_routed(s.reap_sum); break;
        case Method::tcess:
            for (size_t e = 0; e < E; ++e) out[e] = s.n_tokens > 0 ? s.tcess_sum[e] / static_cast<double>(s.n_tokens) : 0.0;
            break;
        case Method::easy_ep: out = s.easy_sum; break;
        case Method::random: {
            // seed_seq mixes (seed, layer) so that seeds are not shifted copies of each other
            // (seed + layer would give seed 1 / layer 0 the draws of seed 0 / layer 1).
            const auto layer = static_cast<uint64_t>(s.layer);
            std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(layer),
                              static_cast<uint32_t>(layer >> 32)};
            std::mt19937_64 rng(seq);
            for (size_t e = 0; e < E; ++e) out[e] = static_cast<double>(rng() >> 11) * 0x1.0p-53;
            break;
        }
        case Method::naee: throw InternalError("prune", "NAEE scores come from the subset search");
    }
    return out;
}

ScoreObserver::ScoreObserver(const model::ModelConfig& mc) : stats_(static_cast<size_t>(mc.n_layer)) {
    for (int64_t il = 0; il < mc.n_layer; ++il)
        if (mc.is_moe_layer[static_cast<size_t>(il)]) stats_[static_cast<size_t>(il)] = LayerStats(il, mc.n_expert_at(il));
}

void ScoreObserver::on_router(const model::RouterEvent& ev) {
    LayerStats& s = stats_.at(static_cast<size_t>(ev.layer));
    const int64_t T = ev.logits.rows(), k = ev.selected.cols();
    s.n_tokens += T;
    gate_total_.assign(static_cast<size_t>(T), 0.0);
    pending_.clear();
    for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < k; ++j) {
            const int32_t e = ev.selected(t, j);
            s.tcess_sum[static_cast<size_t>(e)] += ev.logits(t, e);
            gate_total_[static_cast<size_t>(t)] += ev.gates(t, j);
        }
}

void ScoreObserver::on_expert(const model::ExpertEvent& ev) {
    LayerStats& s = stats_.at(static_cast<size_t>(ev.layer));
    const auto e = static_cast<size_t>(ev.expert);
    for (size_t i = 0; i < ev.rows.size(); ++i) {
        const auto out = ev.output.row(static_cast<Eigen::Index>(i));
        const double norm = std::sqrt(out.cast<double>().squaredNorm());
        const double g = ev.gates[i];
        const double total = gate_total_[static_cast<size_t>(ev.rows[i])];
        s.load[e] += 1;
        s.gate_sum[e] += g;
        s.norm_sum[e] += norm;
        s.reap_sum[e] += total > 0 ? g / total * norm : 0.0;
        s.max_abs[e] = std::max(s.max_abs[e], out.cwiseAbs().maxCoeff());
        pending_.push_back({ev.rows[i], ev.expert, g * norm});
    }
}

void ScoreObserver::on_moe_block(const model::MoeBlockEvent& ev) {
    LayerStats& s = stats_.at(static_cast<size_t>(ev.layer));
    const int64_t T = ev.residual.rows();
    std::vector<double> c(static_cast<size_t>(T), 0.0);
    for (int64_t t = 0; t < T; ++t) {
        const Eigen::VectorXd h = ev.residual.row(t).transpose().cast<double>();
        const Eigen::VectorXd hy = h + ev.routed_output.row(t).transpose().cast<double>();
        const double nh = h.norm(), nhy = hy.norm();
        if (nh > 0 && nhy > 0) c[static_cast<size_t>(t)] = std::max(1.0 - h.dot(hy) / (nh * nhy), 0.0);
    }
    for (const Pending& p : pending_) s.easy_sum[static_cast<size_t>(p.expert)] += p.weighted_norm * c[static_cast<size_t>(p.row)];
    pending_.clear();
}

std::vector<LayerStats> ScoreObserver::layers() const {
    std::vector<LayerStats> out;
    for (const LayerStats& s : stats_)
        if (s.n_expert > 0) out.push_back(s);
    return out;
}

double percentile(std::vector<double> values, double q) {
    if (values.empty()) return 0.0;
    std::sort(values.begin(), values.end());
    const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, values.size() - 1);
    return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

std::vector<SuperExpert> find_super_experts(const std::vector<LayerStats>& layers, int64_t n_layer, SuperExpertRule* rule) {
    SuperExpertRule r;
    std::vector<double> all;
    for (const LayerStats& s : layers)
        for (float m : s.max_abs) {
            all.push_back(m);
            r.max_all = std::max(r.max_all, m);
        }
    r.threshold = percentile(all, r.percentile);
    // First 75% of the decoder layers: il < 0.75 * n_layer, i.e. 4 * il < 3 * n_layer.
    r.layer_limit = (3 * n_layer + 3) / 4;
    std::vector<SuperExpert> out;
    for (const LayerStats& s : layers) {
        if (4 * s.layer >= 3 * n_layer) continue;
        for (int64_t e = 0; e < s.n_expert; ++e) {
            const float m = s.max_abs[static_cast<size_t>(e)];
            if (m > r.threshold && m > r.max_all / 10.0f) out.push_back({s.layer, e, m});
        }
    }
    if (rule) *rule = r;
    return out;
}

std::vector<io::TensorSource> layer_stats_tensors(const std::vector<LayerStats>& layers) {
    std::vector<io::TensorSource> out;
    for (const LayerStats& s : layers) {
        const std::string p = "layer." + std::to_string(s.layer) + ".";
        out.push_back(model::i64_tensor(p + "n_tokens", {s.n_tokens}));
        out.push_back(model::i64_tensor(p + "load", s.load));
        out.push_back(model::f64_tensor(p + "gate_sum", s.gate_sum));
        out.push_back(model::f64_tensor(p + "norm_sum", s.norm_sum));
        out.push_back(model::f64_tensor(p + "reap_sum", s.reap_sum));
        out.push_back(model::f64_tensor(p + "tcess_sum", s.tcess_sum));
        out.push_back(model::f64_tensor(p + "easy_sum", s.easy_sum));
        out.push_back(model::f32_vector_tensor(p + "max_abs", s.max_abs));
    }
    return out;
}

std::vector<LayerStats> load_layer_stats(const io::SafetensorsFile& file, const model::ModelConfig& mc) {
    std::vector<LayerStats> out;
    for (int64_t il = 0; il < mc.n_layer; ++il) {
        if (!mc.is_moe_layer[static_cast<size_t>(il)]) continue;
        const int64_t E = mc.n_expert_at(il);
        LayerStats s(il, E);
        const std::string p = "layer." + std::to_string(il) + ".";
        s.n_tokens = model::read_i64(file, p + "n_tokens", 1).front();
        s.load = model::read_i64(file, p + "load", E);
        s.gate_sum = model::read_f64(file, p + "gate_sum", E);
        s.norm_sum = model::read_f64(file, p + "norm_sum", E);
        s.reap_sum = model::read_f64(file, p + "reap_sum", E);
        s.tcess_sum = model::read_f64(file, p + "tcess_sum", E);
        s.easy_sum = model::read_f64(file, p + "easy_sum", E);
        s.max_abs = model::read_f32_exact(file, p + "max_abs", E);
        out.push_back(std::move(s));
    }
    if (file.tensors().size() != out.size() * 8)
        throw Error("calibration", file.path().string() + " holds statistics of other layers than this model's");
    return out;
}

}  // namespace moekit::prune
