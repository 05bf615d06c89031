// `moekit inspect`: architecture summary, parameter and byte accounting by category and dtype,
// and a consistency check of every tensor against the shapes config.json implies.
#include "model/inspect.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "core/dtype.h"
#include "core/format.h"
#include "io/checkpoint.h"

namespace moekit::model {
namespace {

constexpr int kSchemaVersion = 1;
constexpr std::size_t kMaxProblemsInText = 25;

std::string shape_string(const std::vector<int64_t>& shape) {
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + "]";
}

void add(TensorGroupStats& stats, int64_t n_params, uint64_t bytes) {
    stats.n_tensors += 1;
    stats.n_params += n_params;
    stats.bytes += bytes;
}

nlohmann::ordered_json stats_json(const TensorGroupStats& stats) {
    return {{"tensors", stats.n_tensors}, {"params", stats.n_params}, {"bytes", stats.bytes}};
}

}  // namespace

InspectReport inspect(const InspectOptions& options) {
    const io::Checkpoint checkpoint = io::Checkpoint::open(options.model_dir);
    const ResolvedConfig resolved = resolve_config(checkpoint.config());
    const ModelConfig& config = resolved.config;

    InspectReport report;
    report.model_dir = options.model_dir;
    report.display_name = std::string(resolved.arch->display_name());
    report.config = config;
    report.sharded = checkpoint.is_sharded();
    for (int64_t il = 0; il < config.n_layer; ++il)
        (config.is_moe_layer[il] ? report.moe_layers : report.dense_layers).push_back(il);

    std::map<std::string, const ExpectedTensor*, std::less<>> expected;
    const std::vector<ExpectedTensor> expected_list = resolved.arch->expected_tensors(config);
    for (const auto& tensor : expected_list) expected.emplace(tensor.name, &tensor);

    // Routed-expert parameters per MoE layer, to derive the per-token active count exactly
    // even when layers hold different numbers of experts.
    std::map<int64_t, int64_t> routed_params_by_layer;
    std::map<int64_t, std::set<int64_t>> experts_by_layer;

    for (const auto& [name, entry] : checkpoint.tensors()) {
        const io::TensorInfo& info = *entry.info;
        const int64_t n_params = int64_t(info.n_elements());
        TensorCategory category = TensorCategory::other;
        if (auto it = expected.find(name); it != expected.end()) {
            const ExpectedTensor& want = *it->second;
            category = want.category;
            if (info.shape != want.shape)
                report.problems.push_back({"shape_mismatch", name,
                                           "shape " + shape_string(info.shape) + " but config.json implies " +
                                               shape_string(want.shape)});
            if (category == TensorCategory::routed_expert) {
                routed_params_by_layer[want.layer] += n_params;
                experts_by_layer[want.layer].insert(want.expert);
            }
        } else if (auto extra = resolved.arch->tolerated_extra(config, name)) {
            category = *extra;
        } else {
            report.problems.push_back({"unexpected_tensor", name,
                                       "not part of a " + report.display_name + " checkpoint with this config"});
        }
        add(report.by_category[category], n_params, info.nbytes());
        add(report.by_dtype[std::string(core::dtype_name(info.dtype))], n_params, info.nbytes());
        report.n_params_total += n_params;
    }
    for (const auto& tensor : expected_list)
        if (!checkpoint.find(tensor.name))
            report.problems.push_back({"missing_tensor", tensor.name, "expected with shape " + shape_string(tensor.shape)});

    const int64_t routed_total = report.by_category[TensorCategory::routed_expert].n_params;
    int64_t active_routed = 0;
    for (const auto& [il, n_params] : routed_params_by_layer) {
        const int64_t n_present = int64_t(experts_by_layer[il].size());
        if (n_present > 0) active_routed += n_params / n_present * std::min(config.n_expert_used, n_present);
    }
    if (!routed_params_by_layer.empty()) {
        const auto& [il, n_params] = *routed_params_by_layer.begin();
        report.n_params_per_expert = n_params / int64_t(experts_by_layer[il].size());
    }
    report.n_params_active = report.n_params_total - routed_total + active_routed;
    report.n_params_embedding = report.by_category[TensorCategory::embedding].n_params +
                                report.by_category[TensorCategory::lm_head].n_params;

    for (const auto& shard : checkpoint.shards()) {
        ShardStats stats;
        stats.file = shard->path().filename().string();
        stats.file_bytes = shard->file_size();
        stats.n_tensors = int64_t(shard->tensors().size());
        report.shards.push_back(stats);
    }
    return report;
}

nlohmann::ordered_json to_json(const InspectReport& report) {
    const ModelConfig& config = report.config;
    nlohmann::ordered_json out;
    out["schema_version"] = kSchemaVersion;
    out["command"] = "inspect";
    out["params"] = {{"model_dir", report.model_dir.string()}};
    out["ok"] = report.ok();
    out["architecture"] = {{"model_type", config.model_type}, {"name", report.display_name}};
    out["layers"] = {{"n_layer", config.n_layer}, {"moe", report.moe_layers}, {"dense", report.dense_layers}};
    out["experts"] = {{"n_expert", config.n_expert},
                      {"n_expert_used", config.n_expert_used},
                      {"n_shared_expert", config.n_shared_expert},
                      {"routing", config.routing.describe()},
                      {"scoring", config.routing.scoring == Scoring::softmax ? "softmax" : "sigmoid"},
                      {"norm_topk_prob", config.routing.norm_topk_prob},
                      {"routed_scaling_factor", config.routing.routed_scaling_factor},
                      {"n_group", config.routing.n_group},
                      {"topk_group", config.routing.topk_group},
                      {"topk_method", config.routing.topk_method}};
    out["dims"] = {{"d_model", config.d_model},
                   {"n_head", config.n_head},
                   {"n_head_kv", config.n_head_kv},
                   {"head_dim", config.head_dim},
                   {"vocab_size", config.vocab_size},
                   {"d_ff", config.d_ff},
                   {"d_ff_expert", config.d_ff_expert},
                   {"d_ff_shared", config.d_ff_shared},
                   {"tie_word_embeddings", config.tie_word_embeddings}};
    out["params_count"] = {
        {"total", report.n_params_total},
        {"active_per_token", report.n_params_active},
        {"active_per_token_excluding_embeddings", report.n_params_active - report.n_params_embedding},
        {"per_routed_expert", report.n_params_per_expert},
        {"convention",
         "active = every tensor except routed experts, plus n_expert_used routed experts in each MoE layer; "
         "embeddings and lm_head included (tied weights counted once)"}};
    nlohmann::ordered_json categories = nlohmann::ordered_json::object();
    for (const auto& [category, stats] : report.by_category) categories[std::string(category_name(category))] = stats_json(stats);
    out["by_category"] = categories;
    nlohmann::ordered_json dtypes = nlohmann::ordered_json::object();
    for (const auto& [dtype, stats] : report.by_dtype) dtypes[dtype] = stats_json(stats);
    out["by_dtype"] = dtypes;
    nlohmann::ordered_json shards = nlohmann::ordered_json::array();
    for (const auto& shard : report.shards)
        shards.push_back({{"file", shard.file}, {"bytes", shard.file_bytes}, {"tensors", shard.n_tensors}});
    out["files"] = {{"sharded", report.sharded}, {"shards", shards}};
    nlohmann::ordered_json problems = nlohmann::ordered_json::array();
    for (const auto& problem : report.problems)
        problems.push_back({{"kind", problem.kind}, {"tensor", problem.tensor}, {"detail", problem.detail}});
    out["problems"] = problems;
    return out;
}

std::string to_text(const InspectReport& report) {
    using core::human_bytes;
    using core::human_count;
    const ModelConfig& config = report.config;
    std::ostringstream out;
    auto row = [&](const std::string& key, const std::string& value) {
        out << "  " << key << std::string(key.size() < 14 ? 14 - key.size() : 1, ' ') << value << "\n";
    };
    out << report.model_dir.string() << "\n";
    row("architecture", report.display_name + " (" + config.model_type + ")");
    row("layers", std::to_string(config.n_layer) + " (MoE: " + core::index_ranges(report.moe_layers) +
                      "; dense: " + core::index_ranges(report.dense_layers) + ")");
    row("experts", std::to_string(config.n_expert) + " routed per MoE layer, " + std::to_string(config.n_expert_used) +
                       " used per token, " + std::to_string(config.n_shared_expert) + " shared");
    row("routing", config.routing.describe());
    row("d_model", std::to_string(config.d_model) + "   heads " + std::to_string(config.n_head) + " (kv " +
                       std::to_string(config.n_head_kv) + ", head_dim " + std::to_string(config.head_dim) +
                       ")   vocab " + std::to_string(config.vocab_size));
    auto dim = [](int64_t d) { return d > 0 ? std::to_string(d) : std::string("-"); };
    row("d_ff", "expert " + dim(config.d_ff_expert) + ", dense " + dim(config.d_ff) + ", shared " + dim(config.d_ff_shared));
    const double total = double(std::max<int64_t>(report.n_params_total, 1));
    row("parameters", "total " + human_count(double(report.n_params_total)) + ", active per token " +
                          human_count(double(report.n_params_active)) + " (" +
                          core::percent(double(report.n_params_active) / total) + "), per routed expert " +
                          human_count(double(report.n_params_per_expert)));

    out << "\n  category          tensors   parameters        bytes   share\n";
    char line[160];
    for (const auto& [category, stats] : report.by_category) {
        std::snprintf(line, sizeof line, "  %-16s %8lld %12s %12s %7s\n", std::string(category_name(category)).c_str(),
                      (long long)stats.n_tensors, human_count(double(stats.n_params)).c_str(),
                      human_bytes(double(stats.bytes)).c_str(), core::percent(double(stats.n_params) / total).c_str());
        out << line;
    }
    out << "\n";
    std::string dtypes;
    for (const auto& [dtype, stats] : report.by_dtype)
        dtypes += (dtypes.empty() ? "" : "; ") + dtype + " " + std::to_string(stats.n_tensors) + " tensors, " +
                  human_bytes(double(stats.bytes));
    row("dtypes", dtypes);
    for (std::size_t i = 0; i < report.shards.size(); ++i) {
        const auto& shard = report.shards[i];
        row(i == 0 ? "files" : "", shard.file + " (" + human_bytes(double(shard.file_bytes)) + ", " +
                                       std::to_string(shard.n_tensors) + " tensors)");
    }
    if (report.ok()) {
        int64_t n_tensors = 0;
        for (const auto& [category, stats] : report.by_category) n_tensors += stats.n_tensors;
        row("check", "OK: " + std::to_string(n_tensors) + " tensors, all present with the shapes config.json implies");
    } else {
        row("check", "FAILED: " + std::to_string(report.problems.size()) + " problem(s)");
        for (std::size_t i = 0; i < report.problems.size() && i < kMaxProblemsInText; ++i) {
            const auto& problem = report.problems[i];
            out << "    " << problem.kind << ": " << problem.tensor << ": " << problem.detail << "\n";
        }
        if (report.problems.size() > kMaxProblemsInText)
            out << "    ... and " << report.problems.size() - kMaxProblemsInText << " more (see --json)\n";
    }
    return out.str();
}

}  // namespace moekit::model
