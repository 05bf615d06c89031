// The RTN GGUF writer converts source rows straight from the mapped checkpoint bytes chunk by
// chunk and computes the error report in the same pass (quantize.cpp). Its output must equal the
// whole-tensor path it replaced: read_gguf_tensor (sources stacked, Q/K head permutation) followed
// by quantize_row over every row; and its SNR / relative RMSE / max error must equal ErrorStats
// over the whole tensor in row order (max exactly, sums to rounding). On every fixture GGUF
// output supports, for f32 (values themselves), q8_0 and q4_K (with fallbacks).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/gguf.h"
#include "model/arch.h"
#include "quantize/gguf_model.h"
#include "quantize/quantize.h"

using namespace moekit;
using namespace moekit::quantize;
namespace fs = std::filesystem;

TEST(QuantizeRtnRows, EqualsWholeTensorPath) {
    const fs::path data(MOEKIT_TEST_DATA);
    const fs::path tmp = fs::temp_directory_path() / ("moekit-rtn-rows-" + std::to_string(::getpid()));
    fs::create_directories(tmp);
    int checked_models = 0;
    for (const fs::path dir : {data / "fixtures" / "olmoe", data / "fixtures" / "qwen3_moe", data / "fixtures" / "mixtral",
                               data / "fixtures" / "qwen2_moe", data / "fixtures" / "deepseek_v2",
                               data / ".." / "assets" / "demo-moe"}) {
        const io::Checkpoint ck = io::Checkpoint::open(dir);
        const auto resolved = model::resolve_config(ck.config());
        GgufModelPlan plan;
        try {
            plan = plan_gguf_model(ck, *resolved.arch, resolved.config);
        } catch (const Error&) {
            continue;  // an architecture GGUF output does not support (yet)
        }
        ++checked_models;
        for (const std::string type : {"f32", "q8_0", "q4_K"}) {
            SCOPED_TRACE(dir.filename().string() + " " + type);
            QuantizeOptions o;
            o.model_dir = dir;
            o.out = tmp / "out.gguf";
            o.type = type;
            o.force = true;
            o.threads = 2;
            const QuantizeResult res = moekit::quantize::quantize(o);
            const io::GgufFileInfo info = io::read_gguf_info(o.out);
            std::ifstream in(o.out, std::ios::binary);
            ASSERT_EQ(info.tensors.size(), plan.tensors.size());
            for (std::size_t i = 0; i < plan.tensors.size(); ++i) {
                const GgufTensorPlan& t = plan.tensors[i];
                const io::GgufTensorInfo& ti = info.tensors[i];
                ASSERT_EQ(ti.name, t.name);
                const auto gt = static_cast<GgmlType>(ti.ggml_type);
                const std::vector<float> x = read_gguf_tensor(ck, t);
                const int64_t rows = t.rows(), len = t.ne[0];
                const uint64_t row_bytes = ggml_row_bytes(gt, len);
                std::vector<std::byte> want(row_bytes * static_cast<uint64_t>(rows)), got(want.size());
                std::vector<float> back(static_cast<std::size_t>(len));
                ErrorStats st;
                for (int64_t r = 0; r < rows; ++r) {
                    quantize_row(gt, x.data() + r * len, want.data() + static_cast<uint64_t>(r) * row_bytes, len);
                    dequantize_row(gt, want.data() + static_cast<uint64_t>(r) * row_bytes, back.data(), len);
                    st.add(x.data() + r * len, back.data(), len);
                }
                in.seekg(static_cast<std::streamoff>(ti.offset));
                in.read(reinterpret_cast<char*>(got.data()), static_cast<std::streamsize>(got.size()));
                ASSERT_TRUE(in.good()) << t.name;
                EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size()), 0) << t.name;
                const TensorReport& rep = res.tensors[i];
                ASSERT_EQ(rep.name, t.name);
                EXPECT_EQ(rep.max_abs_error, st.max_abs) << t.name;
                if (std::isfinite(st.snr_db()))
                    EXPECT_NEAR(rep.snr_db, st.snr_db(), 1e-9 * std::max(1.0, std::fabs(st.snr_db()))) << t.name;
                else
                    EXPECT_EQ(rep.snr_db, st.snr_db()) << t.name;
                EXPECT_NEAR(rep.rel_rmse, st.rel_rmse(), 1e-12 + 1e-9 * st.rel_rmse()) << t.name;
            }
        }
    }
    EXPECT_GE(checked_models, 3);
    fs::remove_all(tmp);
}
