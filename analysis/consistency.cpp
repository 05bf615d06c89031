// Local routing consistency (METHODS.md §2): SRP window histograms with running sums and the
// SCH / LRU / LFU cache simulations. See consistency.h for the conventions.
#include "analysis/consistency.h"

#include <algorithm>
#include <string>
#include <unordered_map>

#include "core/error.h"

namespace moekit::analysis {

namespace {

[[noreturn]] void fail(const std::string& msg) { throw moekit::Error("analysis", msg); }

__extension__ using Int128 = __int128;  // GCC/Clang; exact cross-multiplication below

// a/b > c/d for non-negative a, c and positive b, d, exactly.
bool frac_greater(int64_t a, int64_t b, int64_t c, int64_t d) {
    return static_cast<Int128>(a) * d > static_cast<Int128>(c) * b;
}

}  // namespace

SrpResult srp_from_histogram(const std::vector<int64_t>& hist, int64_t m) {
    if (m < 1) fail("SRP: segment length m must be >= 1, got " + std::to_string(m));
    if (static_cast<int64_t>(hist.size()) != m + 1)
        fail("SRP: histogram has " + std::to_string(hist.size()) + " bins, expected m + 1 = " +
             std::to_string(m + 1));
    int64_t act = 0;
    for (int64_t c = 0; c <= m; ++c) {
        if (hist[c] < 0) fail("SRP: negative histogram count");
        act += c * hist[c];
    }
    // Suffix sums from alpha = m down to 0; keep the smallest maximizing alpha.
    std::vector<int64_t> tp(m + 2, 0), cnt(m + 2, 0);
    for (int64_t c = m; c >= 0; --c) {
        tp[c] = tp[c + 1] + c * hist[c];
        cnt[c] = cnt[c + 1] + hist[c];
    }
    SrpResult best;
    best.act = act;
    int64_t best_num = -1, best_den = 1;
    for (int64_t alpha = 0; alpha <= m; ++alpha) {
        const int64_t pred = m * cnt[alpha];
        const int64_t num = 2 * tp[alpha];
        const int64_t den = std::max<int64_t>(pred + act, 1);
        if (best_num < 0 || frac_greater(num, den, best_num, best_den)) {
            best_num = num;
            best_den = den;
            best.alpha_star = alpha;
            best.tp = tp[alpha];
            best.pred = pred;
        }
    }
    best.f1 = static_cast<double>(best_num) / static_cast<double>(best_den);
    best.rho_hat = act > 0 ? static_cast<double>(best.pred) / static_cast<double>(act) : 0.0;
    return best;
}

SrpAccumulator::SrpAccumulator(int64_t n_expert, int64_t m) : n_expert_(n_expert), m_(m) {
    if (n_expert < 1) fail("SRP: n_expert must be >= 1, got " + std::to_string(n_expert));
    if (m < 1) fail("SRP: segment length m must be >= 1, got " + std::to_string(m));
    hist_.assign(static_cast<size_t>(n_expert * (m + 1)), 0);
}

void SrpAccumulator::add_sequence(const std::vector<int32_t>& selected, int64_t n_token,
                                  int64_t k) {
    if (n_token < 0 || k < 0 || static_cast<int64_t>(selected.size()) != n_token * k)
        fail("SRP: selected has " + std::to_string(selected.size()) + " ids, expected T*k = " +
             std::to_string(n_token) + "*" + std::to_string(k));
    add_sequence(selected.data(), n_token, k);
}

void SrpAccumulator::add_sequence(const int32_t* selected, int64_t n_token, int64_t k) {
    if (n_token < 0) fail("SRP: negative token count");
    if (k < 1 || k > n_expert_)
        fail("SRP: k = " + std::to_string(k) + " must be in [1, n_expert = " +
             std::to_string(n_expert_) + "]");
    // Validate every id and reject duplicates within a token before touching the histograms.
    std::vector<int64_t> mark(n_expert_, -1);
    for (int64_t it = 0; it < n_token; ++it) {
        for (int64_t s = 0; s < k; ++s) {
            const int32_t e = selected[it * k + s];
            if (e < 0 || e >= n_expert_)
                fail("SRP: expert id " + std::to_string(e) + " at token " + std::to_string(it) +
                     " is outside [0, " + std::to_string(n_expert_) + ")");
            if (mark[e] == it)
                fail("SRP: expert id " + std::to_string(e) + " selected twice at token " +
                     std::to_string(it));
            mark[e] = it;
        }
    }
    if (n_token < m_) return;
    // Running window counts: O(T*k) updates plus O(T*E) histogram increments.
    std::vector<int64_t> count(n_expert_, 0);
    for (int64_t it = 0; it < m_; ++it)
        for (int64_t s = 0; s < k; ++s) ++count[selected[it * k + s]];
    const int64_t stride = m_ + 1;
    for (int64_t p = 0; p + m_ <= n_token; ++p) {
        for (int64_t e = 0; e < n_expert_; ++e) ++hist_[e * stride + count[e]];
        ++n_window_;
        if (p + m_ < n_token) {
            for (int64_t s = 0; s < k; ++s) --count[selected[p * k + s]];
            for (int64_t s = 0; s < k; ++s) ++count[selected[(p + m_) * k + s]];
        }
    }
}

void SrpAccumulator::merge(const SrpAccumulator& other) {
    if (other.n_expert_ != n_expert_ || other.m_ != m_)
        fail("SRP: cannot merge accumulators with (n_expert, m) = (" + std::to_string(n_expert_) +
             ", " + std::to_string(m_) + ") and (" + std::to_string(other.n_expert_) + ", " +
             std::to_string(other.m_) + ")");
    for (size_t i = 0; i < hist_.size(); ++i) hist_[i] += other.hist_[i];
    n_window_ += other.n_window_;
}

std::vector<int64_t> SrpAccumulator::expert_histogram(int64_t ie) const {
    if (ie < 0 || ie >= n_expert_)
        fail("SRP: expert " + std::to_string(ie) + " outside [0, " + std::to_string(n_expert_) +
             ")");
    const auto first = hist_.begin() + ie * (m_ + 1);
    return std::vector<int64_t>(first, first + (m_ + 1));
}

std::vector<int64_t> SrpAccumulator::group_histogram(const std::vector<int64_t>& experts) const {
    std::vector<int64_t> h(m_ + 1, 0);
    for (int64_t ie : experts) {
        const auto he = expert_histogram(ie);
        for (int64_t c = 0; c <= m_; ++c) h[c] += he[c];
    }
    return h;
}

std::vector<int64_t> SrpAccumulator::layer_histogram() const {
    std::vector<int64_t> h(m_ + 1, 0);
    for (int64_t ie = 0; ie < n_expert_; ++ie)
        for (int64_t c = 0; c <= m_; ++c) h[c] += hist_[ie * (m_ + 1) + c];
    return h;
}

SrpResult SrpAccumulator::srp_expert(int64_t ie) const {
    return srp_from_histogram(expert_histogram(ie), m_);
}
SrpResult SrpAccumulator::srp(const std::vector<int64_t>& experts) const {
    return srp_from_histogram(group_histogram(experts), m_);
}
SrpResult SrpAccumulator::srp_layer() const { return srp_from_histogram(layer_histogram(), m_); }

SrpAccumulator merge(const SrpAccumulator& a, const SrpAccumulator& b) {
    SrpAccumulator out = a;
    out.merge(b);
    return out;
}

std::vector<int64_t> model_histogram(const std::vector<SrpAccumulator>& layers) {
    if (layers.empty()) fail("SRP: model histogram of zero layers");
    const int64_t m = layers.front().m();
    std::vector<int64_t> h(m + 1, 0);
    for (size_t il = 0; il < layers.size(); ++il) {
        if (layers[il].m() != m)
            fail("SRP: layer " + std::to_string(il) + " has m = " + std::to_string(layers[il].m()) +
                 ", layer 0 has m = " + std::to_string(m));
        const auto hl = layers[il].layer_histogram();
        for (int64_t c = 0; c <= m; ++c) h[c] += hl[c];
    }
    return h;
}

SrpResult srp_model(const std::vector<SrpAccumulator>& layers) {
    return srp_from_histogram(model_histogram(layers), layers.front().m());
}

// ---------------------------------------------------------------------------------------------
// Cache simulations. Ids are remapped to dense indices 0..U-1 first.

namespace {

struct DenseTrace {
    std::vector<std::vector<int32_t>> req;  // dense ids
    int64_t n_id = 0;
    int64_t n_request = 0;
};

DenseTrace densify(const std::vector<std::vector<int32_t>>& requests, int64_t capacity,
                   const char* what) {
    if (capacity < 1)
        fail(std::string(what) + ": cache capacity must be >= 1, got " + std::to_string(capacity));
    DenseTrace d;
    std::unordered_map<int32_t, int32_t> index;
    d.req.resize(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
        for (int32_t x : requests[i]) {
            if (x < 0)
                fail(std::string(what) + ": negative expert id " + std::to_string(x) +
                     " at token " + std::to_string(i));
            auto [pos, inserted] = index.emplace(x, static_cast<int32_t>(index.size()));
            d.req[i].push_back(pos->second);
        }
        d.n_request += static_cast<int64_t>(requests[i].size());
    }
    d.n_id = static_cast<int64_t>(index.size());
    // Duplicates within a token are not allowed (R_i is a set).
    std::vector<int64_t> mark(d.n_id, -1);
    for (size_t i = 0; i < d.req.size(); ++i)
        for (int32_t x : d.req[i]) {
            if (mark[x] == static_cast<int64_t>(i))
                fail(std::string(what) + ": expert requested twice at token " + std::to_string(i));
            mark[x] = static_cast<int64_t>(i);
        }
    return d;
}

// Removes the cache slot minimizing key(y) (ties impossible: last[] values are distinct).
template <class Key>
void evict_min(std::vector<int32_t>& cache, std::vector<char>& in_cache, Key key) {
    size_t best = 0;
    auto best_key = key(cache[0]);
    for (size_t s = 1; s < cache.size(); ++s) {
        auto ks = key(cache[s]);
        if (ks < best_key) {
            best_key = ks;
            best = s;
        }
    }
    in_cache[cache[best]] = 0;
    cache[best] = cache.back();
    cache.pop_back();
}

}  // namespace

CacheResult sch_simulate(const std::vector<std::vector<int32_t>>& requests_per_token,
                         int64_t capacity, int64_t m) {
    if (m < 1) fail("SCH: look-ahead m must be >= 1, got " + std::to_string(m));
    const DenseTrace d = densify(requests_per_token, capacity, "SCH");
    const int64_t n_token = static_cast<int64_t>(d.req.size());
    CacheResult r;
    r.requests = d.n_request;
    std::vector<char> in_cache(d.n_id, 0), seen(d.n_id, 0), done(d.n_id, 0);
    std::vector<int64_t> last(d.n_id, 0), future(d.n_id, 0);  // future[y] = #{j in [i, i+m)}
    std::vector<int32_t> cache;
    int64_t n_seen = 0, ts = 0;
    // Window [0, min(m, T)).
    for (int64_t j = 0; j < std::min(m, n_token); ++j)
        for (int32_t y : d.req[j]) ++future[y];
    for (int64_t i = 0; i < n_token; ++i) {
        const auto& ri = d.req[i];
        int64_t u = n_seen;
        for (int32_t x : ri) {
            if (!seen[x]) {
                r.hits += (u < capacity) ? 1 : 0;
                ++u;
            } else if (in_cache[x]) {
                ++r.hits;
            }
        }
        for (int32_t x : ri) {
            if (!in_cache[x]) {
                if (static_cast<int64_t>(cache.size()) >= capacity)
                    evict_min(cache, in_cache, [&](int32_t y) {
                        return std::pair<int64_t, int64_t>(future[y] - (done[y] ? 1 : 0), last[y]);
                    });
                cache.push_back(x);
                in_cache[x] = 1;
            }
            last[x] = ++ts;
            if (!seen[x]) {
                seen[x] = 1;
                ++n_seen;
            }
            done[x] = 1;
        }
        for (int32_t x : ri) done[x] = 0;
        // Slide the look-ahead window to [i+1, i+1+m).
        for (int32_t y : ri) --future[y];
        if (i + m < n_token)
            for (int32_t y : d.req[i + m]) ++future[y];
    }
    return r;
}

namespace {

CacheResult recency_simulate(const std::vector<std::vector<int32_t>>& requests_per_token,
                             int64_t capacity, bool use_frequency, const char* what) {
    const DenseTrace d = densify(requests_per_token, capacity, what);
    CacheResult r;
    r.requests = d.n_request;
    std::vector<char> in_cache(d.n_id, 0);
    std::vector<int64_t> last(d.n_id, 0), freq(d.n_id, 0);
    std::vector<int32_t> cache;
    int64_t ts = 0;
    for (const auto& ri : d.req) {
        for (int32_t x : ri) r.hits += in_cache[x] ? 1 : 0;  // state at token start
        for (int32_t x : ri) {
            if (!in_cache[x]) {
                if (static_cast<int64_t>(cache.size()) >= capacity)
                    evict_min(cache, in_cache, [&](int32_t y) {
                        return std::pair<int64_t, int64_t>(use_frequency ? freq[y] : 0, last[y]);
                    });
                cache.push_back(x);
                in_cache[x] = 1;
            }
            last[x] = ++ts;
            ++freq[x];
        }
    }
    return r;
}

}  // namespace

CacheResult lru_simulate(const std::vector<std::vector<int32_t>>& requests_per_token,
                         int64_t capacity) {
    return recency_simulate(requests_per_token, capacity, false, "LRU");
}
CacheResult lfu_simulate(const std::vector<std::vector<int32_t>>& requests_per_token,
                         int64_t capacity) {
    return recency_simulate(requests_per_token, capacity, true, "LFU");
}

double sch_hit_rate(const std::vector<std::vector<int32_t>>& requests_per_token,
                    int64_t capacity, int64_t m) {
    return sch_simulate(requests_per_token, capacity, m).hit_rate();
}
double lru_hit_rate(const std::vector<std::vector<int32_t>>& requests_per_token,
                    int64_t capacity) {
    return lru_simulate(requests_per_token, capacity).hit_rate();
}
double lfu_hit_rate(const std::vector<std::vector<int32_t>>& requests_per_token,
                    int64_t capacity) {
    return lfu_simulate(requests_per_token, capacity).hit_rate();
}

std::vector<std::vector<int32_t>> model_requests(
    const std::vector<std::vector<int32_t>>& layer_selected, int64_t n_token, int64_t k,
    int64_t n_expert) {
    if (n_token < 0 || k < 1 || n_expert < 1)
        fail("model_requests: need T >= 0, k >= 1, n_expert >= 1");
    std::vector<std::vector<int32_t>> out(static_cast<size_t>(n_token));
    for (size_t il = 0; il < layer_selected.size(); ++il) {
        const auto& sel = layer_selected[il];
        if (static_cast<int64_t>(sel.size()) != n_token * k)
            fail("model_requests: layer " + std::to_string(il) + " has " +
                 std::to_string(sel.size()) + " ids, expected T*k = " +
                 std::to_string(n_token * k));
        for (int64_t it = 0; it < n_token; ++it)
            for (int64_t s = 0; s < k; ++s) {
                const int32_t e = sel[it * k + s];
                if (e < 0 || e >= n_expert)
                    fail("model_requests: expert id " + std::to_string(e) + " in layer " +
                         std::to_string(il) + " outside [0, " + std::to_string(n_expert) + ")");
                out[it].push_back(static_cast<int32_t>(il * n_expert + e));
            }
    }
    return out;
}

}  // namespace moekit::analysis
