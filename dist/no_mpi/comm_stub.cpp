// Single-process backend of dist/comm.h, linked when moekit is built without MPI.
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "dist/comm.h"

namespace moekit::dist {

bool mpi_compiled() { return false; }

void init(int*, char***) {
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
        if (const char* v = std::getenv(var); v && std::atoi(v) > 1)
            throw Error("mpi", std::string("started by an MPI launcher with ") + v +
                                   " ranks, but this moekit was built without MPI (install libopenmpi-dev and rebuild)");
}
void finalize() {}
int rank() { return 0; }
int size() { return 1; }
std::vector<std::string> gather(const std::string& bytes) { return {bytes}; }
void abort_all(int) {}

}  // namespace moekit::dist
