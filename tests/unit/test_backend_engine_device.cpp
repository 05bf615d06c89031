// The engine's device path (EngineOptions::device, model/engine_device.cpp) against the CPU
// engine on every architecture fixture and the demo model.
// - Host ops (model/device_ops_host.cpp): run everywhere, so the device orchestration (weight
//   upload, attention/MLA assembly, expert gather/scatter, the routing round trip, observers,
//   the layer-by-layer API, lm_head) is tested in CI: identical selected experts, logits within
//   kHostTol relative, the same observer events.
// - CUDA ops: the same checks on a GPU (fp32 within kCudaF32Tol as the issue asks; bf16 within
//   kCudaBf16Tol of the host bf16 emulation, which rounds exactly as the GPU GEMM does). Without
//   a GPU each CUDA test prints *** SKIPPED and reports itself skipped.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "cuda/device_ops.h"
#include "core/linalg.h"
#include "io/checkpoint.h"
#include "merge/merge.h"
#include "model/device_ops_host.h"
#include "model/engine.h"
#include "model/eval.h"
#include "prune/prune.h"
#include "quantize/quantize.h"
#include "svd/svd.h"
#include "gpu_test_util.h"
#include "test_util.h"

namespace fs = std::filesystem;
using moekit::io::Checkpoint;
using namespace moekit::model;

namespace {

// MOEKIT_TEST_DATA in the environment overrides the build's path: the GPU checks run this binary
// on another machine, from a copy of the repository elsewhere (scripts/gpu_checks.sh).
const fs::path kData = std::getenv("MOEKIT_TEST_DATA") ? fs::path(std::getenv("MOEKIT_TEST_DATA")) : fs::path(MOEKIT_TEST_DATA);
const std::vector<std::string> kModels = {"mixtral", "mixtral_hf4", "qwen2_moe", "qwen3_moe", "olmoe",
                                          "deepseek_v2", "deepseek_v3", "demo"};
// Host ops against the CPU engine: the same fp32 arithmetic up to summation order.
constexpr double kHostTol = 1e-5;
// The GPU parity limits (relative to the largest |logit|).
constexpr double kCudaF32Tol = 1e-4;
constexpr double kCudaBf16Tol = 1e-3;

fs::path model_dir(const std::string& name) {
    return name == "demo" ? kData.parent_path() / "assets" / "demo-moe" : kData / "fixtures" / name;
}

double rel_err(const Matrix& a, const Matrix& b) {
    return moekit::test::max_rel_err(a.data(), b.data(), static_cast<size_t>(a.size()));
}

// Every observer site, recorded in call order.
struct Recorder : Observer {
    uint32_t mask = kSiteRouter | kSiteExpert | kSiteMoeBlock | kSiteLayer;
    std::map<int64_t, IndexMatrix> selected;
    std::map<int64_t, Matrix> router_logits, gates, layer_out, moe_out;
    std::vector<std::string> order;                        // "router 0", "expert 0 3", ...
    std::map<std::pair<int64_t, int64_t>, Matrix> expert_out;  // (layer, expert) -> outputs
    std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> expert_rows;
    uint32_t sites() const override { return mask; }
    void on_router(const RouterEvent& e) override {
        order.push_back("router " + std::to_string(e.layer));
        selected[e.layer] = e.selected;
        router_logits[e.layer] = e.logits;
        gates[e.layer] = e.gates;
    }
    void on_expert(const ExpertEvent& e) override {
        order.push_back("expert " + std::to_string(e.layer) + " " + std::to_string(e.expert) + " " +
                        std::to_string(e.rows.size()));
        auto& out = expert_out[{e.layer, e.expert}];
        if (out.size() == 0) {  // the first event of this expert (kSiteExpert before kSiteAllExperts)
            out = e.output;
            expert_rows[{e.layer, e.expert}].assign(e.rows.begin(), e.rows.end());
        }
    }
    void on_moe_block(const MoeBlockEvent& e) override {
        order.push_back("moe " + std::to_string(e.layer));
        moe_out[e.layer] = e.output;
    }
    void on_layer(const LayerEvent& e) override {
        order.push_back("layer " + std::to_string(e.layer));
        layer_out[e.layer] = e.output;
    }
};

struct Outputs {
    Matrix hidden, logits;
    Recorder rec;
};

std::vector<std::vector<int32_t>> random_sequences(int64_t vocab, uint32_t seed) {
    return moekit::test::random_sequences(vocab, seed, {40, 17, 5});
}

// A copy of model directory `src` in `dst` with config.json's `key` set to `value`.
void copy_with_config(const fs::path& src, const fs::path& dst, const std::string& key, const nlohmann::json& value) {
    for (const auto& entry : fs::directory_iterator(src))
        if (entry.is_regular_file()) fs::copy_file(entry.path(), dst / entry.path().filename(), fs::copy_options::overwrite_existing);
    nlohmann::json config;
    std::ifstream(dst / "config.json") >> config;
    config[key] = value;
    std::ofstream(dst / "config.json") << config.dump(2);
}

Outputs run(const fs::path& dir, const std::vector<std::vector<int32_t>>& seqs,
            std::shared_ptr<moekit::backend::DeviceOps> device, Compute compute = Compute::kF32,
            uint32_t sites = kSiteRouter | kSiteExpert | kSiteMoeBlock | kSiteLayer) {
    const Checkpoint ckpt = Checkpoint::open(dir);
    EngineOptions options;
    options.threads = 2;
    options.device = std::move(device);
    options.compute = compute;
    const Engine engine(ckpt, options);
    Outputs r;
    r.rec.mask = sites;
    Observer* obs[] = {&r.rec};
    r.hidden = engine.forward_hidden(seqs, obs);
    r.logits = engine.logits(r.hidden, 0, r.hidden.rows());
    return r;
}

int64_t vocab_of(const fs::path& dir) {
    const Checkpoint ckpt = Checkpoint::open(dir);
    return Engine(ckpt).config().vocab_size;
}

// Same observer events in the same order, the same selected experts and expert rows, and every
// recorded tensor within tol.
void expect_same(const Outputs& dev, const Outputs& cpu, double tol, const std::string& what) {
    EXPECT_EQ(dev.rec.order, cpu.rec.order) << what;
    ASSERT_EQ(dev.rec.selected.size(), cpu.rec.selected.size()) << what;
    for (const auto& [il, s] : cpu.rec.selected) {
        EXPECT_TRUE(dev.rec.selected.at(il) == s) << what << ": selected experts differ in layer " << il;
        EXPECT_LE(rel_err(dev.rec.router_logits.at(il), cpu.rec.router_logits.at(il)), tol) << what << " layer " << il;
        EXPECT_LE(rel_err(dev.rec.gates.at(il), cpu.rec.gates.at(il)), tol) << what << " layer " << il;
    }
    for (const auto& [key, out] : cpu.rec.expert_out) {
        ASSERT_TRUE(dev.rec.expert_out.count(key)) << what;
        EXPECT_EQ(dev.rec.expert_rows.at(key), cpu.rec.expert_rows.at(key)) << what;
        EXPECT_LE(rel_err(dev.rec.expert_out.at(key), out), tol) << what << " expert " << key.first << "/" << key.second;
    }
    for (const auto& [il, out] : cpu.rec.moe_out) EXPECT_LE(rel_err(dev.rec.moe_out.at(il), out), tol) << what;
    for (const auto& [il, out] : cpu.rec.layer_out) EXPECT_LE(rel_err(dev.rec.layer_out.at(il), out), tol) << what;
    EXPECT_LE(rel_err(dev.hidden, cpu.hidden), tol) << what << ": final hidden states";
    EXPECT_LE(rel_err(dev.logits, cpu.logits), tol) << what << ": logits";
}

}  // namespace

class EngineDevice : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineDevice, HostOpsMatchCpuEngine) {
    const fs::path dir = model_dir(GetParam());
    const auto seqs = random_sequences(vocab_of(dir), 11);
    const Outputs cpu = run(dir, seqs, nullptr);
    const Outputs dev = run(dir, seqs, make_host_ops(2));
    expect_same(dev, cpu, kHostTol, GetParam() + " (host ops)");
    std::printf("[engine device] %-12s host ops vs CPU engine: logits rel err %.2e\n", GetParam().c_str(),
                rel_err(dev.logits, cpu.logits));
}

TEST_P(EngineDevice, CudaFp32MatchesCpuEngine) {
    REQUIRE_GPU();
    const fs::path dir = model_dir(GetParam());
    const auto seqs = random_sequences(vocab_of(dir), 11);
    const Outputs cpu = run(dir, seqs, nullptr);
    const Outputs gpu = run(dir, seqs, moekit::backend::make_cuda_ops(0));
    expect_same(gpu, cpu, kCudaF32Tol, GetParam() + " (cuda fp32)");
    std::printf("[engine device] %-12s cuda fp32 vs CPU engine: logits rel err %.2e\n", GetParam().c_str(),
                rel_err(gpu.logits, cpu.logits));
}

TEST_P(EngineDevice, CudaBf16MatchesHostBf16) {
    REQUIRE_GPU();
    const fs::path dir = model_dir(GetParam());
    const auto seqs = random_sequences(vocab_of(dir), 11);
    const Outputs host = run(dir, seqs, make_host_ops(2), Compute::kBf16);
    const Outputs gpu = run(dir, seqs, moekit::backend::make_cuda_ops(0), Compute::kBf16);
    expect_same(gpu, host, kCudaBf16Tol, GetParam() + " (cuda bf16)");
    std::printf("[engine device] %-12s cuda bf16 vs host bf16: logits rel err %.2e\n", GetParam().c_str(),
                rel_err(gpu.logits, host.logits));
}

INSTANTIATE_TEST_SUITE_P(Models, EngineDevice, ::testing::ValuesIn(kModels));

// kSiteAllExperts makes the device run every expert on every token and hand each one's outputs
// over; the routed output must not change.
TEST(EngineDeviceObservers, AllExpertsSiteOnHostOps) {
    const fs::path dir = model_dir("qwen2_moe");
    const auto seqs = random_sequences(vocab_of(dir), 3);
    const uint32_t sites = kSiteRouter | kSiteAllExperts | kSiteMoeBlock;
    const Outputs cpu = run(dir, seqs, nullptr, Compute::kF32, sites);
    const Outputs dev = run(dir, seqs, make_host_ops(2), Compute::kF32, sites);
    expect_same(dev, cpu, kHostTol, "all-experts site (host ops)");
    ASSERT_FALSE(cpu.rec.expert_out.empty());
    EXPECT_EQ(cpu.rec.expert_out.begin()->second.rows(), cpu.hidden.rows());  // every token
}

// The layer-by-layer API on a device equals forward_hidden on it.
TEST(EngineDeviceSteps, ForwardLayerEqualsForwardHidden) {
    for (const std::string name : {"olmoe", "deepseek_v3"}) {
        const fs::path dir = model_dir(name);
        const Checkpoint ckpt = Checkpoint::open(dir);
        EngineOptions options;
        options.threads = 2;
        options.device = make_host_ops(2);
        const Engine engine(ckpt, options);
        const auto seqs = random_sequences(engine.config().vocab_size, 5);
        const Matrix whole = engine.forward_hidden(seqs);
        const ForwardBatch batch = engine.prepare(seqs);
        Matrix h = engine.embed(batch);
        for (int64_t il = 0; il < engine.config().n_layer; ++il) engine.forward_layer(batch, il, h);
        engine.final_norm(h);
        EXPECT_LE(rel_err(h, whole), kHostTol) << name;
    }
}

// bf16 weights on the device (host emulation) stay close to the fp32 CPU engine.
TEST(EngineDeviceBf16, HostBf16NearFp32) {
    const fs::path dir = model_dir("demo");
    const auto seqs = random_sequences(vocab_of(dir), 9);
    const Outputs cpu = run(dir, seqs, nullptr, Compute::kF32, kSiteRouter);
    const Outputs dev = run(dir, seqs, make_host_ops(2), Compute::kBf16, kSiteRouter);
    int64_t same = 0, total = 0;
    for (const auto& [il, s] : cpu.rec.selected) {
        const IndexMatrix& d = dev.rec.selected.at(il);
        for (Eigen::Index t = 0; t < s.rows(); ++t) {
            std::set<int32_t> a(s.row(t).data(), s.row(t).data() + s.cols());
            for (Eigen::Index j = 0; j < d.cols(); ++j) same += static_cast<int64_t>(a.count(d(t, j)));
            total += s.cols();
        }
    }
    const double agreement = double(same) / double(total);
    EXPECT_GE(agreement, 0.97);
    const double fro = double((dev.logits - cpu.logits).norm()) / double(cpu.logits.norm());
    EXPECT_LE(fro, 3e-2);
    std::printf("[engine device] demo host bf16 vs CPU fp32: selected experts identical %.2f%%, logits Frobenius %.2e\n",
                100.0 * agreement, fro);
}

TEST(EngineDeviceCuda, MakeCudaOpsWithoutGpuIsAClearError) {
    if (!moekit::backend::cuda_devices().empty()) GTEST_SKIP() << "a GPU is present";
    try {
        moekit::backend::make_cuda_ops(0);
        FAIL() << "expected an error";
    } catch (const moekit::Error& e) {
        EXPECT_NE(std::string(e.what()).find("[cuda]"), std::string::npos) << e.what();
    }
}

// Sliding-window attention (no fixture has a window shorter than the test sequences): the Mixtral
// fixture with sliding_window = 8.
TEST(EngineDeviceWindow, SlidingWindowOnHostOps) {
    const moekit::test::TempDir dir("device-window");
    const fs::path tmp = dir.path();
    copy_with_config(model_dir("mixtral"), tmp, "sliding_window", 8);
    const auto seqs = random_sequences(vocab_of(tmp), 13);
    const Outputs cpu = run(tmp, seqs, nullptr);
    const Outputs dev = run(tmp, seqs, make_host_ops(2));
    const Outputs full = run(model_dir("mixtral"), seqs, nullptr);
    expect_same(dev, cpu, kHostTol, "sliding window 8 (host ops)");
    EXPECT_GT(rel_err(cpu.logits, full.logits), 1e-3) << "the window must change the result";
}

// `moekit eval` on a device, scored there (DeviceOps::score_rows): against the demo model with
// top-1 routing as the reference (so KL, top-1 and routing agreement are not trivial), the same
// perplexities, KL, top-1 and routing agreement as the CPU; against itself KL 0.
static void eval_matches_cpu(const std::shared_ptr<moekit::backend::DeviceOps>& device, double tol, const std::string& what) {
    const moekit::test::TempDir dir("device-eval");
    const fs::path ref = dir.path();
    copy_with_config(model_dir("demo"), ref, "num_experts_per_tok", 1);  // top-1 routing

    EvalOptions o;
    o.model_dir = model_dir("demo");
    o.corpus.data = {{"en", kData.parent_path() / "assets" / "corpus" / "eval" / "en.txt"}};
    o.corpus.max_tokens = 1500;
    o.corpus.seq_len = 256;
    o.threads = 2;
    o.ref_dir = ref;
    const EvalReport cpu = evaluate(o);
    o.device = device;
    const EvalReport dev = evaluate(o);
    const double n = double(cpu.total.scored);
    EXPECT_EQ(dev.total.scored, cpu.total.scored);
    EXPECT_NEAR(dev.total.ppl(), cpu.total.ppl(), tol * cpu.total.ppl()) << what;
    EXPECT_NEAR(dev.total.ref_nll_sum / n, cpu.total.ref_nll_sum / n, tol) << what;
    EXPECT_GT(cpu.total.kl_sum / n, 1e-3) << "the reference must differ";
    EXPECT_NEAR(dev.total.kl_sum / n, cpu.total.kl_sum / n, tol * cpu.total.kl_sum / n + 1e-7) << what;
    EXPECT_EQ(dev.total.top1_agree, cpu.total.top1_agree) << what;
    ASSERT_EQ(dev.total.routing.size(), cpu.total.routing.size());
    for (size_t i = 0; i < cpu.total.routing.size(); ++i)
        EXPECT_EQ(dev.total.routing[i].value(), cpu.total.routing[i].value()) << what;
    EXPECT_EQ(to_json(dev)["params"]["device"], device->describe());

    o.ref_dir = o.model_dir;  // itself
    const EvalReport self = evaluate(o);
    EXPECT_LE(self.total.kl_sum / n, 1e-9);
    EXPECT_EQ(self.total.top1_agree, self.total.scored);
    std::printf("[engine device] demo eval on %s: ppl %.6f (CPU %.6f), KL %.6e (CPU %.6e), top-1 %lld/%lld\n",
                device->describe().c_str(), dev.total.ppl(), cpu.total.ppl(), dev.total.kl_sum / n, cpu.total.kl_sum / n,
                (long long)dev.total.top1_agree, (long long)dev.total.scored);
}

TEST(EngineDeviceEval, DemoEvalOnHostOps) { eval_matches_cpu(make_host_ops(2), kHostTol, "host ops"); }

TEST(EngineDeviceEval, DemoEvalOnCuda) {
    REQUIRE_GPU();
    eval_matches_cpu(moekit::backend::make_cuda_ops(0), kCudaF32Tol, "cuda");
}

// The commands that calibrate through the engine make the same decisions when it runs on a
// device: prune (REAP) keeps the same experts, merge (HC-SMoE, which runs every expert on a
// sample) forms the same groups, on the demo model.
TEST(EngineDeviceCommands, PruneAndMergeDecideAlikeOnHostOps) {
    const fs::path demo = model_dir("demo");
    const fs::path calib = kData.parent_path() / "assets" / "corpus" / "train" / "en.txt";
    moekit::prune::PruneOptions p;
    p.model_dir = demo;
    p.keep = "0.5";
    p.dry_run = true;
    p.calib.data = {{"en", calib}};
    p.calib.max_tokens = 2048;
    p.threads = 2;
    const auto pj_cpu = moekit::prune::to_json(moekit::prune::prune(p));
    p.device = make_host_ops(2);
    const auto pj_dev = moekit::prune::to_json(moekit::prune::prune(p));
    EXPECT_EQ(pj_dev["expert_map"], pj_cpu["expert_map"]);
    EXPECT_EQ(pj_dev["timing"]["device"], "host");
    EXPECT_EQ(pj_cpu["timing"]["device"], "cpu");

    moekit::merge::MergeOptions m;
    m.model_dir = demo;
    m.method = "hc-smoe";
    m.experts = "8";
    m.dry_run = true;
    m.calib.data = {{"en", calib}};
    m.calib.max_tokens = 2048;
    m.sample_tokens = 256;
    m.threads = 2;
    const auto mj_cpu = moekit::merge::to_json(moekit::merge::merge(m));
    m.device = make_host_ops(2);
    const auto mj_dev = moekit::merge::to_json(moekit::merge::merge(m));
    ASSERT_EQ(mj_dev["layers"].size(), mj_cpu["layers"].size());
    for (size_t i = 0; i < mj_cpu["layers"].size(); ++i) {
        EXPECT_EQ(mj_dev["layers"][i]["groups"], mj_cpu["layers"][i]["groups"]) << "layer " << i;
        EXPECT_EQ(mj_dev["layers"][i]["load"], mj_cpu["layers"][i]["load"]) << "layer " << i;
    }
}

// Weights kept on the device between passes (EngineOptions::device_weight_budget): with room for
// everything, for part of it (some layers and experts kept, the rest uploaded per pass) and for
// nothing, repeated passes give the CPU engine's results; the kept bytes stay within the budget.
TEST(EngineDeviceCache, KeptWeightsGiveTheSameResults) {
    const fs::path dir = model_dir("qwen2_moe");
    const Checkpoint ckpt = Checkpoint::open(dir);
    const Engine cpu(ckpt, EngineOptions{.threads = 2});
    const auto seqs_a = random_sequences(cpu.config().vocab_size, 21), seqs_b = random_sequences(cpu.config().vocab_size, 22);
    const Matrix ref_a = cpu.forward_hidden(seqs_a), ref_b = cpu.forward_hidden(seqs_b);
    uint64_t full = 0;
    for (const uint64_t budget : {~uint64_t(0) - 1, uint64_t(0), uint64_t(60'000), uint64_t(150'000)}) {
        EngineOptions options;
        options.threads = 2;
        options.device = make_host_ops(2);
        options.device_weight_budget = budget;
        const Engine dev(ckpt, options);
        for (int pass = 0; pass < 2; ++pass) {
            EXPECT_LE(rel_err(dev.forward_hidden(seqs_a), ref_a), kHostTol) << "budget " << budget << " pass " << pass;
            EXPECT_LE(rel_err(dev.forward_hidden(seqs_b), ref_b), kHostTol) << "budget " << budget << " pass " << pass;
        }
        EXPECT_LE(dev.device_weight_bytes(), budget);
        if (budget == ~uint64_t(0) - 1) full = dev.device_weight_bytes();
        if (budget == 0) EXPECT_EQ(dev.device_weight_bytes(), 0u);
        if (budget > 0 && budget < full) EXPECT_GT(dev.device_weight_bytes(), 0u) << "budget " << budget;
        std::printf("[engine device] weight budget %llu: %llu bytes kept\n", (unsigned long long)budget,
                    (unsigned long long)dev.device_weight_bytes());
    }
    EXPECT_GT(full, uint64_t(150'000)) << "the partial budgets must be partial";
    // The host implementation reports no free memory: by default nothing is kept.
    EngineOptions options;
    options.device = make_host_ops(1);
    const Engine dev(ckpt, options);
    dev.forward_hidden(seqs_a);
    EXPECT_EQ(dev.device_weight_bytes(), 0u);
}

// `moekit svd` with the calibration forward on a device and its truncated SVDs through SvdOptions'
// svd_fn (what --device cuda sets to backend::cuda_svd; here a counting wrapper of core::svd):
// the same routed-token counts and tail energies as on the CPU, every SVD through svd_fn.
TEST(EngineDeviceCommands, SvdCalibratesOnHostOpsAndUsesSvdFn) {
    moekit::svd::SvdOptions o;
    o.model_dir = model_dir("demo");
    o.ratio = 0.5;
    o.dry_run = true;
    o.calib.data = {{"en", kData.parent_path() / "assets" / "corpus" / "train" / "en.txt"}};
    o.calib.max_tokens = 1024;
    o.threads = 2;
    const auto cpu = moekit::svd::to_json(moekit::svd::svd(o));
    std::atomic<int> calls{0};
    o.device = make_host_ops(2);
    o.svd_fn = [&calls](const moekit::svd::MatrixD& m) {
        ++calls;
        return moekit::core::svd(m);
    };
    const auto dev = moekit::svd::to_json(moekit::svd::svd(o));
    ASSERT_EQ(dev["layers"].size(), cpu["layers"].size());
    for (size_t i = 0; i < cpu["layers"].size(); ++i) {
        EXPECT_EQ(dev["layers"][i]["tokens"], cpu["layers"][i]["tokens"]);
        for (const char* p : {"gate", "up", "down"})
            EXPECT_NEAR(dev["layers"][i]["tail_energy"][p].get<double>(), cpu["layers"][i]["tail_energy"][p].get<double>(),
                        1e-6 * cpu["layers"][i]["tail_energy"][p].get<double>());
    }
    const int64_t n_expert = Engine(Checkpoint::open(o.model_dir)).config().n_expert;
    EXPECT_EQ(calls.load(), int(cpu["layers"].size()) * n_expert * 3);
    EXPECT_EQ(dev["timing"]["device"], "host");
}

// `moekit quantize --method gptq` with its forward passes (Hessian collection, then each layer
// again with its quantized weights through WeightOverrides, which the device must not keep) on a
// device: the same routed-token counts per expert and the same GPTQ losses and output errors as
// on the CPU, up to rounding.
TEST(EngineDeviceCommands, GptqCalibratesOnHostOps) {
    const moekit::test::TempDir dir("device-gptq");
    moekit::quantize::QuantizeOptions o;
    o.model_dir = model_dir("demo");
    o.format = "hf-fake";
    o.method = "gptq";
    o.bits = 4;
    o.min_expert_tokens = 16;
    o.calib.data = {{"en", kData.parent_path() / "assets" / "corpus" / "train" / "en.txt"}};
    o.calib.max_tokens = 2048;
    o.threads = 2;
    o.out = dir / "cpu";
    const auto cpu = moekit::quantize::to_json(moekit::quantize::quantize(o));
    o.out = dir / "dev";
    o.device = make_host_ops(2);
    const auto dev = moekit::quantize::to_json(moekit::quantize::quantize(o));
    ASSERT_EQ(dev["gptq_experts"].size(), cpu["gptq_experts"].size());
    int64_t fitted = 0;
    for (size_t i = 0; i < cpu["gptq_experts"].size(); ++i) {
        const auto &c = cpu["gptq_experts"][i], &d = dev["gptq_experts"][i];
        EXPECT_EQ(d["tokens"], c["tokens"]) << i;
        EXPECT_EQ(d["starved"], c["starved"]) << i;
        fitted += c["starved"].get<bool>() ? 0 : 1;
        for (const char* k : {"loss_gate", "loss_up", "loss_down"})
            EXPECT_NEAR(d[k].get<double>(), c[k].get<double>(), 1e-3 * c[k].get<double>() + 1e-12) << i << " " << k;
    }
    EXPECT_GT(fitted, 0) << "some experts must be GPTQ'd, not RTN fallbacks";
    ASSERT_EQ(dev["tensors"].size(), cpu["tensors"].size());
    for (size_t i = 0; i < cpu["tensors"].size(); ++i)
        EXPECT_NEAR(dev["tensors"][i]["snr_db"].get<double>(), cpu["tensors"][i]["snr_db"].get<double>(), 0.05)
            << cpu["tensors"][i]["name"];
}

// With WeightOverrides the device keeps no weights (even with room for them): a changed override
// takes effect on the next pass, as on the CPU.
TEST(EngineDeviceCache, OverridesAreNeverKept) {
    const fs::path dir = model_dir("olmoe");
    const Checkpoint ckpt = Checkpoint::open(dir);
    TensorMapOverrides overrides;
    EngineOptions options;
    options.threads = 2;
    options.device = make_host_ops(2);
    options.device_weight_budget = ~uint64_t(0) - 1;
    options.overrides = &overrides;
    const Engine dev(ckpt, options);
    EngineOptions cpu_options;
    cpu_options.threads = 2;
    cpu_options.overrides = &overrides;
    const Engine cpu(ckpt, cpu_options);
    const auto seqs = random_sequences(dev.config().vocab_size, 4);
    const Matrix before = dev.forward_hidden(seqs);
    const std::string name = "model.layers.0.self_attn.o_proj.weight";
    std::vector<float> w = ckpt.read_f32(name);
    for (float& v : w) v *= 0.5f;
    overrides.tensors[name] = w;
    const Matrix after = dev.forward_hidden(seqs);
    EXPECT_GT(rel_err(after, before), 1e-3);
    EXPECT_LE(rel_err(after, cpu.forward_hidden(seqs)), kHostTol);
    EXPECT_EQ(dev.device_weight_bytes(), 0u);
}
