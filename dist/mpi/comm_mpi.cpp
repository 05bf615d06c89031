// MPI backend of dist/comm.h (Open MPI).
#include <mpi.h>

#include <cstdlib>
#include <limits>

#include "core/error.h"
#include "dist/comm.h"

namespace moekit::dist {

namespace {
bool g_active = false;
int g_rank = 0, g_size = 1;

bool launched_by_mpi() {
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
        if (std::getenv(var)) return true;
    return false;
}
}  // namespace

bool mpi_compiled() { return true; }

void init(int* argc, char*** argv) {
    if (g_active || !launched_by_mpi()) return;
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_active = true;
}

void finalize() {
    if (!g_active) return;
    MPI_Finalize();
    g_active = false;
}

int rank() { return g_rank; }
int size() { return g_size; }

std::vector<std::string> gather(const std::string& bytes) {
    if (!g_active || g_size == 1) return {bytes};
    if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
        throw Error("mpi", "a rank's partial result is over 2 GiB; use more ranks or less data per run");
    const int mine = static_cast<int>(bytes.size());
    std::vector<int> sizes(static_cast<size_t>(g_size), 0);
    MPI_Gather(&mine, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::vector<int> displs(static_cast<size_t>(g_size), 0);
    long long total = 0;
    for (int r = 0; r < g_size; ++r) {
        displs[static_cast<size_t>(r)] = static_cast<int>(total);
        total += sizes[static_cast<size_t>(r)];
    }
    if (g_rank == 0 && total > std::numeric_limits<int>::max())
        throw Error("mpi", "the gathered partial results exceed 2 GiB; profile less data per run and merge traces");
    std::string all(g_rank == 0 ? static_cast<size_t>(total) : 0, '\0');
    MPI_Gatherv(bytes.data(), mine, MPI_BYTE, all.data(), sizes.data(), displs.data(), MPI_BYTE, 0, MPI_COMM_WORLD);
    if (g_rank != 0) return {};
    std::vector<std::string> out;
    for (int r = 0; r < g_size; ++r)
        out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]), static_cast<size_t>(sizes[static_cast<size_t>(r)])));
    return out;
}

void abort_all(int code) {
    if (g_active && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace moekit::dist
