// Helpers shared by the unit tests: a self-deleting temporary directory, whole-file I/O and
// random token sequences.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace moekit::test {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
public:
    explicit TempDir(const std::string& tag = "test") {
        static int counter = 0;
        path_ = fs::temp_directory_path() /
                ("moekit-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const fs::path& path() const { return path_; }
    fs::path operator/(const std::string& name) const { return path_ / name; }

private:
    fs::path path_;
};

inline std::string read_all(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_all(const fs::path& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

// memcmp that accepts null pointers for empty ranges (std::memcmp does not).
inline int safe_memcmp(const void* a, const void* b, std::size_t n) { return n == 0 ? 0 : std::memcmp(a, b, n); }

// Sequences of the given lengths with uniformly random ids in [0, vocab) (seeded).
inline std::vector<std::vector<int32_t>> random_sequences(int64_t vocab, uint32_t seed, std::initializer_list<int> lengths) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(vocab - 1));
    std::vector<std::vector<int32_t>> seqs;
    for (const int len : lengths) {
        std::vector<int32_t> s(static_cast<size_t>(len));
        for (auto& v : s) v = id(rng);
        seqs.push_back(std::move(s));
    }
    return seqs;
}

// max |a - b| / max |b| over n values (max |a - b| when b is all zeros): the engine tests'
// "within x relative" for logits and hidden states.
inline double max_rel_err(const float* a, const float* b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; ++i) {
        num = std::max(num, std::abs(double(a[i]) - double(b[i])));
        den = std::max(den, std::abs(double(b[i])));
    }
    return den > 0.0 ? num / den : num;
}

// The architecture fixtures in tests/fixtures/ with golden transformers outputs (one per ArchSpec).
inline const std::vector<std::string> kArchFixtures = {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3"};

}  // namespace moekit::test
