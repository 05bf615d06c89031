// Full-tensor read benchmark: opens a checkpoint (mmap) and converts every tensor to fp32,
// as the forward engine will, reporting bytes/s. Driven by bench/bench_io.py.
#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>

#include "io/checkpoint.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 1;
    }
    try {
        const auto start = std::chrono::steady_clock::now();
        const auto checkpoint = moekit::io::Checkpoint::open(argv[1]);
        std::vector<float> buffer;
        uint64_t bytes = 0;
        double checksum = 0;
        for (const auto& [name, entry] : checkpoint.tensors()) {
            buffer.resize(entry.info->n_elements());
            entry.file->read_f32(*entry.info, buffer.data());
            bytes += entry.info->nbytes();
            checksum += buffer.empty() ? 0.0 : buffer[buffer.size() / 2];
        }
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("{\"bytes\": %llu, \"seconds\": %.6f, \"checksum\": %.6g}\n", (unsigned long long)bytes, seconds, checksum);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
