// Routing functions, transcribed from transformers 5.x routers:
//   Mixtral:            softmax -> top-k -> divide by the sum of the top-k
//   Qwen2/Qwen3/OLMoE:  softmax -> top-k -> divide by the sum iff norm_topk_prob
//   DeepSeek-V2:        softmax -> greedy top-k, or group_limited_greedy (group score = max,
//                       keep topk_group groups, others masked to 0) -> * routed_scaling_factor
//   DeepSeek-V3:        sigmoid; selection on s + e_score_correction_bias with group score =
//                       sum of the group's top-2, keep topk_group groups (others -inf); gates =
//                       unbiased s of the selected, / (sum + 1e-20) iff norm_topk_prob,
//                       * routed_scaling_factor
// Top-k order: descending selection score, ties broken towards the lower expert index.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "model/moe.h"

namespace moekit::model::detail {

namespace {

// Indices of the k largest of v[0, n), descending, ties to the lower index.
void top_k(const float* v, int64_t n, int64_t k, std::vector<int32_t>& idx) {
    idx.resize(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [v](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
    idx.resize(static_cast<size_t>(k));
}

}  // namespace

void route(const ModelConfig& mc, const Weight& correction_bias, RoutingResult& r, int n_threads) {
    const RoutingSpec& spec = mc.routing;
    const int64_t T = r.logits.rows(), E = r.logits.cols(), k = mc.n_expert_used;
    // E is the layer's own expert count (layers may differ: ModelConfig::n_expert_layer).
    if (E < k || E > mc.n_expert) throw InternalError("engine", "router logits have the wrong width");
    const bool sigmoid = spec.scoring == Scoring::sigmoid;
    const bool deepseek_v2 = mc.model_type == "deepseek_v2";
    const bool v3_style = sigmoid || spec.correction_bias;
    const bool renormalize = spec.norm_topk_prob && !deepseek_v2;
    const int64_t n_group = spec.n_group > 1 ? spec.n_group : 1;
    const int64_t group_size = E / n_group;
    if (!correction_bias.empty() && correction_bias.rows * correction_bias.cols != E)
        throw Error("engine", "e_score_correction_bias has " + std::to_string(correction_bias.rows * correction_bias.cols) +
                                  " entries, expected " + std::to_string(E));
    r.scores.resize(T, E);
    r.selected.resize(T, k);
    r.gates.resize(T, k);

#pragma omp parallel num_threads(n_threads) if (T * E > 16384)
    {
        std::vector<float> choice(static_cast<size_t>(E)), group_score(static_cast<size_t>(n_group));
        std::vector<int32_t> idx, gidx;
        std::vector<char> keep(static_cast<size_t>(n_group));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; ++t) {
            const float* z = r.logits.row(t).data();
            float* s = r.scores.row(t).data();
            if (sigmoid) {
                for (int64_t e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + std::exp(-z[e]));
            } else {
                const float mx = *std::max_element(z, z + E);
                float sum = 0.0f;
                for (int64_t e = 0; e < E; ++e) sum += (s[e] = std::exp(z[e] - mx));
                for (int64_t e = 0; e < E; ++e) s[e] /= sum;
            }
            for (int64_t e = 0; e < E; ++e)
                choice[static_cast<size_t>(e)] = correction_bias.empty() ? s[e] : s[e] + correction_bias.data[static_cast<size_t>(e)];

            if (n_group > 1) {
                for (int64_t g = 0; g < n_group; ++g) {
                    const float* c = choice.data() + g * group_size;
                    if (v3_style) {  // sum of the top-2
                        float a = -std::numeric_limits<float>::infinity(), b = a;
                        for (int64_t i = 0; i < group_size; ++i) {
                            if (c[i] > a) {
                                b = a;
                                a = c[i];
                            } else if (c[i] > b) {
                                b = c[i];
                            }
                        }
                        group_score[static_cast<size_t>(g)] = group_size >= 2 ? a + b : a;
                    } else {  // max
                        group_score[static_cast<size_t>(g)] = *std::max_element(c, c + group_size);
                    }
                }
                top_k(group_score.data(), n_group, spec.topk_group, gidx);
                std::fill(keep.begin(), keep.end(), 0);
                for (int32_t g : gidx) keep[static_cast<size_t>(g)] = 1;
                const float masked = v3_style ? -std::numeric_limits<float>::infinity() : 0.0f;
                for (int64_t e = 0; e < E; ++e)
                    if (!keep[static_cast<size_t>(e / group_size)]) choice[static_cast<size_t>(e)] = masked;
            }
            top_k(choice.data(), E, k, idx);

            float* g = r.gates.row(t).data();
            for (int64_t j = 0; j < k; ++j) {
                const int32_t e = idx[static_cast<size_t>(j)];
                r.selected(t, j) = e;
                // V3 gates come from the unbiased scores; V2's from the (0-masked) scores.
                g[j] = v3_style ? s[e] : choice[static_cast<size_t>(e)];
            }
            if (renormalize) {
                float sum = 0.0f;
                for (int64_t j = 0; j < k; ++j) sum += g[j];
                if (v3_style) sum += 1e-20f;
                for (int64_t j = 0; j < k; ++j) g[j] /= sum;
            }
            if (spec.routed_scaling_factor != 1.0) {
                const float f = static_cast<float>(spec.routed_scaling_factor);
                for (int64_t j = 0; j < k; ++j) g[j] *= f;
            }
        }
    }
}

}  // namespace moekit::model::detail
