// `moekit svd` through the library: the CalibObserver's statistics against a brute-force sum over
// the engine's routed inputs (demo model), and the factored checkpoint in moekit's engine against
// the dense one (bf16 Qwen2-MoE fixture, which has a shared expert: same hidden states up to the
// bf16 rounding of the dense product, and less peak fp32 weight memory: the factors are applied,
// never reconstructed).
#include <gtest/gtest.h>

#include <filesystem>

#include "io/checkpoint.h"
#include "model/engine.h"
#include "svd/calib.h"
#include "svd/svd.h"
#include "test_util.h"

namespace moekit::svd {
namespace {

const std::filesystem::path kRoot = std::filesystem::path(MOEKIT_TEST_DATA) / "..";
const std::filesystem::path kDemo = kRoot / "assets" / "demo-moe";
const std::filesystem::path kQwen2 = std::filesystem::path(MOEKIT_TEST_DATA) / "fixtures" / "qwen2_moe";

std::vector<std::vector<int32_t>> sequences(int32_t vocab) {
    std::vector<std::vector<int32_t>> s(3, std::vector<int32_t>(40));
    for (size_t i = 0; i < s.size(); ++i)
        for (size_t t = 0; t < s[i].size(); ++t) s[i][t] = static_cast<int32_t>((i * 977 + t * 131 + 7) % vocab);
    return s;
}

// Keeps every routed input of one layer's experts.
struct Capture : model::Observer {
    int64_t layer;
    std::vector<model::Matrix> inputs;
    explicit Capture(int64_t l, int64_t n_expert) : layer(l), inputs(static_cast<size_t>(n_expert)) {}
    uint32_t sites() const override { return model::kSiteExpert; }
    void on_expert(const model::ExpertEvent& ev) override {
        if (ev.layer != layer) return;
        model::Matrix& m = inputs[static_cast<size_t>(ev.expert)];
        const auto old = m.rows();
        m.conservativeResize(old + ev.input.rows(), ev.input.cols());
        m.bottomRows(ev.input.rows()) = ev.input;
    }
};

TEST(SvdEngine, CalibStatisticsBruteForce) {
    const io::Checkpoint ckpt = io::Checkpoint::open(kDemo);
    const model::Engine engine(ckpt);
    const model::ModelConfig& mc = engine.config();
    CalibObserver calib(ckpt, engine.arch(), mc);
    Capture cap(2, mc.n_expert);
    model::Observer* const obs[] = {&calib, &cap};
    engine.forward_hidden(sequences(4096), obs);
    const LayerCalib& lc = calib.layers().at(2);
    ASSERT_EQ(lc.layer, 2);
    int64_t checked = 0;
    for (int64_t ie = 0; ie < mc.n_expert; ++ie) {
        const model::Matrix& x = cap.inputs[static_cast<size_t>(ie)];
        const ExpertStats& st = lc.experts[static_cast<size_t>(ie)];
        ASSERT_EQ(st.tokens, x.rows()) << "expert " << ie;
        if (x.rows() == 0) continue;
        const model::ExpertTensorNames names = engine.arch().expert_tensors(2, ie);
        const std::vector<float> wg = ckpt.read_f32(names.gate), wu = ckpt.read_f32(names.up);
        const MatrixD xd = x.cast<double>();
        const MatrixD ad = intermediate(x, wg.data(), wu.data(), mc.d_ff_expert).cast<double>();
        const MatrixD h_in = st.h_in.selfadjointView<Eigen::Lower>(), h_mid = st.h_mid.selfadjointView<Eigen::Lower>();
        EXPECT_LT((h_in - xd.transpose() * xd).norm(), 1e-9 * h_in.norm()) << "expert " << ie;
        EXPECT_LT((h_mid - ad.transpose() * ad).norm(), 1e-9 * h_mid.norm()) << "expert " << ie;
        ++checked;
    }
    EXPECT_GT(checked, 4);
}

// Layer streaming: with the calibration in one engine pass each layer is factorized at its
// on_layer event from complete statistics; with several passes the statistics accumulate over
// every pass first. Both must give the same factors (sums in another order: ~1e-12).
TEST(SvdEngine, OnePassLayerStreamingEqualsAccumulatedPasses) {
    SvdOptions o;
    o.model_dir = kDemo;
    o.ratio = 0.5;
    o.dry_run = true;
    o.threads = 2;
    o.calib.data = {io::DataSource{"en", kRoot / "assets" / "corpus" / "train" / "en.txt"}};
    o.calib.max_tokens = 1024;
    o.calib.seq_len = 128;
    o.batch_tokens = 1 << 20;
    const SvdResult one = svd(o);
    o.batch_tokens = 256;
    const SvdResult many = svd(o);
    EXPECT_EQ(one.calib_passes, 1);
    EXPECT_GT(many.calib_passes, 1);
    ASSERT_EQ(one.layers.size(), many.layers.size());
    double worst = 0;
    for (size_t l = 0; l < one.layers.size(); ++l) {
        EXPECT_EQ(one.layers[l].layer, many.layers[l].layer);
        EXPECT_EQ(one.layers[l].tokens, many.layers[l].tokens);
        for (size_t e = 0; e < one.layers[l].experts.size(); ++e)
            for (int p = 0; p < 3; ++p) {
                const Factors& a = one.layers[l].experts[e].proj[p];
                const Factors& b = many.layers[l].experts[e].proj[p];
                ASSERT_EQ(a.a.size(), b.a.size());
                // A B is unique where singular values are distinct; compare the products' rows.
                const Eigen::Map<const model::Matrix> aa(a.a.data(), a.m, a.r), ab(a.b.data(), a.r, a.n);
                const Eigen::Map<const model::Matrix> ba(b.a.data(), b.m, b.r), bb(b.b.data(), b.r, b.n);
                const model::Matrix wa = aa * ab, wb = ba * bb;
                worst = std::max(worst, static_cast<double>((wa - wb).norm() / wa.norm()));
            }
    }
    EXPECT_LT(worst, 1e-4);
}

TEST(SvdEngine, FactoredRunsLikeDenseWithLessWeightMemory) {
    test::TempDir dir("svd-engine");
    for (const char* method : {"svd-llm", "d2-moe"}) {
        SvdOptions o;
        o.model_dir = kQwen2;
        o.method = method;
        o.ratio = 0.3;
        o.calib.data = io::parse_data_sources((kRoot / "assets" / "corpus" / "train" / "en.txt").string());
        o.calib.max_tokens = 512;
        o.calib.seq_len = 64;
        o.out_dir = dir / (std::string(method) + "-dense");
        const SvdResult dense = svd(o);
        o.format = "factored";
        o.out_dir = dir / (std::string(method) + "-factored");
        const SvdResult fact = svd(o);
        EXPECT_LT(fact.output_tensor_bytes, dense.output_tensor_bytes);
        // Kept fraction: at most the ratio, less by the floor of the rank (rank 3 of [16, 32] experts).
        const double kept = static_cast<double>(fact.kept_params) / static_cast<double>(fact.expert_params);
        EXPECT_LE(kept, 0.3);
        EXPECT_GT(kept, 0.15);

        const io::Checkpoint cd = io::Checkpoint::open(dir / (std::string(method) + "-dense"));
        const io::Checkpoint cf = io::Checkpoint::open(dir / (std::string(method) + "-factored"));
        const model::Engine ed(cd), ef(cf);
        ASSERT_TRUE(ef.config().lowrank_factored);
        EXPECT_EQ(ef.config().lowrank_base, std::string(method) == "d2-moe");
        const model::Matrix hd = ed.forward_hidden(sequences(523)), hf = ef.forward_hidden(sequences(523));
        // bf16 checkpoint: the dense weights are the bf16 rounding of A B.
        EXPECT_LT((hd - hf).norm(), 2e-2 * hd.norm()) << method;
        EXPECT_LT(ef.peak_weight_bytes(), ed.peak_weight_bytes()) << method;
        std::printf("  %s: peak fp32 weight bytes dense %llu, factored %llu; |h_f - h_d| / |h_d| = %.2e\n", method,
                    static_cast<unsigned long long>(ed.peak_weight_bytes()),
                    static_cast<unsigned long long>(ef.peak_weight_bytes()), double((hd - hf).norm() / hd.norm()));
    }
}

}  // namespace
}  // namespace moekit::svd
