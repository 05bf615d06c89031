// Test helper for the interop tests: moekit's engine logits on given token ids, written raw so a
// Python oracle (transformers) can compare them. Not installed; built with the tests.
//
// Usage: moekit_engine_logits MODEL_DIR IDS.bin OUT.f32 SEQ_LEN
//   IDS.bin: int32 little-endian ids, cut into sequences of SEQ_LEN (the count must divide);
//   OUT.f32: float32 logits [n_ids, vocab_size], row-major, sequences in order.
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/engine.h"

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s MODEL_DIR IDS.bin OUT.f32 SEQ_LEN\n", argv[0]);
        return 2;
    }
    try {
        const long seq_len = std::stol(argv[4]);
        std::ifstream in(argv[2], std::ios::binary);
        std::vector<int32_t> ids;
        int32_t id;
        while (in.read(reinterpret_cast<char*>(&id), sizeof id)) ids.push_back(id);
        if (seq_len <= 0 || ids.empty() || ids.size() % static_cast<size_t>(seq_len) != 0) {
            std::fprintf(stderr, "ids (%zu) must be a positive multiple of SEQ_LEN\n", ids.size());
            return 2;
        }
        std::vector<std::vector<int32_t>> seqs;
        for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(seq_len))
            seqs.emplace_back(ids.begin() + static_cast<long>(b), ids.begin() + static_cast<long>(b) + seq_len);
        const auto ckpt = moekit::io::Checkpoint::open(argv[1]);
        const moekit::model::Engine engine(ckpt);
        const auto hidden = engine.forward_hidden(seqs);
        const auto logits = engine.logits(hidden, 0, hidden.rows());
        std::ofstream out(argv[3], std::ios::binary);
        out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
        return out ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
