// Private to the oneDNN backend files: runs oneDNN calls on the calling thread only.
#pragma once

#include <omp.h>

namespace moekit::core::detail {

// Sets the calling thread's OpenMP team size to 1 for the scope (restores it after), so that
// oneDNN (built on OpenMP) neither nests a team inside the engine's regions nor plans its work
// for threads that will not come.
class SingleThreaded {
public:
    SingleThreaded() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
    ~SingleThreaded() { omp_set_num_threads(saved_); }
    SingleThreaded(const SingleThreaded&) = delete;
    SingleThreaded& operator=(const SingleThreaded&) = delete;

private:
    int saved_;
};

}  // namespace moekit::core::detail
