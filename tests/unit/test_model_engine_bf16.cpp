// bf16 compute mode (EngineOptions::compute = kBf16) against the fp32 engine on every fixture:
// most selected experts are the same (near-ties may flip: the fixtures' random routers have many),
// on tokens whose experts are the same in every layer the logits stay within kLogitTol relative
// (max |diff| / max |fp32| over those rows), and over all tokens within kLogitFroTol in the
// Frobenius norm (a flipped token's output legitimately differs a lot); on the demo model the
// perplexity of the golden eval ids moves by less than 0.5 %. Measured values are printed (oneDNN
// 2.6.3, AVX512_BF16; README "Benchmarks"). Skipped without a bf16 backend.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/error.h"
#include "core/gemm_bf16.h"
#include "io/checkpoint.h"
#include "model/engine.h"
#include "model/eval.h"
#include "test_util.h"

namespace fs = std::filesystem;
using moekit::io::Checkpoint;
using namespace moekit::model;

namespace {

const fs::path kData = fs::path(MOEKIT_TEST_DATA);
const std::vector<std::string>& kArchs = moekit::test::kArchFixtures;
// bf16 has an 8-bit mantissa (relative rounding 2^-9 per operand). Measured on the fixtures
// (random weights, 114 tokens): 0.9-5.9e-2 max relative error on tokens routed alike in every layer
// (a flipped token still changes later tokens through attention), 1.2-4.8e-2 Frobenius, and
// 99.3-99.9 % identical selected experts; the tolerances leave ~1.5x headroom.
constexpr double kLogitTol = 1e-1;
constexpr double kLogitFroTol = 7e-2;
constexpr double kMinRoutingAgreement = 0.9;

double rel_err(const Matrix& a, const Matrix& b) {
    return moekit::test::max_rel_err(a.data(), b.data(), static_cast<size_t>(a.size()));
}

double rel_fro(const Matrix& a, const Matrix& b) { return double((a - b).norm()) / double(b.norm()); }

// rel_err over the listed rows only.
double rel_err_rows(const Matrix& a, const Matrix& b, const std::vector<Eigen::Index>& rows) {
    double num = 0.0, den = 0.0;
    for (Eigen::Index t : rows)
        for (Eigen::Index c = 0; c < a.cols(); ++c) {
            num = std::max(num, std::abs(double(a(t, c)) - double(b(t, c))));
            den = std::max(den, std::abs(double(b(t, c))));
        }
    return den > 0.0 ? num / den : num;
}

struct SelectedRecorder : Observer {
    std::map<int64_t, IndexMatrix> selected;
    uint32_t sites() const override { return kSiteRouter; }
    void on_router(const RouterEvent& ev) override { selected[ev.layer] = ev.selected; }
};

struct Outputs {
    Matrix hidden, logits;
    std::map<int64_t, IndexMatrix> selected;
};

Outputs run(const fs::path& dir, const std::vector<std::vector<int32_t>>& seqs, Compute compute) {
    const Checkpoint ckpt = Checkpoint::open(dir);
    EngineOptions options;
    options.compute = compute;
    Engine engine(ckpt, options);
    SelectedRecorder rec;
    Observer* obs[] = {&rec};
    Outputs r;
    r.hidden = engine.forward_hidden(seqs, obs);
    r.logits = engine.logits(r.hidden, 0, r.hidden.rows());
    r.selected = std::move(rec.selected);
    return r;
}

std::vector<std::vector<int32_t>> random_sequences(int64_t vocab, uint32_t seed) {
    return moekit::test::random_sequences(vocab, seed, {64, 33, 17});
}

}  // namespace

class EngineBf16 : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineBf16, LogitsNearFp32) {
    if (!moekit::core::bf16::available()) GTEST_SKIP() << "built without a bf16 GEMM backend";
    const fs::path dir = kData / "fixtures" / GetParam();
    const Checkpoint ckpt = Checkpoint::open(dir);
    const int64_t vocab = Engine(ckpt).config().vocab_size;
    const auto seqs = random_sequences(vocab, 7);
    const Outputs f = run(dir, seqs, Compute::kF32), b = run(dir, seqs, Compute::kBf16);
    int64_t same = 0, total = 0;
    ASSERT_EQ(f.selected.size(), b.selected.size());
    std::vector<bool> token_same(static_cast<size_t>(f.logits.rows()), true);
    for (const auto& [il, sf] : f.selected) {
        const IndexMatrix& sb = b.selected.at(il);
        for (Eigen::Index t = 0; t < sf.rows(); ++t) {
            std::set<int32_t> a(sf.row(t).data(), sf.row(t).data() + sf.cols());
            int64_t here = 0;
            for (Eigen::Index j = 0; j < sb.cols(); ++j) here += static_cast<int64_t>(a.count(sb(t, j)));
            if (here != sf.cols()) token_same[static_cast<size_t>(t)] = false;
            same += here;
            total += sf.cols();
        }
    }
    std::vector<Eigen::Index> rows;
    for (size_t t = 0; t < token_same.size(); ++t)
        if (token_same[t]) rows.push_back(static_cast<Eigen::Index>(t));
    const double agreement = total ? double(same) / double(total) : 1.0;
    const double e_same = rel_err_rows(b.logits, f.logits, rows), e_fro = rel_fro(b.logits, f.logits);
    const double e_all = rel_err(b.logits, f.logits);
    EXPECT_GE(agreement, kMinRoutingAgreement) << GetParam();
    EXPECT_GE(rows.size(), token_same.size() / 2) << GetParam();
    EXPECT_LE(e_same, kLogitTol) << GetParam() << ": logits of tokens with unchanged routing";
    EXPECT_LE(e_fro, kLogitFroTol) << GetParam() << ": logits, Frobenius";
    std::printf("[engine bf16] %-12s selected experts identical %.2f%%; logits rel err: %.2e on the %zu/%zu tokens "
                "routed alike, %.2e Frobenius, %.2e max over all\n",
                GetParam().c_str(), 100.0 * agreement, e_same, rows.size(), token_same.size(), e_fro, e_all);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EngineBf16, ::testing::ValuesIn(kArchs));

TEST(EngineBf16Eval, DemoPerplexityWithinHalfPercent) {
    if (!moekit::core::bf16::available()) GTEST_SKIP() << "built without a bf16 GEMM backend";
    const fs::path tmp = fs::temp_directory_path() / ("moekit_bf16_" + std::to_string(getpid()));
    fs::create_directories(tmp);
    fs::copy_file(kData / "golden" / "demo_eval_ids.bin", tmp / "ids.bin", fs::copy_options::overwrite_existing);
    EvalOptions o;
    o.model_dir = kData.parent_path() / "assets" / "demo-moe";
    o.corpus.data = {{"all", tmp / "ids.bin"}};
    o.corpus.seq_len = 256;
    o.ref_dir = o.model_dir;  // the reference runs fp32
    o.compute = Compute::kBf16;
    const EvalReport r = evaluate(o);
    fs::remove_all(tmp);
    const double ppl = r.total.ppl(), ref_ppl = std::exp(r.total.ref_nll_sum / double(r.total.scored));
    EXPECT_LE(std::abs(ppl / ref_ppl - 1.0), 5e-3);
    double routing = 0;
    for (const auto& ra : r.total.routing) routing += ra.value() / double(r.total.routing.size());
    EXPECT_GE(routing, 0.98);
    EXPECT_EQ(to_json(r)["params"]["compute"], "bf16");
    std::printf("[eval bf16] demo ppl %.4f vs fp32 %.4f (%+.3f%%), KL mean %.2e, top-1 %.2f%%, routing %.2f%%\n", ppl,
                ref_ppl, 100.0 * (ppl / ref_ppl - 1.0), r.total.kl_sum / double(r.total.scored),
                100.0 * double(r.total.top1_agree) / double(r.total.scored), 100.0 * routing);
}

TEST(EngineBf16Eval, UnknownComputeIsAnError) {
    EXPECT_THROW(parse_compute("fp16"), moekit::Error);
    EXPECT_EQ(parse_compute("bf16"), Compute::kBf16);
    EXPECT_STREQ(compute_name(Compute::kF32), "fp32");
}
