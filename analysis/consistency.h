// Local routing consistency (METHODS.md §2): SRP (segment routing best performance) from
// mergeable per-expert window histograms, and SCH (segment cache best hit rate) with LRU/LFU
// baselines at the same cache capacity.
//
// Conventions fixed here (the output should name them):
//  * A token's selected list is a set: duplicate expert ids within one token are an error.
//  * SRP argmax ties: alpha_star is the smallest alpha attaining the maximal F1 (compared
//    exactly as fractions). rho_hat = Pred(alpha_star)/Act, defined as 0 when Act == 0.
//  * Cache simulations return integer hit and request counts; hit_rate = hits / requests, where
//    requests = sum over tokens of |R_i| (= T*k for a fixed k), and 0 when there are no requests.
//  * SCH follows the METHODS.md pseudocode exactly (hits counted against the cache state at
//    token start; cold misses count as hits while |seen| < C; eviction argmin over
//    (f(y), last[y]) with f(y) = #{j in [i, i+m) ∩ [0, T) : y in R_j} - 1[y in done]).
//  * LRU / LFU: a request is a hit iff the expert is in the cache at token start (cold misses are
//    misses). Then the token's requests are processed in order: a missing expert is inserted,
//    evicting first (if |cache| >= C) the argmin over the cache of last[y] (LRU) or of
//    (freq[y], last[y]) (LFU; freq = number of requests of y so far in the sequence, kept across
//    evictions); then ts += 1, last[x] = ts, freq[x] += 1.
#pragma once

#include <cstdint>
#include <vector>

namespace moekit::analysis {

struct SrpResult {
    double f1 = 0.0;          // F1* = max_alpha F1(alpha)
    int64_t alpha_star = 0;   // smallest maximizing alpha
    double rho_hat = 0.0;     // Pred(alpha_star) / Act (0 if Act == 0)
    int64_t tp = 0;           // TP(alpha_star)
    int64_t pred = 0;         // Pred(alpha_star)
    int64_t act = 0;          // Act
};

// SRP of a histogram h[c], c = 0..m (h.size() must be m + 1).
SrpResult srp_from_histogram(const std::vector<int64_t>& hist, int64_t m);

// Per-layer window histograms: for every expert e, h_e[c] = number of sliding windows (start
// p = 0..T-m inside one sequence) in which e is active in exactly c of the m tokens.
class SrpAccumulator {
public:
    SrpAccumulator(int64_t n_expert, int64_t m);

    // selected: T*k row-major expert ids (token-major). Sequences with T < m add no windows.
    void add_sequence(const int32_t* selected, int64_t n_token, int64_t k);
    void add_sequence(const std::vector<int32_t>& selected, int64_t n_token, int64_t k);

    // Adds other's histograms; other must have the same n_expert and m.
    void merge(const SrpAccumulator& other);

    int64_t n_expert() const { return n_expert_; }
    int64_t m() const { return m_; }
    int64_t n_window() const { return n_window_; }  // windows per expert

    // h_e (size m + 1).
    std::vector<int64_t> expert_histogram(int64_t ie) const;
    // Sum of the histograms of the given experts / of all experts.
    std::vector<int64_t> group_histogram(const std::vector<int64_t>& experts) const;
    std::vector<int64_t> layer_histogram() const;

    SrpResult srp_expert(int64_t ie) const;
    SrpResult srp(const std::vector<int64_t>& experts) const;  // a group of experts
    SrpResult srp_layer() const;

private:
    int64_t n_expert_;
    int64_t m_;
    int64_t n_window_ = 0;
    std::vector<int64_t> hist_;  // n_expert * (m + 1)
};

// merge(a, b): a copy of a with b's histograms added.
SrpAccumulator merge(const SrpAccumulator& a, const SrpAccumulator& b);

// Model level: sum of the layers' full histograms (all layers must share m).
std::vector<int64_t> model_histogram(const std::vector<SrpAccumulator>& layers);
SrpResult srp_model(const std::vector<SrpAccumulator>& layers);

struct CacheResult {
    int64_t hits = 0;
    int64_t requests = 0;
    double hit_rate() const { return requests > 0 ? double(hits) / double(requests) : 0.0; }
};

// One sequence; requests_per_token[i] = R_i (expert ids >= 0, no duplicates within a token).
// For model level pass the concatenation of all layers' lists with ids offset by layer * E.
CacheResult sch_simulate(const std::vector<std::vector<int32_t>>& requests_per_token,
                         int64_t capacity, int64_t m);
CacheResult lru_simulate(const std::vector<std::vector<int32_t>>& requests_per_token,
                         int64_t capacity);
CacheResult lfu_simulate(const std::vector<std::vector<int32_t>>& requests_per_token,
                         int64_t capacity);

double sch_hit_rate(const std::vector<std::vector<int32_t>>& requests_per_token,
                    int64_t capacity, int64_t m);
double lru_hit_rate(const std::vector<std::vector<int32_t>>& requests_per_token,
                    int64_t capacity);
double lfu_hit_rate(const std::vector<std::vector<int32_t>>& requests_per_token,
                    int64_t capacity);

// Builds model-level request lists for one sequence: layer_selected[il] is that layer's T*k
// ids; token i requests layer 0's ids, then layer 1's ids + E, ... (ids offset by il * n_expert).
std::vector<std::vector<int32_t>> model_requests(
    const std::vector<std::vector<int32_t>>& layer_selected, int64_t n_token, int64_t k,
    int64_t n_expert);

}  // namespace moekit::analysis
