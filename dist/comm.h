// Data-parallel runs over MPI (`mpirun -n N moekit profile ...`). The backend is chosen by CMake:
// dist/mpi/ when Open MPI (Debian's libopenmpi-dev) is found, dist/no_mpi/ otherwise; callers
// never test which one they got. MPI is initialized only when an MPI launcher started the
// process, so a plain `moekit ...` never touches the MPI runtime.
#pragma once

#include <string>
#include <vector>

namespace moekit::dist {

bool mpi_compiled();

// Initializes MPI when the process was started by mpirun/mpiexec (the launcher's environment:
// OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK); otherwise this is a single process. Without the
// MPI backend, a launch with more than one rank is a user error (every rank would repeat the
// whole job).
void init(int* argc, char*** argv);
void finalize();

int rank();   // 0 in a single process
int size();   // 1 in a single process

// Rank 0 receives every rank's bytes in rank order; the other ranks get an empty vector.
std::vector<std::string> gather(const std::string& bytes);

// Ends every rank of the job with `code` (MPI_Abort); returns normally in a single process.
void abort_all(int code);

}  // namespace moekit::dist
