// MC-MoE mixed-precision allocation (see mixed_precision.h).
#include "quantize/mixed_precision.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include <Eigen/Core>

#include "core/error.h"
#include "model/arch.h"
#include "model/engine.h"

namespace moekit::quantize {

std::vector<int> allocate_exact(const std::vector<std::vector<double>>& cost, const std::vector<int>& bits, int64_t budget) {
    return allocate_exact_units(cost, std::vector<std::vector<int>>(cost.size(), bits), budget);
}

std::vector<int> allocate_exact_units(const std::vector<std::vector<double>>& cost, const std::vector<std::vector<int>>& unit_bits,
                                      int64_t budget) {
    const std::size_t n = cost.size();
    int64_t min_total = 0;
    for (const auto& b : unit_bits) min_total += *std::min_element(b.begin(), b.end());
    if (min_total > budget)
        throw Error("quantize", "--avg-bits is below the smallest candidate width; nothing fits the budget");
    const double inf = std::numeric_limits<double>::infinity();
    const std::size_t B = static_cast<std::size_t>(budget);
    // best[e][b]: least cost of experts 0..e-1 spending exactly b bits.
    std::vector<std::vector<double>> best(n + 1, std::vector<double>(B + 1, inf));
    std::vector<std::vector<int>> choice(n + 1, std::vector<int>(B + 1, -1));
    best[0][0] = 0;
    for (std::size_t e = 0; e < n; ++e)
        for (std::size_t b = 0; b <= B; ++b) {
            if (best[e][b] == inf) continue;
            const auto& bits = unit_bits[e];
            for (std::size_t c = 0; c < bits.size(); ++c) {
                const std::size_t nb = b + static_cast<std::size_t>(bits[c]);
                if (nb > B) continue;
                const double v = best[e][b] + cost[e][c];
                if (v < best[e + 1][nb]) {
                    best[e + 1][nb] = v;
                    choice[e + 1][nb] = static_cast<int>(c);
                }
            }
        }
    std::size_t bstar = 0;
    for (std::size_t b = 0; b <= B; ++b)
        if (best[n][b] < best[n][bstar]) bstar = b;
    std::vector<int> out(n);
    for (std::size_t e = n; e > 0; --e) {
        const int c = choice[e][bstar];
        out[e - 1] = c;
        bstar -= static_cast<std::size_t>(unit_bits[e - 1][static_cast<std::size_t>(c)]);
    }
    return out;
}

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct QuantExpert {
    RowMatrix gate, up, down;
};

RowMatrix load(const io::Checkpoint& ck, const std::string& name, const IntGrid* grid) {
    const auto& info = *ck.at(name).info;
    std::vector<float> v = ck.read_f32(name);
    if (grid)
        for (int64_t r = 0; r < info.shape[0]; ++r) rtn_row(*grid, v.data() + r * info.shape[1], info.shape[1]);
    return Eigen::Map<RowMatrix>(v.data(), info.shape[0], info.shape[1]);
}

RowMatrix expert_forward(const QuantExpert& q, const model::Matrix& x) {
    RowMatrix a = x * q.gate.transpose(), b = x * q.up.transpose();
    for (int64_t i = 0; i < a.size(); ++i) a.data()[i] = a.data()[i] / (1.0f + std::exp(-a.data()[i])) * b.data()[i];
    return a * q.down.transpose();
}

class ProfileObserver : public model::Observer {
public:
    ProfileObserver(const io::Checkpoint& ck, const model::ArchSpec& arch, const MixedPrecisionOptions& o,
                    std::vector<ExpertProfile>& profiles, std::map<std::pair<int64_t, int64_t>, std::size_t>& index)
        : ck_(ck), arch_(arch), o_(o), profiles_(profiles), index_(index) {}
    uint32_t sites() const override { return model::kSiteExpert | model::kSiteRouter; }
    void on_router(const model::RouterEvent& ev) override {
        layer_tokens_[ev.layer] += ev.tokens.n_tokens();
        if (cached_layer_ != ev.layer) {
            cache_.clear();
            cached_layer_ = ev.layer;
        }
    }
    void on_expert(const model::ExpertEvent& ev) override {
        auto& p = profiles_[index_.at({ev.layer, ev.expert})];
        const int64_t n = ev.input.rows();
        p.tokens += n;
        for (float g : ev.gates) p.gate_mass += g;
        auto& qs = cache_[ev.expert];
        if (qs.empty()) {
            const auto names = arch_.expert_tensors(ev.layer, ev.expert);
            for (int b : o_.candidates) {
                IntGrid g = o_.grid;
                g.bits = b;
                qs.push_back({load(ck_, names.gate, &g), load(ck_, names.up, &g), load(ck_, names.down, &g)});
            }
        }
        for (std::size_t c = 0; c < qs.size(); ++c) {
            const RowMatrix y = expert_forward(qs[c], ev.input);
            p.error[c] += (y - ev.output).squaredNorm();
        }
    }
    std::map<int64_t, int64_t> layer_tokens_;

private:
    const io::Checkpoint& ck_;
    const model::ArchSpec& arch_;
    const MixedPrecisionOptions& o_;
    std::vector<ExpertProfile>& profiles_;
    std::map<std::pair<int64_t, int64_t>, std::size_t>& index_;
    int64_t cached_layer_ = -1;
    std::map<int64_t, std::vector<QuantExpert>> cache_;
};

}  // namespace

std::vector<ExpertProfile> mixed_precision_plan(const io::Checkpoint& ck, const MixedPrecisionOptions& o) {
    if (o.candidates.empty()) throw Error("quantize", "--candidate-bits is empty");
    for (int b : o.candidates)
        if (b < 2 || b > 8) throw Error("quantize", "--candidate-bits must be in 2..8 (got " + std::to_string(b) + ")");
    if (o.calib.data.empty()) throw Error("quantize", "--mixed-precision needs calibration data (--calib FILE[,FILE...])");
    const auto resolved = model::resolve_config(ck.config());
    const model::ModelConfig& c = resolved.config;
    if (!c.n_expert_layer.empty())
        throw Error("quantize", "--mixed-precision: layers with different expert counts are not supported yet");
    std::vector<ExpertProfile> profiles;
    std::map<std::pair<int64_t, int64_t>, std::size_t> index;
    for (int64_t il = 0; il < c.n_layer; ++il)
        if (c.is_moe_layer[static_cast<std::size_t>(il)])
            for (int64_t ie = 0; ie < c.n_expert_at(il); ++ie) {
                index[{il, ie}] = profiles.size();
                ExpertProfile p;
                p.layer = il;
                p.expert = ie;
                p.error.assign(o.candidates.size(), 0.0);
                profiles.push_back(p);
            }
    model::CorpusOptions co = o.calib;
    co.flag = "--calib";
    const model::Corpus corpus = model::load_corpus(ck, c.vocab_size, co);
    const auto batches = model::batch_windows(corpus.windows, o.batch_tokens);
    ProfileObserver obs(ck, *resolved.arch, o, profiles, index);
    const model::Engine engine(ck, model::EngineOptions{.threads = o.threads, .device = o.device});
    model::Observer* list[] = {&obs};
    for (std::size_t b = 0; b < batches.size(); ++b) {
        if (o.progress) o.progress(static_cast<double>(b) / batches.size(), "mixed precision: profiling batch " + std::to_string(b + 1));
        std::vector<std::vector<int32_t>> seqs;
        for (std::size_t w = batches[b].first; w < batches[b].second; ++w) seqs.push_back(corpus.window_ids(w));
        engine.forward_hidden(seqs, list);
    }
    std::vector<std::vector<double>> cost;
    for (auto& p : profiles) {
        const int64_t t = obs.layer_tokens_[p.layer];
        p.frequency = t > 0 ? static_cast<double>(p.tokens) / static_cast<double>(t) : 0.0;
        p.gate_mass = p.tokens > 0 ? p.gate_mass / static_cast<double>(p.tokens) : 0.0;
        std::vector<double> row;
        for (double& e : p.error) {
            e = p.tokens > 0 ? e / static_cast<double>(p.tokens) : 0.0;
            row.push_back(std::pow(p.frequency, o.alpha) * std::pow(p.gate_mass, o.beta) * e);
        }
        cost.push_back(std::move(row));
    }
    const auto budget = static_cast<int64_t>(std::floor(o.avg_bits * static_cast<double>(profiles.size()) + 1e-9));
    const std::vector<int> pick = allocate_exact(cost, o.candidates, budget);
    for (std::size_t e = 0; e < profiles.size(); ++e) profiles[e].bits = o.candidates[static_cast<std::size_t>(pick[e])];
    return profiles;
}

}  // namespace moekit::quantize
