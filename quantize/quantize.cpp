// `moekit quantize` entry point: validation, the GGUF and hf-fake writers (see quantize.h).
#include "quantize/quantize.h"

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "core/dtype.h"
#include "core/clock.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "io/checkpoint_edit.h"
#include "io/gguf.h"
#include "model/arch.h"
#include "quantize/gguf_model.h"

namespace moekit::quantize {
namespace fs = std::filesystem;

void ErrorStats::add(const float* x, const float* y, int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
        const double e = static_cast<double>(y[i]) - static_cast<double>(x[i]);
        sum_x2 += static_cast<double>(x[i]) * x[i];
        sum_e2 += e * e;
        max_abs = std::max(max_abs, std::fabs(e));
    }
    n += count;
}
double ErrorStats::snr_db() const {
    if (sum_e2 == 0) return std::numeric_limits<double>::infinity();
    if (sum_x2 == 0) return -std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(sum_x2 / sum_e2);
}
double ErrorStats::rel_rmse() const { return sum_x2 > 0 ? std::sqrt(sum_e2 / sum_x2) : (sum_e2 > 0 ? 1.0 : 0.0); }

namespace {

using core::Clock;
using core::seconds_since;

uint32_t llama_file_type(GgmlType t) {
    switch (t) {
        case GgmlType::F32: return 0;
        case GgmlType::F16: return 1;
        case GgmlType::Q4_0: return 2;
        case GgmlType::Q8_0: return 7;
        case GgmlType::Q5_0: return 8;
        case GgmlType::Q4_K: return 14;   // LLAMA_FTYPE_MOSTLY_Q4_K_S: every quantized tensor q4_K
        case GgmlType::Q6_K: return 18;
        case GgmlType::BF16: return 32;
    }
    return 0;
}

GgmlType type_for_bits(int bits) {
    switch (bits) {
        case 4: return GgmlType::Q4_K;
        case 5: return GgmlType::Q5_0;
        case 6: return GgmlType::Q6_K;
        case 8: return GgmlType::Q8_0;
        default:
            throw Error("quantize", "--bits " + std::to_string(bits) +
                                        " has no GGUF type here (4 -> q4_K, 5 -> q5_0, 6 -> q6_K, 8 -> q8_0; or --type)");
    }
}

bool is_norm_or_router(const std::string& hf_name, const model::ArchSpec& arch, const model::ModelConfig& c) {
    if (hf_name.find("norm") != std::string::npos) return true;
    if (hf_name.find("shared_expert_gate") != std::string::npos) return true;
    for (int64_t il = 0; il < c.n_layer; ++il)
        if (hf_name == arch.router_weight(il)) return true;
    return hf_name.find("e_score_correction_bias") != std::string::npos;
}

struct Resolved {
    std::optional<GgmlType> ggml;  // ggml quantizer, or
    IntGrid grid;                  // the integer grid (hf-fake only)
    std::string describe;
};

Resolved resolve_quantizer(const QuantizeOptions& o) {
    Resolved r;
    if (!o.type.empty()) {
        r.ggml = parse_ggml_type(o.type);
        if (!r.ggml)
            throw Error("quantize", "--type '" + o.type + "' is not supported (q4_0, q4_K, q5_0, q6_K, q8_0, f16, bf16, f32)");
        r.describe = std::string(ggml_type_name(*r.ggml));
        return r;
    }
    if (o.format == "gguf") {
        r.ggml = type_for_bits(o.bits);
        r.describe = std::string(ggml_type_name(*r.ggml));
        return r;
    }
    if (o.bits < 2 || o.bits > 8) throw Error("quantize", "--bits must be 2..8 for the integer grid (got " + std::to_string(o.bits) + ")");
    if (o.group_size < 0) throw Error("quantize", "--group-size must be >= 0 (0: whole row)");
    r.grid = IntGrid{o.bits, o.group_size, o.symmetric};
    r.describe = "int" + std::to_string(o.bits) + (o.group_size ? " g" + std::to_string(o.group_size) : " per-row") +
                 (o.symmetric ? " sym" : " asym");
    return r;
}

// Per-row error sums added up in row order afterwards, so the report does not depend on how the
// rows were spread over threads (moekit run promises byte-identical reports for the same inputs).
struct RowErrors {
    std::vector<double> x2, e2, max_abs;
    explicit RowErrors(int64_t rows)
        : x2(static_cast<std::size_t>(rows)), e2(static_cast<std::size_t>(rows)), max_abs(static_cast<std::size_t>(rows)) {}
    void set(int64_t r, const float* x, const float* y, int64_t count) {
        ErrorStats s;
        s.add(x, y, count);
        x2[static_cast<std::size_t>(r)] = s.sum_x2;
        e2[static_cast<std::size_t>(r)] = s.sum_e2;
        max_abs[static_cast<std::size_t>(r)] = s.max_abs;
    }
    void add_to(ErrorStats& stats, int64_t row_len) const {
        for (std::size_t r = 0; r < x2.size(); ++r) {
            stats.sum_x2 += x2[r];
            stats.sum_e2 += e2[r];
            stats.max_abs = std::max(stats.max_abs, max_abs[r]);
        }
        stats.n += static_cast<int64_t>(x2.size()) * row_len;
    }
};

// Rows of a GGUF tensor as fp32, converted straight from the checkpoint's mapped bytes row range
// by row range, so no whole-tensor fp32 copy is made (except DeepSeek's small split kv_b_proj
// tensors, built whole). The same values as read_gguf_tensor
// (gguf_model.cpp): the sources stacked in order, then llama.cpp's Q/K head permutation of rows;
// tests/unit/test_quantize_rtn_rows.cpp checks that on every fixture GGUF supports.
class GgufRowSource {
public:
    GgufRowSource(const io::Checkpoint& ck, const GgufTensorPlan& t) : row_len_(t.ne[0]), permute_(t.permute_heads) {
        if (t.layout != TensorLayout::plain) {
            // DeepSeek's kv_b_proj split (one small tensor per layer): built whole by read_gguf_tensor.
            whole_ = read_gguf_tensor(ck, t);
            rows_ = static_cast<int64_t>(whole_.size()) / row_len_;
            permute_ = 0;
            return;
        }
        int64_t row = 0;
        for (const auto& name : t.sources) {
            const auto& e = ck.at(name);
            const int64_t n = static_cast<int64_t>(e.info->n_elements()) / row_len_;
            if (n * row_len_ != static_cast<int64_t>(e.info->n_elements()))
                throw Error("quantize", "tensor " + name + " is not a whole number of rows of " + std::to_string(row_len_));
            parts_.push_back({e.file->bytes(*e.info), e.info->dtype, row, n});
            row += n;
        }
        rows_ = row;
        if (permute_ > 0) {
            half_ = rows_ / permute_ / 2;
            if (half_ * 2 * permute_ != rows_)
                throw Error("quantize", "tensor " + t.sources[0] + ": " + std::to_string(rows_) + " rows do not split into " +
                                            std::to_string(permute_) + " heads");
        }
    }
    int64_t rows() const { return rows_; }
    // Rows [r0, r0 + n) into dst (n x row_len floats). Thread-safe.
    void read(int64_t r0, int64_t n, float* dst) const {
        if (!whole_.empty()) {
            std::copy_n(whole_.data() + r0 * row_len_, n * row_len_, dst);
            return;
        }
        if (permute_ == 0) return read_stacked(r0, n, dst);
        for (int64_t r = r0; r < r0 + n; ++r) {  // output row (h, i, s) <- source row (h, s, i)
            const int64_t h = r / (2 * half_), i = (r % (2 * half_)) / 2, sub = r % 2;
            read_stacked(h * 2 * half_ + sub * half_ + i, 1, dst + (r - r0) * row_len_);
        }
    }

private:
    struct Part {
        std::span<const std::byte> bytes;
        core::DType dtype;
        int64_t row0, rows;
    };
    void read_stacked(int64_t r0, int64_t n, float* dst) const {
        for (const Part& p : parts_) {
            const int64_t a = std::max(r0, p.row0), b = std::min(r0 + n, p.row0 + p.rows);
            if (a >= b) continue;
            const std::size_t esize = core::dtype_size(p.dtype);
            core::convert_to_f32(p.dtype, p.bytes.data() + static_cast<std::size_t>((a - p.row0) * row_len_) * esize,
                                 static_cast<std::size_t>((b - a) * row_len_), dst + (a - r0) * row_len_);
        }
    }
    int64_t row_len_, permute_, rows_ = 0, half_ = 0;
    std::vector<Part> parts_;
    std::vector<float> whole_;  // non-plain layouts
};

// One GGUF tensor's quantization as independent row chunks (GgufTensor::fill_part): each chunk is
// converted from the source bytes, quantized into the output, and decoded again for the error
// report while still in cache (one pass over memory). The chunks' statistics are summed in chunk
// order at the end, so the report does not depend on thread scheduling.
struct ChunkedQuantizer {
    GgmlType type;
    GgufRowSource src;
    int64_t row_len, chunk, n_chunks;
    std::vector<ErrorStats> part;

    ChunkedQuantizer(GgmlType t, GgufRowSource s, int64_t len)
        : type(t), src(std::move(s)), row_len(len),
          // ~64K values per chunk: big enough to amortize scheduling, small enough for L2.
          chunk(std::max<int64_t>(1, (int64_t(1) << 16) / len)),
          n_chunks((src.rows() + chunk - 1) / chunk), part(static_cast<std::size_t>(n_chunks)) {}

    void run(int64_t ic, std::byte* dst) {
        thread_local std::vector<float> x, back;
        const int64_t r0 = ic * chunk, n = std::min(chunk, src.rows() - r0);
        x.resize(static_cast<std::size_t>(n * row_len));
        back.resize(static_cast<std::size_t>(row_len));
        src.read(r0, n, x.data());
        const uint64_t row_bytes = ggml_row_bytes(type, row_len);
        ErrorStats& st = part[static_cast<std::size_t>(ic)];
        for (int64_t r = 0; r < n; ++r) {
            const float* xr = x.data() + r * row_len;
            std::byte* out = dst + static_cast<uint64_t>(r0 + r) * row_bytes;
            quantize_row(type, xr, out, row_len);
            dequantize_row(type, out, back.data(), row_len);
            st.add(xr, back.data(), row_len);
        }
    }
    ErrorStats total() const {
        ErrorStats s;
        for (const ErrorStats& p : part) {
            s.sum_x2 += p.sum_x2;
            s.sum_e2 += p.sum_e2;
            s.max_abs = std::max(s.max_abs, p.max_abs);
            s.n += p.n;
        }
        return s;
    }
};

void fake_rows(const Resolved& q, float* data, int64_t rows, int64_t row_len, ErrorStats& stats) {
    RowErrors errors(rows);
#pragma omp parallel
    {
        std::vector<float> orig(static_cast<std::size_t>(row_len));
        std::vector<std::byte> buf(q.ggml ? ggml_row_bytes(*q.ggml, row_len) : 0);
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; ++r) {
            float* x = data + r * row_len;
            std::copy_n(x, row_len, orig.begin());
            if (q.ggml) {
                quantize_row(*q.ggml, orig.data(), buf.data(), row_len);
                dequantize_row(*q.ggml, buf.data(), x, row_len);
            } else {
                rtn_row(q.grid, x, row_len);
            }
            errors.set(r, orig.data(), x, row_len);
        }
    }
    errors.add_to(stats, row_len);
}

void fill_report(TensorReport& t, const ErrorStats& s) {
    t.snr_db = s.snr_db();
    t.rel_rmse = s.rel_rmse();
    t.max_abs_error = s.max_abs;
}

// GPTQ's quantized tensors, spilled to an unnamed temporary file beside the output as they come
// (GptqModelOptions::sink) and read back by the writer: the model's quantized weights are never
// all in memory at once.
class FloatSpill {
public:
    explicit FloatSpill(const fs::path& dir) {
        fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd_ < 0) {  // file systems without O_TMPFILE: a named file, unlinked at once
            std::string templ = (dir / ".moekit-gptq-XXXXXX").string();
            fd_ = ::mkostemp(templ.data(), O_CLOEXEC);
            if (fd_ >= 0) ::unlink(templ.c_str());
        }
        if (fd_ < 0) throw Error("quantize", "cannot create a temporary file in " + dir.string());
    }
    ~FloatSpill() { ::close(fd_); }
    FloatSpill(const FloatSpill&) = delete;
    FloatSpill& operator=(const FloatSpill&) = delete;

    void put(const std::string& name, const std::vector<float>& v) {
        transfer(::pwrite, const_cast<float*>(v.data()), v.size(), end_, name);
        where_[name] = {end_, v.size()};
        end_ += v.size() * sizeof(float);
    }
    bool has(const std::string& name) const { return where_.count(name) > 0; }
    std::vector<float> get(const std::string& name) const {
        const auto [off, n] = where_.at(name);
        std::vector<float> v(n);
        transfer(::pread, v.data(), n, off, name);
        return v;
    }

private:
    template <class F>
    void transfer(F f, float* p, std::size_t n, uint64_t off, const std::string& name) const {
        auto* b = reinterpret_cast<char*>(p);
        std::size_t left = n * sizeof(float);
        while (left > 0) {
            const ssize_t k = f(fd_, b, left, static_cast<off_t>(off));
            if (k <= 0) throw Error("quantize", "temporary GPTQ file: cannot read/write tensor " + name);
            b += k;
            off += static_cast<uint64_t>(k);
            left -= static_cast<std::size_t>(k);
        }
    }
    int fd_ = -1;
    uint64_t end_ = 0;
    std::map<std::string, std::pair<uint64_t, std::size_t>> where_;
};

fs::path sidecar_json(const fs::path& gguf) {
    fs::path p = gguf;
    p.replace_extension(".moekit.json");
    return p;
}

void validate(const QuantizeOptions& o) {
    if (o.format != "gguf" && o.format != "hf-fake" && o.format != "gptq")
        throw Error("quantize", "--format must be gguf, hf-fake or gptq (got '" + o.format + "')");
    if (o.format == "gptq")
        throw Error("quantize", "--format gptq (GPTQ-packed safetensors) is not implemented yet; use gguf or hf-fake");
    if (o.method != "rtn" && o.method != "gptq")
        throw Error("quantize", "--method must be rtn or gptq (got '" + o.method + "')");
    if (o.method == "gptq" && o.format == "gguf")
        throw Error("quantize", "--method gptq with --format gguf (GPTQ into ggml blocks) is not implemented yet; "
                                "use --format hf-fake (integer grid) or --method rtn");
    if (o.method == "gptq" && !o.type.empty())
        throw Error("quantize", "--method gptq quantizes onto the integer grid (--bits, --group-size, --asym); "
                                "--type " + o.type + " is not supported with gptq");
    if (o.method == "gptq" && o.calib.data.empty())
        throw Error("quantize", "--method gptq needs calibration data (--calib FILE[,FILE...])");
    if (o.mixed_precision && o.format != "gguf" && !o.type.empty())
        throw Error("quantize", "--mixed-precision allocates integer-grid widths; --type is not supported with it");
    if (o.mixed_precision && o.calib.data.empty())
        throw Error("quantize", "--mixed-precision needs calibration data (--calib FILE[,FILE...])");
    if (o.method == "rtn" && !o.mixed_precision && !o.calib.data.empty())
        throw Error("quantize", "--calib is used by --method gptq only (rtn needs no data)");
    if (o.damp <= 0 || !std::isfinite(o.damp)) throw Error("quantize", "--damp must be positive");
    if (o.fake_dtype != "f32" && o.fake_dtype != "source")
        throw Error("quantize", "--fake-dtype must be f32 or source (got '" + o.fake_dtype + "')");
    if (o.format == "gguf" && o.type.empty() && o.bits != 4 && o.bits != 5 && o.bits != 6 && o.bits != 8)
        (void)type_for_bits(o.bits);  // throws the explanation
    if (!o.dry_run) {
        if (o.out.empty()) throw Error("quantize", "-o/--output is required (or --dry-run)");
        if (fs::exists(o.out) && !o.force)
            throw Error("quantize", o.out.string() + " exists (use --force to replace it)");
        if (o.format == "gguf" && fs::is_directory(o.out))
            throw Error("quantize", "--format gguf writes one file; " + o.out.string() + " is a directory");
        const fs::path parent = fs::absolute(o.out).parent_path();
        if (!fs::is_directory(parent))
            throw Error("quantize", "output directory " + parent.string() + " does not exist");
    }
}

}  // namespace

QuantizeResult quantize(const QuantizeOptions& options) {
    const auto t0 = Clock::now();
    validate(options);
    const Resolved q = resolve_quantizer(options);
    if (options.threads > 0) omp_set_num_threads(options.threads);

    QuantizeResult res;
    res.options = options;
    res.options.progress = nullptr;
    res.quantizer = q.describe;
    res.threads = omp_get_max_threads();
    const io::Checkpoint ck = io::Checkpoint::open(options.model_dir);
    const auto resolved = model::resolve_config(ck.config());
    const model::ArchSpec& arch = *resolved.arch;
    const model::ModelConfig& c = resolved.config;
    res.model_type = c.model_type;
    res.input_tensor_bytes = ck.total_tensor_bytes();
    auto progress = [&](double f, const std::string& what) {
        if (options.progress) options.progress(f, what);
    };

    double q_params = 0, q_bits = 0;
    const auto tq = Clock::now();
    if (options.format == "gguf") {
        const GgufModelPlan plan = plan_gguf_model(ck, arch, c);
        res.gguf_arch = plan.arch;
        res.notes = plan.notes;
        std::map<std::string, GgmlType> type_override;
        if (options.mixed_precision && !options.dry_run) {
            std::vector<GgmlType> cands;
            for (const auto& n : options.candidate_types) {
                const auto t = parse_ggml_type(n);
                if (!t || !ggml_is_quantized(*t))
                    throw Error("quantize", "--candidate-types: '" + n + "' is not a quantized ggml type (q4_0, q4_K, q5_0, q6_K, q8_0)");
                cands.push_back(*t);
            }
            MixedPrecisionOptions mo;
            mo.avg_bits = options.avg_bits;
            mo.alpha = options.mp_alpha;
            mo.beta = options.mp_beta;
            mo.calib = options.calib;
            mo.batch_tokens = options.batch_tokens;
            mo.threads = options.threads;
            mo.device = options.device;
            mo.progress = [&](double f, const std::string& what) { progress(0.5 * f, what); };
            res.mixed_gguf = mixed_precision_gguf_plan(ck, cands, mo);
            static const char* proj[] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
            double sum = 0;
            for (const auto& p : res.mixed_gguf) {
                type_override["blk." + std::to_string(p.layer) + "." + proj[p.projection] + ".weight"] = p.type;
                sum += ggml_bits_per_weight(p.type);
            }
            res.expert_avg_bits = res.mixed_gguf.empty() ? 0 : sum / static_cast<double>(res.mixed_gguf.size());
            char buf[300];
            std::snprintf(buf, sizeof buf,
                          "mixed precision per layer-projection (GGUF stores all experts of a projection in one tensor "
                          "with one type, so experts cannot differ): routed experts average %.3f bits per weight "
                          "(budget %.3f, exact DP)", res.expert_avg_bits, options.avg_bits);
            res.notes.push_back(buf);
        }
        io::GgufWriter w;
        add_gguf_hparams(w, plan, ck, c);
        w.set("general.file_type", io::GgufValue::u32(llama_file_type(*q.ggml)));
        add_gguf_tokenizer(w, options.model_dir, ck.config());
        w.set("general.quantized_by", io::GgufValue::str("moekit " + options.tool_version));
        res.tensors.reserve(plan.tensors.size());
        std::mutex progress_mutex;
        for (const auto& t : plan.tensors) {
            TensorReport rep;
            rep.name = t.name;
            rep.sources = t.sources;
            rep.n_elements = t.rows() * t.ne[0];
            GgmlType type = GgmlType::F32;
            const bool is_embed = t.role == TensorRole::embedding || t.role == TensorRole::output;
            if (t.quantizable && !(is_embed && options.keep_embeddings)) {
                const auto ov = type_override.find(t.name);
                const GgmlType want = ov != type_override.end() ? ov->second : *q.ggml;
                rep.requested_type = std::string(ggml_type_name(want));
                type = ggml_fallback_type(want, t.ne[0]);
                rep.fallback = type != want;
                if (rep.fallback) ++res.n_fallback;
            } else if (t.quantizable) {
                const auto dt = ck.at(t.sources[0]).info->dtype;
                type = dt == core::DType::BF16 ? GgmlType::BF16 : dt == core::DType::F16 ? GgmlType::F16 : GgmlType::F32;
            }
            rep.type = std::string(ggml_type_name(type));
            rep.bytes = ggml_row_bytes(type, t.ne[0]) * static_cast<uint64_t>(t.rows());
            if (ggml_is_quantized(type) || (t.quantizable && !(is_embed && options.keep_embeddings))) {
                q_params += static_cast<double>(rep.n_elements);
                q_bits += static_cast<double>(rep.bytes) * 8.0;
            }
            res.tensors.push_back(rep);
            const std::size_t idx = res.tensors.size() - 1;
            io::GgufTensor gt;
            gt.name = t.name;
            gt.ne = t.ne;
            gt.ggml_type = static_cast<uint32_t>(type);
            gt.nbytes = rep.bytes;
            auto cq = std::make_shared<ChunkedQuantizer>(type, GgufRowSource(ck, t), t.ne[0]);
            gt.n_parts = cq->n_chunks;
            gt.fill = [](std::byte*) {};  // used only for a tensor without rows
            gt.fill_part = [&, cq, idx, name = t.name](int64_t part, std::byte* dst) {
                if (part == 0) {
                    const std::lock_guard<std::mutex> lock(progress_mutex);
                    progress(static_cast<double>(idx) / static_cast<double>(res.tensors.size()), name);
                }
                cq->run(part, dst);
            };
            gt.done = [&, cq, idx, sources = t.sources] {
                fill_report(res.tensors[idx], cq->total());
                for (const auto& s : sources) ck.release(s);
            };
            w.add_tensor(std::move(gt));
        }
        if (res.n_fallback > 0)
            res.notes.push_back(std::to_string(res.n_fallback) + " tensor(s) have rows not divisible by the " +
                                std::string(ggml_type_name(*q.ggml)) + " block and fall back as llama-quantize does (" +
                                "q4_K -> q5_0, q6_K -> q8_0, otherwise f16)");
        res.notes.push_back("GGUF stores all experts of one projection in one tensor, so they share one type");
        res.avg_bits = q_params > 0 ? q_bits / q_params : 0;
        res.quantized_params = q_params;
        if (!options.dry_run) {
            res.output_bytes = w.write(options.out, options.force);
            res.quantize_s = seconds_since(tq);
            res.wall_s = seconds_since(t0);
            res.moekit_json = make_moekit_json(res);
            const fs::path side = sidecar_json(options.out);
            const fs::path tmp = side.string() + ".moekit-tmp";
            {
                std::ofstream out(tmp);
                out << res.moekit_json.dump(2) << "\n";
                if (!out) throw Error("quantize", "cannot write " + side.string());
            }
            fs::rename(tmp, side);
        }
    } else {  // hf-fake
        io::CheckpointEdit edit;
        std::vector<std::string> names;
        for (const auto& [name, entry] : ck.tensors()) {
            const auto& info = *entry.info;
            const bool weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
            if (!weight || info.shape.size() != 2 || !core::dtype_is_float(info.dtype)) continue;
            if (is_norm_or_router(name, arch, c)) continue;
            const bool is_embed = name == "model.embed_tokens.weight" || name == "lm_head.weight";
            if (is_embed && options.keep_embeddings) continue;
            names.push_back(name);
        }
        // Mixed precision: bits per routed expert (the other tensors keep --bits).
        std::map<std::string, int> tensor_bits;
        std::map<std::pair<int64_t, int64_t>, int> expert_bits;
        if (options.mixed_precision && !options.dry_run) {
            MixedPrecisionOptions mo;
            mo.candidates = options.candidate_bits;
            mo.avg_bits = options.avg_bits;
            mo.alpha = options.mp_alpha;
            mo.beta = options.mp_beta;
            mo.grid = q.grid;
            mo.calib = options.calib;
            mo.batch_tokens = options.batch_tokens;
            mo.threads = options.threads;
            mo.device = options.device;
            mo.progress = [&](double f, const std::string& what) { progress(0.3 * f, what); };
            res.mixed = mixed_precision_plan(ck, mo);
            double sum = 0;
            for (const auto& p : res.mixed) {
                const auto n = arch.expert_tensors(p.layer, p.expert);
                for (const auto* t : {&n.gate, &n.up, &n.down}) tensor_bits[*t] = p.bits;
                expert_bits[{p.layer, p.expert}] = p.bits;
                sum += p.bits;
            }
            res.expert_avg_bits = res.mixed.empty() ? 0 : sum / static_cast<double>(res.mixed.size());
            char buf[200];
            std::snprintf(buf, sizeof buf, "mixed precision (MC-MoE, exact DP): routed experts average %.3f bits (budget %.3f) "
                                           "over candidates", res.expert_avg_bits, options.avg_bits);
            std::string cands;
            for (int b : options.candidate_bits) cands += " " + std::to_string(b);
            res.notes.push_back(buf + cands);
        }
        // GPTQ first (it needs every other quantized tensor of the earlier layers).
        std::unique_ptr<FloatSpill> gptq_weights;
        if (options.method == "gptq" && !options.dry_run) {
            std::set<std::string> expert_names;
            for (int64_t il = 0; il < c.n_layer; ++il)
                if (c.is_moe_layer[static_cast<std::size_t>(il)])
                    for (int64_t ie = 0; ie < c.n_expert_at(il); ++ie) {
                        const auto n = arch.expert_tensors(il, ie);
                        expert_names.insert({n.gate, n.up, n.down});
                    }
            std::vector<std::string> rtn_names;
            for (const auto& n : names)
                if (!expert_names.count(n)) rtn_names.push_back(n);
            GptqModelOptions go;
            go.gptq.grid = q.grid;
            go.gptq.damp = options.damp;
            go.gptq.act_order = options.act_order;
            go.hessian = options.hessian;
            go.expert_bits = expert_bits;
            go.min_expert_tokens = options.min_expert_tokens;
            go.calib = options.calib;
            go.batch_tokens = options.batch_tokens;
            gptq_weights = std::make_unique<FloatSpill>(fs::absolute(options.out).parent_path());
            go.sink = [&](const std::string& n, std::vector<float>&& v) { gptq_weights->put(n, v); };
            go.threads = options.threads;
            go.device = options.device;
            std::map<std::string, int64_t> cols_of;
            for (const auto& n : rtn_names) cols_of[n] = ck.at(n).info->shape[1];
            go.rtn = [&, cols_of](const std::string& n, std::vector<float>& v) {
                const int64_t cols = cols_of.at(n);
                for (int64_t r = 0; r < static_cast<int64_t>(v.size()) / cols; ++r) rtn_row(q.grid, v.data() + r * cols, cols);
            };
            go.progress = [&](double f, const std::string& what) { progress(0.9 * f, what); };
            GptqModelResult gr = gptq_model(ck, rtn_names, go);
            res.gptq_experts = std::move(gr.experts);
            res.calib_tokens = gr.calib_tokens;
            res.gptq_passes = gr.passes;
            res.gptq_layer_seconds = gr.layer_seconds;
            res.gptq_layer_wall_seconds = gr.layer_wall_seconds;
            int64_t starved = 0;
            for (const auto& e : res.gptq_experts) starved += e.starved ? 1 : 0;
            res.notes.push_back("GPTQ (" + options.hessian + " Hessian) on the routed experts; attention, shared experts, "
                                "dense MLPs, embedding and head use RTN on the same grid");
            if (starved > 0)
                res.notes.push_back(std::to_string(starved) + " starved expert(s) (fewer routed calibration tokens than " +
                                    std::to_string(options.min_expert_tokens > 0 ? options.min_expert_tokens : c.d_model) +
                                    ") fall back to RTN; see gptq_experts in moekit.json");
        }
        for (const auto& name : names) {
            const auto& info = *ck.at(name).info;
            TensorReport rep;
            rep.name = name;
            rep.sources = {name};
            rep.n_elements = static_cast<int64_t>(info.n_elements());
            Resolved rq = q;
            if (q.ggml) {
                const GgmlType t = ggml_fallback_type(*q.ggml, info.shape[1]);
                rep.requested_type = std::string(ggml_type_name(*q.ggml));
                rep.fallback = t != *q.ggml;
                if (rep.fallback) ++res.n_fallback;
                rq.ggml = t;
                rep.type = std::string(ggml_type_name(t));
                rep.bytes = ggml_row_bytes(t, info.shape[1]) * static_cast<uint64_t>(info.shape[0]);
            } else {
                if (auto tb = tensor_bits.find(name); tb != tensor_bits.end()) {
                    rq.grid.bits = tb->second;
                    rq.describe = "int" + std::to_string(tb->second) + q.describe.substr(q.describe.find(' '));
                }
                rep.type = rq.describe;
                const int64_t g = q.grid.group_size > 0 ? q.grid.group_size : info.shape[1];
                const int64_t groups = (info.shape[1] + g - 1) / g * info.shape[0];
                // b bits per weight + fp16 scale (+ zero point when asymmetric) per group.
                rep.bytes = static_cast<uint64_t>((rep.n_elements * rq.grid.bits + groups * (q.grid.symmetric ? 16 : 24)) / 8);
            }
            q_params += static_cast<double>(rep.n_elements);
            q_bits += static_cast<double>(rep.bytes) * 8.0;
            res.tensors.push_back(rep);
            const std::size_t idx = res.tensors.size() - 1;
            const core::DType out_dtype = options.fake_dtype == "f32" ? core::DType::F32 : info.dtype;
            io::TensorSource src;
            src.name = name;
            src.dtype = out_dtype;
            src.shape = info.shape;
            src.nbytes = info.n_elements() * core::dtype_size(out_dtype);
            src.fill = [&, name, rq, idx, out_dtype, rows = info.shape[0], cols = info.shape[1]](std::byte* dst) {
                progress(static_cast<double>(idx) / static_cast<double>(res.tensors.size()), name);
                std::vector<float> data = ck.read_f32(name);
                ErrorStats stats;
                if (gptq_weights && gptq_weights->has(name)) {
                    std::vector<float> g = gptq_weights->get(name);
                    stats.add(data.data(), g.data(), static_cast<int64_t>(data.size()));
                    data = std::move(g);
                } else {
                    fake_rows(rq, data.data(), rows, cols, stats);
                }
                fill_report(res.tensors[idx], stats);
                core::convert_from_f32(out_dtype, data.data(), data.size(), dst);
                ck.release(name);
            };
            if (out_dtype != core::DType::F32 && out_dtype != core::DType::BF16 && out_dtype != core::DType::F16)
                throw Error("quantize", "--fake-dtype source: tensor " + name + " has dtype " +
                                            std::string(core::dtype_name(info.dtype)) + "; use --fake-dtype f32");
            edit.put.push_back(std::move(src));
        }
        if (res.n_fallback > 0)
            res.notes.push_back(std::to_string(res.n_fallback) + " tensor(s) fall back to another ggml type (row length)");
        res.avg_bits = q_params > 0 ? q_bits / q_params : 0;
        res.quantized_params = q_params;
        if (!options.dry_run) {
            // moekit.json needs the error statistics, which exist only after the tensors are
            // written: the writer runs first with a placeholder, then the file is replaced.
            edit.extra_files["moekit.json"] = "{}\n";
            io::WriteOptions wo;
            wo.force = options.force;
            const io::WriteResult wr = io::write_checkpoint(ck, edit, options.out, wo);
            res.output_bytes = wr.tensor_bytes;
            res.quantize_s = seconds_since(tq);
            res.wall_s = seconds_since(t0);
            res.moekit_json = make_moekit_json(res);
            const fs::path side = options.out / "moekit.json";
            {
                std::ofstream out(side.string() + ".tmp");
                out << res.moekit_json.dump(2) << "\n";
                if (!out) throw Error("quantize", "cannot write " + side.string());
            }
            fs::rename(side.string() + ".tmp", side);
        }
    }
    progress(1.0, "done");
    res.quantize_s = seconds_since(tq);
    res.wall_s = seconds_since(t0);
    if (res.moekit_json.is_null()) res.moekit_json = make_moekit_json(res);
    return res;
}

}  // namespace moekit::quantize
