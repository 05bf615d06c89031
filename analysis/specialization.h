// Specialization statistics of `moekit profile` (METHODS.md §4), computed from a RoutingTrace:
// domain specialization and its CV across domains, vocabulary specialization (input and next
// token), routing divergence between domains (entropy-normalized JSD), co-activation, inter-layer
// affinity (ExFlow), super experts, and the JSON pieces of docs/PROFILE.md built from them.
//
// Layers are addressed by MoE index j (position in trace.layers, `model.moe_layers` order); the
// JSON's "layer" fields are decoder layer indices (trace.layers[j].layer). Values that are
// undefined are std::nullopt here and null in the JSON. The conventions fixed where METHODS.md
// is silent are the k*Convention strings below; the profile names them in params.conventions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/trace.h"

namespace moekit::analysis {

inline constexpr const char* kSpecializationConvention =
    "domain_rate[D][e] = N_{e,D}/N_D (tokens of D with e selected / tokens of D), null for a domain "
    "with no tokens, uniform baseline k/E; domain_cv[e] = sample std (ddof 1) / mean of e's rates "
    "over domains with rate > 1e-5, null with fewer than 2 such domains; coactivation[i][j] = "
    "#{t: i,j in S_t} / #{t: i in S_t} (diagonal 1, rows of never-selected experts null: 0/0); "
    "affinity_next[i][j] = #{t: i in S^l_t, j in S^{l+1}_t} / #{t: i in S^l_t} between consecutive "
    "MoE layers (rows sum to k, null rows for never-selected i), top = the 10 largest positive "
    "entries (ties: from, then to ascending), topk_mass[i] = sum of row i's k largest / k (null for never-selected i)";
inline constexpr const char* kVocabConvention =
    "top-1 = the router's first-ranked selected expert; token ids occurring >= vocab_min_count "
    "times (input: as token t; next: as token t+1 of the same sequence, the last token of a "
    "sequence has none); per id v, s_v = max_e P(top1 = e | v) with argmax ties to the lowest "
    "expert id; expert score = mean of s_v over the ids whose argmax is e, null if there are none";
inline constexpr const char* kJsdConvention =
    "q_D = sum of softmax(z_t) over D's tokens / N_D (raw router logits); jsd[A][B] = "
    "JSD(q_A,q_B) / (ln E - (H(q_A)+H(q_B))/2), natural logs, JSD = (KL(q_A||M)+KL(q_B||M))/2, "
    "0 ln 0 = 0; defined as 0 when the denominator is <= 1e-12 (both means uniform, JSD = 0 "
    "too), clamped to [0, 1]; null for pairs involving a domain with no tokens";
inline constexpr const char* kSuperExpertConvention =
    "m[l][e] = max over calibration tokens routed to e of max |down_proj output|; super iff "
    "m > the 99.5th percentile of all L*E values (numpy 'linear' interpolation, in float64) and "
    "m > 0.1 * max(m) and the decoder layer index < 0.75 * n_layer; sorted by m descending "
    "(ties: layer, then expert ascending)";

struct SpecializationParams {
    int64_t vocab_min_count = 20;        // ids seen fewer times are left out of vocab scores
    int64_t n_top_transitions = 10;      // affinity_next.top length (at most)
    double super_percentile = 99.5;      // super experts: m > this percentile of all m
    double super_max_fraction = 0.1;     //   and m > this fraction of max(m)
    double super_layer_fraction = 0.75;  //   and decoder layer index < this fraction of n_layer
};

// Domain specialization of MoE layer j.
struct DomainSpecialization {
    int64_t n_domain = 0;
    int64_t n_expert = 0;
    std::vector<int64_t> domain_tokens;              // [D] N_D
    std::vector<int64_t> counts;                     // [D * E] N_{e,D}
    std::vector<std::optional<double>> rate;         // [D * E] N_{e,D} / N_D (nullopt if N_D = 0)
    std::vector<std::optional<double>> cv;           // [E] CV of rates across domains
};
DomainSpecialization domain_specialization(const RoutingTrace& trace, int64_t j);

// Token rows grouped by the token id they are keyed on, only ids with >= min_count rows. Built
// once per trace and variant; valid for every layer of the trace.
struct VocabIndex {
    bool next_token = false;
    int64_t min_count = 0;
    std::vector<int32_t> ids;      // kept token ids, ascending
    std::vector<int64_t> offsets;  // [ids.size() + 1] into rows
    std::vector<int64_t> rows;     // token rows t (the routing is token t's in both variants)
};
VocabIndex build_vocab_index(const RoutingTrace& trace, bool next_token, int64_t min_count);

struct VocabSpecialization {
    std::vector<std::optional<double>> score;  // [E] mean of max_e P(top1 = e | v) over its ids
    std::vector<int64_t> n_ids;                // [E] ids whose argmax is e
};
VocabSpecialization vocab_specialization(const RoutingTrace& trace, int64_t j, const VocabIndex& index);

// [D * D] entropy-normalized JSD between the domains' mean routing distributions of layer j.
std::vector<std::optional<double>> domain_jsd(const RoutingTrace& trace, int64_t j);

// [E * E] row-major co-activation matrix of layer j (NaN rows: expert never selected).
std::vector<double> coactivation(const RoutingTrace& trace, int64_t j);

struct Transition {
    int64_t from = 0;
    int64_t to = 0;
    double value = 0.0;
};
struct Affinity {
    std::vector<double> matrix;        // [E * E] row-major, from layer j to layer j + 1
    std::vector<Transition> top;       // largest positive entries, descending
    std::vector<double> topk_mass;     // [E]
};
// Affinity between MoE layers j and j + 1 (j + 1 < n_moe_layer).
Affinity inter_layer_affinity(const RoutingTrace& trace, int64_t j, int64_t n_top = 10);

// [E] max over sequences of seq_max_abs_out of layer j.
std::vector<double> max_abs_out(const RoutingTrace& trace, int64_t j);

// numpy.percentile(values, q) with the default 'linear' method (q in [0, 100], values non-empty).
double percentile_linear(std::vector<double> values, double q);

struct SuperExpert {
    int64_t layer = 0;      // decoder layer index
    int64_t moe_index = 0;  // j
    int64_t expert = 0;
    double max_abs_out = 0.0;
};
std::vector<SuperExpert> super_experts(const RoutingTrace& trace, const SpecializationParams& params);

struct SpecializedPick {
    int64_t layer = 0;      // decoder layer index
    int64_t moe_index = 0;
    int64_t expert = 0;
    int64_t domain = 0;
    double rate = 0.0;
    double ratio_to_uniform = 0.0;  // rate / (k / E)
};
// The n (layer, expert, domain) with the largest rate / (k/E) over domains with >= 1 token; empty
// unless at least 2 domains have tokens. Ties: MoE index, expert, domain ascending.
std::vector<SpecializedPick> top_specialized(const RoutingTrace& trace, int64_t n);

// docs/PROFILE.md layers[j].specialization. The overload with indices reuses them across layers
// (build_vocab_index(trace, false / true, params.vocab_min_count)).
nlohmann::ordered_json specialization_layer_json(const RoutingTrace& trace, int64_t j,
                                                 const SpecializationParams& params);
nlohmann::ordered_json specialization_layer_json(const RoutingTrace& trace, int64_t j,
                                                 const SpecializationParams& params,
                                                 const VocabIndex& vocab_input,
                                                 const VocabIndex& vocab_next);
// Top-level super_experts: [{layer, expert, max_abs_out}].
nlohmann::ordered_json super_experts_json(const RoutingTrace& trace, const SpecializationParams& params);
// summary.top_specialized: [{layer, expert, domain (name), rate, ratio_to_uniform}].
nlohmann::ordered_json top_specialized_json(const RoutingTrace& trace, int64_t n);

namespace detail {
// Checks shared by specialization.cpp and affinity.cpp; all throw Error("analysis").
// Sequences: seq_begin runs from 0 to T without decreasing, seq_domain indexes domains.
void check_sequences(const RoutingTrace& trace);
// check_sequences, 1 <= k <= E, j a MoE layer index and its selected has T*k ids.
void check_layer(const RoutingTrace& trace, int64_t j);
[[noreturn]] void bad_token(int64_t j, int64_t t, int32_t id, int64_t n_expert);
// Token t's k selected ids of layer j: in [0, E) and distinct. stamp has E entries, initially
// < 0, and remembers the last token that selected each expert.
inline void check_token(const int32_t* ids, int64_t k, int64_t n_expert, std::vector<int64_t>& stamp,
                        int64_t j, int64_t t) {
    for (int64_t i = 0; i < k; ++i) {
        const int32_t e = ids[i];
        if (e < 0 || e >= n_expert || stamp[static_cast<size_t>(e)] == t) bad_token(j, t, e, n_expert);
        stamp[static_cast<size_t>(e)] = t;
    }
}
}  // namespace detail

}  // namespace moekit::analysis
