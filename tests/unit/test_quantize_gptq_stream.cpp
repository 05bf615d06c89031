// Streamed sequential GPTQ (gptq_model: hidden states kept between layers, each layer re-run with
// its quantized weights through model::WeightOverrides) against the implementation it replaced:
// for every MoE layer, write the tensors quantized so far to a fake-quantized F32 checkpoint, run
// the whole model from the embedding on it, collect the layer's routed-expert inputs, GPTQ. Both
// must give the same quantized tensors bit for bit (same per-batch computations in the same
// order), on fixtures with a dense layer first (DeepSeek-V2, MLA + shared experts) and a dense
// layer between MoE layers (Qwen2-MoE), for every Hessian mode.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <unistd.h>

#include "io/checkpoint.h"
#include "io/checkpoint_edit.h"
#include "model/arch.h"
#include "model/engine.h"
#include "quantize/gptq_model.h"
#include "quantize/rtn.h"

using namespace moekit;
using namespace moekit::quantize;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = fs::path(MOEKIT_TEST_DATA) / "fixtures";

bool in_layer(const std::string& name, int64_t il) { return name.rfind("model.layers." + std::to_string(il) + ".", 0) == 0; }

// The re-forward-from-scratch reference (the pre-streaming gptq_model, minus reporting).
std::map<std::string, std::vector<float>> reforward_reference(const io::Checkpoint& ck, const std::vector<std::string>& rtn_names,
                                                              const GptqModelOptions& o, const fs::path& scratch) {
    const auto resolved = model::resolve_config(ck.config());
    const model::ModelConfig& c = resolved.config;
    model::CorpusOptions co = o.calib;
    const model::Corpus corpus = model::load_corpus(ck, c.vocab_size, co);
    const auto batches = model::batch_windows(corpus.windows, o.batch_tokens);
    std::map<std::string, std::vector<float>> done;
    auto apply_rtn = [&](auto pred) {
        for (const auto& name : rtn_names)
            if (pred(name) && !done.count(name)) {
                std::vector<float> v = ck.read_f32(name);
                o.rtn(name, v);
                done[name] = std::move(v);
            }
    };
    apply_rtn([&](const std::string& n) { return n.rfind("model.layers.", 0) != 0; });
    for (int64_t il = 0; il < c.n_layer; ++il) {
        if (!c.is_moe_layer[static_cast<std::size_t>(il)]) {
            apply_rtn([&](const std::string& n) { return in_layer(n, il); });
            continue;
        }
        io::CheckpointEdit edit;
        for (const auto& [name, v] : done) {
            io::TensorSource s;
            s.name = name;
            s.dtype = core::DType::F32;
            s.shape = ck.at(name).info->shape;
            s.nbytes = v.size() * 4;
            const std::vector<float>* data = &v;
            s.fill = [data](std::byte* dst) { std::memcpy(dst, data->data(), data->size() * 4); };
            edit.put.push_back(std::move(s));
        }
        const fs::path dir = scratch / ("layer" + std::to_string(il));
        io::write_checkpoint(ck, edit, dir, io::WriteOptions{true});
        const io::Checkpoint cur = io::Checkpoint::open(dir);
        GptqLayerInputs obs(il, c.n_expert_at(il), c.d_model, o.hessian == "layer");
        {
            const model::Engine engine(cur, model::EngineOptions{o.threads});
            model::Observer* list[] = {&obs};
            for (const auto& [w0, w1] : batches) {
                std::vector<std::vector<int32_t>> seqs;
                for (std::size_t w = w0; w < w1; ++w) seqs.push_back(corpus.window_ids(w));
                engine.forward_hidden(seqs, list);
            }
        }
        gptq_moe_layer(ck, *resolved.arch, c, il, obs, o, done);
        apply_rtn([&](const std::string& n) { return in_layer(n, il); });
    }
    return done;
}

struct GptqCase {
    io::Checkpoint ck;
    std::vector<std::string> rtn_names;
    GptqModelOptions o;
};

GptqCase make_setup(const std::string& fixture, const fs::path& tmp, const std::string& hessian) {
    GptqCase s{io::Checkpoint::open(kFixtures / fixture), {}, {}};
    const auto resolved = model::resolve_config(s.ck.config());
    const model::ModelConfig& c = resolved.config;
    std::set<std::string> experts;
    for (int64_t il = 0; il < c.n_layer; ++il)
        if (c.is_moe_layer[static_cast<std::size_t>(il)])
            for (int64_t ie = 0; ie < c.n_expert_at(il); ++ie) {
                const auto n = resolved.arch->expert_tensors(il, ie);
                experts.insert({n.gate, n.up, n.down});
            }
    std::set<std::string> routers;
    for (int64_t il = 0; il < c.n_layer; ++il) routers.insert(resolved.arch->router_weight(il));
    std::map<std::string, int64_t> cols;
    // quantize.cpp's selection: 2-D weights except norms, routers, shared-expert gates.
    for (const auto& [name, e] : s.ck.tensors()) {
        const bool weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
        if (!weight || e.info->shape.size() != 2 || name.find("norm") != std::string::npos || experts.count(name)) continue;
        if (routers.count(name) || name.find("shared_expert_gate") != std::string::npos) continue;
        s.rtn_names.push_back(name);
        cols[name] = e.info->shape[1];
    }
    // Calibration ids: 7 windows of 24 tokens in batches of at most 64 tokens (3 batches + 1),
    // so the hidden states of several batches are carried between layers.
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(c.vocab_size) - 1);
    std::vector<int32_t> ids(7 * 24);
    for (auto& v : ids) v = id(rng);
    const fs::path bin = tmp / "calib.bin";
    std::ofstream(bin, std::ios::binary).write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * 4));
    s.o.calib.data = {io::DataSource{"calib", bin}};
    s.o.calib.seq_len = 24;
    s.o.batch_tokens = 64;
    s.o.hessian = hessian;
    s.o.min_expert_tokens = 4;
    s.o.gptq.grid = IntGrid{3, 16, hessian != "agq"};
    s.o.threads = 2;
    const IntGrid grid = s.o.gptq.grid;
    s.o.rtn = [grid, cols](const std::string& n, std::vector<float>& v) {
        const int64_t k = cols.at(n);
        for (int64_t r = 0; r < static_cast<int64_t>(v.size()) / k; ++r) rtn_row(grid, v.data() + r * k, k);
    };
    return s;
}

}  // namespace

TEST(QuantizeGptqStream, EqualsReforwardReference) {
    const fs::path tmp = fs::temp_directory_path() / ("moekit-gptq-stream-" + std::to_string(::getpid()));
    fs::create_directories(tmp);
    for (const std::string fixture : {"deepseek_v2", "qwen2_moe"})
        for (const std::string hessian : {"expert", "agq", "layer"}) {
            SCOPED_TRACE(fixture + " " + hessian);
            GptqCase s = make_setup(fixture, tmp, hessian);
            const auto ref = reforward_reference(s.ck, s.rtn_names, s.o, tmp / "ref");
            const GptqModelResult res = gptq_model(s.ck, s.rtn_names, s.o);
            ASSERT_EQ(res.weights.size(), ref.size());
            int64_t gptq_experts = 0;
            for (const auto& e : res.experts) gptq_experts += e.starved ? 0 : 1;
            EXPECT_GT(gptq_experts, 0);  // some experts really went through GPTQ, not only RTN
            double max_diff = 0;
            for (const auto& [name, v] : ref) {
                const auto it = res.weights.find(name);
                ASSERT_NE(it, res.weights.end()) << name;
                ASSERT_EQ(it->second.size(), v.size()) << name;
                for (std::size_t i = 0; i < v.size(); ++i)
                    max_diff = std::max(max_diff, static_cast<double>(std::fabs(it->second[i] - v[i])));
                EXPECT_EQ(std::memcmp(it->second.data(), v.data(), v.size() * 4), 0) << name << " differs";
            }
            std::printf("%s %s: %zu tensors, %lld GPTQ'd experts, max |streamed - reference| = %g\n", fixture.c_str(),
                        hessian.c_str(), ref.size(), static_cast<long long>(gptq_experts), max_diff);
            // The sink receives the same tensors, each once.
            std::map<std::string, std::vector<float>> sunk;
            s.o.sink = [&](const std::string& n, std::vector<float>&& v) { EXPECT_TRUE(sunk.emplace(n, std::move(v)).second) << n; };
            const GptqModelResult via_sink = gptq_model(s.ck, s.rtn_names, s.o);
            EXPECT_TRUE(via_sink.weights.empty());
            EXPECT_EQ(sunk, res.weights);
        }
    fs::remove_all(tmp);
}
