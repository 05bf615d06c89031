// The forward engine against transformers: tests/golden/engine/<arch>.safetensors holds, for
// seeded random sequences run through each fixture by scripts/make_engine_golden.py (transformers
// 5.x, fp32, eager attention), the router outputs of every MoE layer (captured from the model's
// own router module), the final-normed hidden states and the logits.
//
// Error norm: rel(a, b) = max_i |a_i - b_i| / max_i |b_i| over a whole tensor (per layer for
// router tensors). Tolerance 1e-4 for router logits, gates, hidden states and logits; selected
// experts must be identical per token (as sets: DeepSeek's routers use topk(sorted=False)).
// Config variants (sliding windows, llama3/yarn/linear rope, clip_qkv, DeepSeek-V3 without
// rope_interleave) are the fixtures' weights with config.json edited as <variant>.json records.
//
// Also: observers get exactly the sites they asked for; a sequence's results do not depend on
// the rest of the batch; peak weight memory does not grow with depth (a checkpoint with every
// layer duplicated, built in a temp dir); tied embeddings; input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/engine.h"
#include "test_util.h"

namespace fs = std::filesystem;
using moekit::io::Checkpoint;
using namespace moekit::model;

namespace {

const fs::path kData = fs::path(MOEKIT_TEST_DATA);
const std::vector<std::string>& kArchs = moekit::test::kArchFixtures;
constexpr double kTol = 1e-4;

struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
    int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
    int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
    float at(int64_t r, int64_t c) const { return data[static_cast<size_t>(r * cols() + c)]; }
};

struct Golden {
    std::map<std::string, Tensor> tensors;
    const Tensor& operator[](const std::string& name) const {
        auto it = tensors.find(name);
        if (it == tensors.end()) throw std::runtime_error("golden lacks " + name);
        return it->second;
    }
    bool has(const std::string& name) const { return tensors.count(name) > 0; }
};

Golden load_golden(const std::string& arch) {
    moekit::io::SafetensorsFile file(kData / "golden" / "engine" / (arch + ".safetensors"));
    Golden g;
    for (const auto& info : file.tensors()) {
        Tensor t;
        t.shape = info.shape;
        t.data.resize(info.n_elements());
        file.read_f32(info, t.data.data());
        g.tensors.emplace(info.name, std::move(t));
    }
    return g;
}

std::vector<std::vector<int32_t>> golden_sequences(const Golden& g) {
    const Tensor& ids = g["input_ids"];
    const Tensor& lengths = g["seq_lengths"];
    std::vector<std::vector<int32_t>> seqs;
    size_t at = 0;
    for (float len : lengths.data) {
        std::vector<int32_t> s;
        for (int i = 0; i < static_cast<int>(len); ++i) s.push_back(static_cast<int32_t>(ids.data[at++]));
        seqs.push_back(std::move(s));
    }
    return seqs;
}

double rel_err(const float* a, const float* b, size_t n) { return moekit::test::max_rel_err(a, b, n); }

// Records everything the router site reports.
struct RouterRecorder : Observer {
    struct Layer {
        Matrix logits, scores, gates;
        IndexMatrix selected;
    };
    std::map<int64_t, Layer> layers;
    uint32_t sites() const override { return kSiteRouter; }
    void on_router(const RouterEvent& ev) override { layers[ev.layer] = {ev.logits, ev.scores, ev.gates, ev.selected}; }
};

struct Result {
    Matrix hidden, logits;
    std::map<int64_t, RouterRecorder::Layer> router;
    uint64_t peak = 0;
};

Result run(const fs::path& dir, const std::vector<std::vector<int32_t>>& seqs, EngineOptions options = {}) {
    const Checkpoint ckpt = Checkpoint::open(dir);
    Engine engine(ckpt, options);
    RouterRecorder rec;
    Observer* obs[] = {&rec};
    Result r;
    r.hidden = engine.forward_hidden(seqs, obs);
    r.logits = engine.logits(r.hidden, 0, r.hidden.rows());
    r.router = std::move(rec.layers);
    r.peak = engine.peak_weight_bytes();
    return r;
}

// Runs the checkpoint in `dir` on golden `arch`'s sequences and compares everything it holds.
void check_golden(const std::string& arch, const fs::path& dir) {
    const Golden g = load_golden(arch);
    const auto seqs = golden_sequences(g);
    const Result r = run(dir, seqs);
    const int64_t T = g["input_ids"].rows();
    ASSERT_EQ(r.hidden.rows(), T);

    double worst_router = 0.0, worst_gate = 0.0;
    size_t n_moe = 0;
    for (const auto& [name, tensor] : g.tensors) {
        if (name.rfind("layer", 0) != 0 || name.find(".router_logits") == std::string::npos) continue;
        const int64_t il = std::stoll(name.substr(5, name.find('.') - 5));
        const std::string p = "layer" + std::to_string(il) + ".";
        ++n_moe;
        ASSERT_TRUE(r.router.count(il)) << arch << ": no router event for MoE layer " << il;
        const auto& got = r.router.at(il);
        const Tensor& logits = g[p + "router_logits"];
        const Tensor& sel = g[p + "selected"];
        const Tensor& gates = g[p + "gates"];
        ASSERT_EQ(got.logits.rows(), T);
        ASSERT_EQ(got.logits.cols(), logits.cols());
        ASSERT_EQ(got.selected.cols(), sel.cols());
        const double e_logits = rel_err(got.logits.data(), logits.data.data(), logits.data.size());
        worst_router = std::max(worst_router, e_logits);
        EXPECT_LE(e_logits, kTol) << arch << " layer " << il << " router logits";

        // Selected experts as sets; gates compared per (token, expert).
        double gmax = 0.0, gdiff = 0.0;
        for (int64_t t = 0; t < T; ++t) {
            std::map<int, float> want, have;
            for (int64_t j = 0; j < sel.cols(); ++j) {
                want[static_cast<int>(sel.at(t, j))] = gates.at(t, j);
                have[got.selected(t, j)] = got.gates(t, j);
            }
            std::set<int> ws, hs;
            for (auto& [e, v] : want) ws.insert(e);
            for (auto& [e, v] : have) hs.insert(e);
            ASSERT_EQ(ws, hs) << arch << " layer " << il << " token " << t << ": selected experts differ";
            for (auto& [e, v] : want) {
                gmax = std::max(gmax, std::abs(double(v)));
                gdiff = std::max(gdiff, std::abs(double(v) - double(have[e])));
            }
        }
        const double e_gates = gmax > 0 ? gdiff / gmax : gdiff;
        worst_gate = std::max(worst_gate, e_gates);
        EXPECT_LE(e_gates, kTol) << arch << " layer " << il << " gates";
    }
    EXPECT_EQ(n_moe, r.router.size()) << arch << ": router events for layers the golden has no MoE for";
    EXPECT_GT(n_moe, 0u);

    const Tensor& hidden = g["hidden"];
    const double e_hidden = rel_err(r.hidden.data(), hidden.data.data(), hidden.data.size());
    EXPECT_LE(e_hidden, kTol) << arch << " final hidden";
    double e_logits = -1.0;
    if (g.has("logits")) {
        const Tensor& logits = g["logits"];
        ASSERT_EQ(r.logits.cols(), logits.cols());
        e_logits = rel_err(r.logits.data(), logits.data.data(), logits.data.size());
        EXPECT_LE(e_logits, kTol) << arch << " logits";
    }
    std::printf("[engine golden] %-22s router_logits %.2e  gates %.2e  hidden %.2e  logits %.2e\n", arch.c_str(),
                worst_router, worst_gate, e_hidden, e_logits);
}

class EngineGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineGolden, MatchesTransformers) { check_golden(GetParam(), kData / "fixtures" / GetParam()); }

INSTANTIATE_TEST_SUITE_P(Fixtures, EngineGolden, ::testing::ValuesIn(kArchs),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// The same Mixtral weights with a transformers 4.x config.json (top-level rope_theta, no
// rope_parameters) give the same results.
TEST(EngineGolden4x, MixtralHf4ConfigMatchesTransformers) { check_golden("mixtral", kData / "fixtures" / "mixtral_hf4"); }

// ---- observers --------------------------------------------------------------------------

struct SiteCounter : Observer {
    uint32_t mask;
    explicit SiteCounter(uint32_t m) : mask(m) {}
    uint32_t sites() const override { return mask; }
    std::map<int64_t, RouterRecorder::Layer> router;
    struct Ev {
        int64_t expert;
        std::vector<int64_t> rows;
        Matrix input, output;
        std::vector<float> gates;
    };
    std::map<int64_t, std::vector<Ev>> experts;  // per layer
    std::map<int64_t, Matrix> moe_routed, moe_input, moe_output;
    std::vector<int64_t> layers;
    void on_router(const RouterEvent& ev) override {
        router[ev.layer] = {ev.logits, ev.scores, ev.gates, ev.selected};
    }
    void on_expert(const ExpertEvent& ev) override {
        experts[ev.layer].push_back({ev.expert, std::vector<int64_t>(ev.rows.begin(), ev.rows.end()), ev.input,
                                     ev.output, std::vector<float>(ev.gates.begin(), ev.gates.end())});
    }
    void on_moe_block(const MoeBlockEvent& ev) override {
        moe_routed[ev.layer] = ev.routed_output;
        moe_input[ev.layer] = ev.input;
        moe_output[ev.layer] = ev.output;
    }
    void on_layer(const LayerEvent& ev) override { layers.push_back(ev.layer); }
};

TEST(EngineObservers, SitesDeliverExactlyWhatWasAsked) {
    for (const std::string arch : {"qwen2_moe", "deepseek_v3", "mixtral"}) {
        SCOPED_TRACE(arch);
        const Golden g = load_golden(arch);
        const auto seqs = golden_sequences(g);
        const Checkpoint ckpt = Checkpoint::open(kData / "fixtures" / arch);
        Engine engine(ckpt);
        const auto& mc = engine.config();
        SiteCounter routed(kSiteRouter | kSiteExpert | kSiteMoeBlock);
        SiteCounter all(kSiteAllExperts);
        SiteCounter layer_only(kSiteLayer);
        SiteCounter nothing(0);
        Observer* obs[] = {&routed, &all, &layer_only, &nothing};
        const Matrix hidden = engine.forward_hidden(seqs, obs);
        const int64_t T = hidden.rows(), k = mc.n_expert_used, E = mc.n_expert;

        EXPECT_TRUE(nothing.router.empty() && nothing.experts.empty() && nothing.moe_routed.empty() && nothing.layers.empty());
        EXPECT_TRUE(all.router.empty() && all.moe_routed.empty() && all.layers.empty());
        EXPECT_TRUE(layer_only.router.empty() && layer_only.experts.empty());
        std::vector<int64_t> want_layers(static_cast<size_t>(mc.n_layer));
        for (int64_t i = 0; i < mc.n_layer; ++i) want_layers[static_cast<size_t>(i)] = i;
        EXPECT_EQ(layer_only.layers, want_layers);
        EXPECT_TRUE(routed.layers.empty());
        EXPECT_EQ(static_cast<int64_t>(routed.router.size()), mc.n_moe_layer());

        for (const auto& [il, rl] : routed.router) {
            SCOPED_TRACE("layer " + std::to_string(il));
            // Routed expert events: rows sum to T*k and match the router's selection and gates.
            const auto& evs = routed.experts.at(il);
            int64_t total = 0;
            std::set<int64_t> seen;
            Matrix rebuilt = Matrix::Zero(T, hidden.cols());
            const Matrix& x = routed.moe_input.at(il);
            for (const auto& ev : evs) {
                EXPECT_TRUE(seen.insert(ev.expert).second) << "expert " << ev.expert << " reported twice";
                ASSERT_EQ(ev.input.rows(), static_cast<int64_t>(ev.rows.size()));
                ASSERT_EQ(ev.output.rows(), static_cast<int64_t>(ev.rows.size()));
                ASSERT_EQ(ev.gates.size(), ev.rows.size());
                total += static_cast<int64_t>(ev.rows.size());
                for (size_t i = 0; i < ev.rows.size(); ++i) {
                    const int64_t t = ev.rows[i];
                    bool found = false;
                    for (int64_t j = 0; j < k; ++j)
                        if (rl.selected(t, j) == ev.expert) {
                            found = true;
                            EXPECT_EQ(ev.gates[i], rl.gates(t, j));
                        }
                    EXPECT_TRUE(found) << "row " << t << " not routed to expert " << ev.expert;
                    EXPECT_EQ(ev.input.row(static_cast<Eigen::Index>(i)), x.row(t));
                    rebuilt.row(t) += ev.gates[i] * ev.output.row(static_cast<Eigen::Index>(i));
                }
            }
            EXPECT_EQ(total, T * k);
            EXPECT_LE(rel_err(rebuilt.data(), routed.moe_routed.at(il).data(), static_cast<size_t>(rebuilt.size())), 1e-6);

            // All-experts events: n_expert of them, every row, gates 0 off the routed rows, and
            // outputs that agree with the routed events on the routed rows.
            const auto& aevs = all.experts.at(il);
            ASSERT_EQ(static_cast<int64_t>(aevs.size()), E);
            for (const auto& ev : aevs) {
                ASSERT_EQ(static_cast<int64_t>(ev.rows.size()), T);
                ASSERT_EQ(ev.output.rows(), T);
                ASSERT_EQ(ev.input.rows(), T);
                int64_t nonzero = 0;
                for (int64_t t = 0; t < T; ++t) nonzero += ev.gates[static_cast<size_t>(t)] != 0.0f;
                const auto it = std::find_if(evs.begin(), evs.end(), [&](const auto& r) { return r.expert == ev.expert; });
                EXPECT_EQ(nonzero, it == evs.end() ? 0 : static_cast<int64_t>(it->rows.size()));
                if (it != evs.end())
                    for (size_t i = 0; i < it->rows.size(); ++i) {
                        const auto a = ev.output.row(it->rows[i]);
                        const auto b = it->output.row(static_cast<Eigen::Index>(i));
                        EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-5f * std::max(1.0f, b.cwiseAbs().maxCoeff()));
                        EXPECT_EQ(ev.gates[static_cast<size_t>(it->rows[i])], it->gates[i]);
                    }
            }
        }
        // The all-experts run changes nothing in the result.
        Observer* none[] = {&nothing};
        const Matrix again = engine.forward_hidden(seqs, none);
        EXPECT_LE(rel_err(again.data(), hidden.data(), static_cast<size_t>(hidden.size())), 1e-6);
    }
}

// ---- batch independence -------------------------------------------------------------------

TEST(EngineBatch, SequenceResultsDoNotDependOnTheBatch) {
    for (const std::string arch : {"qwen3_moe", "deepseek_v2", "olmoe"}) {
        SCOPED_TRACE(arch);
        const auto seqs = golden_sequences(load_golden(arch));
        const fs::path dir = kData / "fixtures" / arch;
        const Result together = run(dir, seqs);
        const Result reversed = run(dir, {seqs[2], seqs[1], seqs[0]}, EngineOptions{1});
        int64_t row = 0;
        std::vector<int64_t> rev_begin(seqs.size());
        int64_t acc = 0;
        for (size_t s = seqs.size(); s-- > 0;) {
            rev_begin[s] = acc;
            acc += static_cast<int64_t>(seqs[s].size());
        }
        for (size_t s = 0; s < seqs.size(); ++s) {
            const auto n = static_cast<int64_t>(seqs[s].size());
            const Result alone = run(dir, {seqs[s]});
            for (const Result* other : {&alone, &reversed}) {
                const int64_t o = other == &alone ? 0 : rev_begin[s];
                const Matrix a = together.hidden.middleRows(row, n), b = other->hidden.middleRows(o, n);
                EXPECT_LE(rel_err(a.data(), b.data(), static_cast<size_t>(a.size())), 1e-5) << "sequence " << s;
                for (const auto& [il, layer] : together.router)
                    for (int64_t t = 0; t < n; ++t) {
                        std::set<int> x, y;
                        for (int64_t j = 0; j < layer.selected.cols(); ++j) {
                            x.insert(layer.selected(row + t, j));
                            y.insert(other->router.at(il).selected(o + t, j));
                        }
                        EXPECT_EQ(x, y) << "sequence " << s << " layer " << il << " token " << t;
                    }
            }
            row += n;
        }
    }
}

// ---- checkpoints built in a temp dir --------------------------------------------------------

struct TempDir {
    fs::path path;
    TempDir() {
        static std::atomic<int> counter{0};
        path = fs::temp_directory_path() /
               ("moekit_engine_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// Writes dst/config.json (edited) and dst/model.safetensors with, for each source tensor, the
// names `rename` returns (empty: dropped), bytes copied unchanged.
void derive_checkpoint(const Checkpoint& src, const fs::path& dst,
                       const std::function<void(nlohmann::ordered_json&)>& edit_config,
                       const std::function<std::vector<std::string>(const std::string&)>& rename) {
    nlohmann::ordered_json cfg = src.config().json();
    edit_config(cfg);
    std::ofstream(dst / "config.json") << cfg.dump(2);
    std::vector<moekit::io::TensorSource> sources;
    for (const auto& [name, entry] : src.tensors())
        for (const std::string& out : rename(name)) {
            const auto bytes = src.bytes(name);
            sources.push_back({out, entry.info->dtype, entry.info->shape, entry.info->nbytes(),
                               [bytes](std::byte* d) { std::copy(bytes.begin(), bytes.end(), d); }});
        }
    moekit::io::write_safetensors(dst / "model.safetensors", sources);
}

// "model.layers.{il}.rest" -> il, or -1.
int64_t layer_of(const std::string& name, std::string* rest = nullptr) {
    const std::string p = "model.layers.";
    if (name.rfind(p, 0) != 0) return -1;
    const size_t dot = name.find('.', p.size());
    if (rest) *rest = name.substr(dot + 1);
    return std::stoll(name.substr(p.size(), dot - p.size()));
}

// Config variants (scripts/make_engine_golden.py VARIANTS): the base fixture's weights with
// config.json fields replaced, as recorded in tests/golden/engine/<variant>.json.
class EngineGoldenVariant : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineGoldenVariant, MatchesTransformers) {
    const std::string name = GetParam();
    nlohmann::json meta;
    std::ifstream(kData / "golden" / "engine" / (name + ".json")) >> meta;
    const Checkpoint src = Checkpoint::open(kData / "fixtures" / meta["base_fixture"].get<std::string>());
    TempDir tmp;
    derive_checkpoint(
        src, tmp.path,
        [&](nlohmann::ordered_json& cfg) {
            for (const auto& [key, value] : meta["config_overrides"].items()) cfg[key] = nlohmann::ordered_json::parse(value.dump());
        },
        [](const std::string& n) { return std::vector<std::string>{n}; });
    check_golden(name, tmp.path);
}

INSTANTIATE_TEST_SUITE_P(Variants, EngineGoldenVariant,
                         ::testing::Values("mixtral_sliding_llama3", "qwen2_moe_sliding", "qwen3_moe_yarn",
                                           "olmoe_clip_linear", "deepseek_v3_rope_half"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(EngineMemory, PeakWeightsDoNotGrowWithDepth) {
    // Approach: every fp32 weight buffer the engine holds is allocated through a counting
    // allocator (model/engine_weights.h), so Engine::peak_weight_bytes() is the high-water mark
    // of bytes actually allocated for weights. A checkpoint with every decoder layer duplicated
    // (2 x n_layer, same layer sizes) must reach the same peak as the original: layer l's
    // weights are freed before layer l + 1 is loaded. The peak must also stay below one layer's
    // full fp32 weights plus the final norm, i.e. far from the model's total.
    for (const std::string arch : {"mixtral", "qwen2_moe"}) {
        SCOPED_TRACE(arch);
        const fs::path dir = kData / "fixtures" / arch;
        const Checkpoint src = Checkpoint::open(dir);
        const int64_t n_layer = src.config().json()["num_hidden_layers"].get<int64_t>();
        TempDir tmp;
        derive_checkpoint(
            src, tmp.path,
            [&](nlohmann::ordered_json& cfg) {
                cfg["num_hidden_layers"] = 2 * n_layer;
                if (cfg.contains("mlp_only_layers")) {
                    auto layers = cfg["mlp_only_layers"];
                    for (const auto& l : cfg["mlp_only_layers"]) layers.push_back(l.get<int64_t>() + n_layer);
                    cfg["mlp_only_layers"] = layers;
                }
                if (cfg.contains("layer_types")) {
                    auto types = cfg["layer_types"];
                    for (const auto& t : cfg["layer_types"]) types.push_back(t);
                    cfg["layer_types"] = types;
                }
            },
            [&](const std::string& name) -> std::vector<std::string> {
                std::string rest;
                const int64_t il = layer_of(name, &rest);
                if (il < 0) return {name};
                return {name, "model.layers." + std::to_string(il + n_layer) + "." + rest};
            });

        // fp32 bytes per layer and of the final norm, from the checkpoint's shapes.
        std::map<int64_t, uint64_t> layer_bytes;
        uint64_t total = 0;
        for (const auto& [name, entry] : src.tensors()) {
            const int64_t il = layer_of(name);
            if (il >= 0) layer_bytes[il] += entry.info->n_elements() * 4;
            if (il >= 0) total += entry.info->n_elements() * 4;
        }
        uint64_t max_layer = 0;
        for (auto& [il, b] : layer_bytes) max_layer = std::max(max_layer, b);
        const uint64_t norm_bytes = src.at("model.norm.weight").info->n_elements() * 4;

        const auto seqs = golden_sequences(load_golden(arch));
        const Result one = run(dir, seqs);
        const Result two = run(tmp.path, seqs);
        std::printf("[engine memory] %-10s peak %llu B (1x layers), %llu B (2x layers); largest layer %llu B, all layers %llu B\n",
                    arch.c_str(), (unsigned long long)one.peak, (unsigned long long)two.peak,
                    (unsigned long long)max_layer, (unsigned long long)total);
        EXPECT_GT(one.peak, 0u);
        EXPECT_LE(two.peak, one.peak + max_layer);  // the brief's bound
        EXPECT_EQ(two.peak, one.peak);              // what layer streaming actually gives
        EXPECT_LE(one.peak, max_layer + norm_bytes);
        EXPECT_LT(one.peak, total);
    }
}

TEST(EngineTied, TiedEmbeddingsUseTheEmbeddingTable) {
    const fs::path dir = kData / "fixtures" / "mixtral";
    const Checkpoint src = Checkpoint::open(dir);
    TempDir tmp;
    derive_checkpoint(
        src, tmp.path, [](nlohmann::ordered_json& cfg) { cfg["tie_word_embeddings"] = true; },
        [](const std::string& name) -> std::vector<std::string> {
            if (name == "lm_head.weight") return {};
            return {name};
        });
    const auto seqs = golden_sequences(load_golden("mixtral"));
    const Result r = run(tmp.path, seqs);
    const auto embed = src.read_f32("model.embed_tokens.weight");
    const int64_t d = r.hidden.cols();
    const Eigen::Map<const Matrix> E(embed.data(), static_cast<Eigen::Index>(embed.size() / d), d);
    const Matrix want = r.hidden * E.topRows(r.logits.cols()).transpose();
    EXPECT_LE(rel_err(r.logits.data(), want.data(), static_cast<size_t>(want.size())), 1e-6);
}

TEST(EngineLogits, BlockConversionMatchesCachedHead) {
    const auto seqs = golden_sequences(load_golden("deepseek_v3"));
    const fs::path dir = kData / "fixtures" / "deepseek_v3";
    EngineOptions no_cache;
    no_cache.lm_head_cache_max_bytes = 0;
    const Result cached = run(dir, seqs);
    const Result blocks = run(dir, seqs, no_cache);
    EXPECT_LE(rel_err(blocks.logits.data(), cached.logits.data(), static_cast<size_t>(cached.logits.size())), 1e-6);

    const Checkpoint ckpt = Checkpoint::open(dir);
    Engine engine(ckpt, no_cache);
    const Matrix part = engine.logits(cached.hidden, 5, 7);
    ASSERT_EQ(part.rows(), 7);
    EXPECT_LE(rel_err(Matrix(part).data(), Matrix(cached.logits.middleRows(5, 7)).data(), static_cast<size_t>(part.size())),
              1e-6);
    EXPECT_EQ(engine.logits(cached.hidden, 3, 0).rows(), 0);
}

// ---- errors ---------------------------------------------------------------------------------

void expect_engine_error(const std::function<void()>& fn, const std::string& needle) {
    try {
        fn();
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const moekit::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("[engine]"), std::string::npos) << msg;
        EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
}

TEST(EngineErrors, BadInputsAreUserErrors) {
    const Checkpoint ckpt = Checkpoint::open(kData / "fixtures" / "olmoe");
    Engine engine(ckpt);
    const int32_t vocab = static_cast<int32_t>(engine.config().vocab_size);
    expect_engine_error([&] { engine.forward_hidden({}); }, "no sequences");
    expect_engine_error([&] { engine.forward_hidden({{1, 2}, {}}); }, "sequence 1 is empty");
    expect_engine_error([&] { engine.forward_hidden({{1, vocab}}); }, std::to_string(vocab));
    expect_engine_error([&] { engine.forward_hidden({{-3}}); }, "-3");
    const Matrix hidden = engine.forward_hidden({{1, 2, 3}});
    expect_engine_error([&] { engine.logits(hidden, 2, 2); }, "outside hidden");
    expect_engine_error([&] { engine.logits(Matrix(2, 3), 0, 1); }, "columns");
}

}  // namespace
